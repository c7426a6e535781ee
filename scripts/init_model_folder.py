"""Writes a model folder holding the configuration and the matching processor (no weights).

    python scripts/init_model_folder.py [--output models/mdpiano-emopia] [--chunk-length-s 30] ...

Training (scripts/train.py) saves weights and fitted feature statistics into such a folder.
"""

import argparse

from mdpiano import MDPianoConfig, MDPianoProcessor
from mdpiano.checkpoints import DEFAULT_MODEL_DIR, save_for_package


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(DEFAULT_MODEL_DIR), help="folder to write (default: %(default)s)")
    parser.add_argument("--chunk-length-s", type=float, default=None, help="analysis window in seconds")
    parser.add_argument("--hop-length", type=int, default=None, help="hop between acoustic frames (samples)")
    parser.add_argument("--n-mels", type=int, default=None, help="mel bands")
    parser.add_argument("--max-symbolic-length", type=int, default=None, help="maximum tokens per window")
    args = parser.parse_args()
    overrides = {
        name: value
        for name, value in vars(args).items()
        if name != "output" and value is not None
    }
    config = MDPianoConfig(**overrides)
    folder = save_for_package(args.output, config, MDPianoProcessor.from_config(config))
    print(f"wrote {folder}: {sorted(p.name for p in folder.iterdir())}")


if __name__ == "__main__":
    main()
