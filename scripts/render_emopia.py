"""Renders EMOPIA MIDI to audio through the rendering conditions of mdpiano.augmentation.

    python scripts/render_emopia.py --cache-dir ~/.cache/mdpiano [--data ../shared/data] [--train-variants 2]
    python scripts/render_emopia.py --cache-dir ~/.cache/mdpiano --sets train-2 test-unseen     # some sets only

Writes <cache-dir>/audio/<set>/<clip_id>.<flac|ogg|mp3>, one folder per set: train-0 .. train-<n-1> (the train
split, each a new draw of training conditions), validation (the validation split, training conditions),
validation-unseen (the validation split through a recording chain outside training, for model selection),
validation-new-piano (that chain on a piano that neither training nor the test sets play, FreePats' bright piano),
test-new-piano-clean / test-new-piano (the test split on a piano training never heard, FreePats' grand through
TiMidity++, dry, or through a room, EQ, noise and codec that training never uses: the acceptance condition) and
test-clean / test-unseen (the same on FluidR3_GM, whose samples training knows from FluidR3Mono_GM).
Each folder is an `audio_dir` for mdpiano.emopia.load_emopia. Resumable: finished files are kept. The pianos the
sets need are looked for before any rendering.
"""

import argparse
import re
import sys
from pathlib import Path

from mdpiano.augmentation import FIXED_CONDITIONS, TRAIN_SOUNDFONTS, render_folder
from mdpiano.cli import exit_on_input_errors
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set
from mdpiano.rendering_mdpiano import find_soundfont

SET_NAMES = ["train", "train-<n>", "validation", *FIXED_CONDITIONS]


def renderings(sets: list[str], train_variants: int) -> list[tuple[str, str, int]]:
    """(audio set folder, condition set, variant) of each folder to render; `train` stands for all its variants."""
    jobs = []
    for name in dict.fromkeys(sets):
        if name == "train":
            jobs += [(f"train-{variant}", "train", variant) for variant in range(train_variants)]
        elif match := re.fullmatch(r"train-(\d+)", name):
            jobs.append((name, "train", int(match.group(1))))
        elif name == "validation" or name in FIXED_CONDITIONS:
            jobs.append((name, name, 0))
        else:
            raise ValueError(f"Unknown set {name!r}: use {', '.join(SET_NAMES)}.")
    return jobs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--cache-dir", required=True, help="where audio/ is written (outside the repository)")
    parser.add_argument("--split-scheme", default="emopia_cls", choices=["emopia_cls", "emopia_1.0"])
    parser.add_argument("--train-variants", type=int, default=2, help="renderings of each training clip (with --sets train)")
    parser.add_argument("--sets", nargs="+", default=["train", "validation", *FIXED_CONDITIONS],
                        help=f"sets to render, of {', '.join(SET_NAMES)} (default: %(default)s)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    args = parser.parse_args()
    if args.workers < 1 or args.train_variants < 1:
        parser.error("--workers and --train-variants must be at least 1")
    try:
        jobs = renderings(args.sets, args.train_variants)
    except ValueError as error:
        parser.error(str(error))
    # Every piano the sets may draw, found before an hour of rendering rather than clip by clip.
    soundfonts = set()
    for _, condition, _ in jobs:
        soundfonts |= {FIXED_CONDITIONS[condition].soundfont} if condition in FIXED_CONDITIONS else set(TRAIN_SOUNDFONTS)
    for soundfont in sorted(soundfonts):
        find_soundfont(soundfont)

    splits = sorted({split_of_audio_set(name) for name, _, _ in jobs})
    dataset = load_emopia(Path(args.data) / "emopia", args.split_scheme, splits=splits)  # only the splits rendered
    failures = {}
    for name, condition_set, variant in jobs:
        split = dataset[split_of_audio_set(name)]
        midi_paths = dict(zip(split["clip_id"], split["midi_path"]))
        out_dir = Path(args.cache_dir) / "audio" / name
        for clip_id, error in render_folder(midi_paths, condition_set, variant, out_dir, args.workers).items():
            failures[f"{name}/{clip_id}"] = error
    for name, error in sorted(failures.items()):
        print(f"FAILED {name}: {error}", file=sys.stderr)
    print(f"rendered into {Path(args.cache_dir) / 'audio'}; {len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    exit_on_input_errors(main)
