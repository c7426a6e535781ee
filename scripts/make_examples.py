"""Renders the example clips: the first 20 s of the first test-split clip of each quadrant, through `test-unseen`'s
chain (a room, EQ, noise and MP3 codec training never uses, on FluidR3_GM, a piano whose samples training knows
through FluidR3 Mono), into examples/.

    python scripts/make_examples.py [--data ../shared/data]
"""

import argparse
from pathlib import Path

from mdpiano.augmentation import FIXED_CONDITIONS, encode, render_condition
from mdpiano.cli import exit_on_input_errors
from mdpiano.emopia import DEFAULT_DATA_DIR, QUADRANTS, load_emopia

SECONDS = 20.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--output-dir", default=str(Path(__file__).resolve().parents[1] / "examples"))
    args = parser.parse_args()
    test = load_emopia(Path(args.data) / "emopia")["test"]
    condition = FIXED_CONDITIONS["test-unseen"]
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    for index, quadrant in enumerate(QUADRANTS):
        row = next(row for row in test if row["label"] == index)
        audio = render_condition(row["midi_path"], condition, seed=0)[: int(SECONDS * condition.sampling_rate)]
        path = Path(args.output_dir) / f"{row['clip_id']}{condition.extension}"
        path.write_bytes(encode(audio, condition))
        print(f"{quadrant}: {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    exit_on_input_errors(main)
