"""Renders EMOPIA MIDI to audio through the rendering conditions of mdpiano.augmentation.

    python scripts/render_emopia.py --cache-dir ~/.cache/mdpiano [--data ../shared/data] [--train-variants 2]

Writes <cache-dir>/audio/<set>/<clip_id>.<flac|ogg|mp3>, one folder per set: train-0 .. train-<n-1> (the train
split, each a new draw of training conditions), validation (the validation split, training conditions),
validation-unseen (the validation split through a recording chain outside training, for model selection) and
test-clean / test-unseen (the test split through a piano, room, EQ, noise and codec that training never uses).
Each folder is an `audio_dir` for mdpiano.emopia.load_emopia. Resumable: finished files are kept.
"""

import argparse
import sys
from pathlib import Path

from mdpiano.augmentation import render_folder
from mdpiano.emopia import load_emopia, split_of_audio_set


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data", help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--cache-dir", required=True, help="where audio/ is written (outside the repository)")
    parser.add_argument("--split-scheme", default="emopia_cls", choices=["emopia_cls", "emopia_1.0"])
    parser.add_argument("--train-variants", type=int, default=2, help="renderings of each training clip")
    parser.add_argument("--sets", nargs="+", default=["train", "validation", "test-clean", "test-unseen"])
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = parser.parse_args()

    dataset = load_emopia(Path(args.data) / "emopia", args.split_scheme)
    failures = {}
    for condition_set in args.sets:
        split = dataset[split_of_audio_set(condition_set)]
        midi_paths = dict(zip(split["clip_id"], split["midi_path"]))
        variants = range(args.train_variants) if condition_set == "train" else [0]
        for variant in variants:
            name = f"train-{variant}" if condition_set == "train" else condition_set
            out_dir = Path(args.cache_dir) / "audio" / name
            for clip_id, error in render_folder(midi_paths, condition_set, variant, out_dir, args.workers).items():
                failures[f"{name}/{clip_id}"] = error
    for name, error in sorted(failures.items()):
        print(f"FAILED {name}: {error}", file=sys.stderr)
    print(f"rendered into {Path(args.cache_dir) / 'audio'}; {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
