"""Packs cached EMOPIA clips (transcriptions, features, labels) into a clip archive that scripts/train.py and
scripts/ablations.py read with --clips, on a machine without the audio or the caches.

    python scripts/export_clips.py --cache-dir ~/.cache/mdpiano --output-dir runs/clips --config configs/emopia-cpu.json

Each audio set (default: train-0, train-1, validation, test-unseen, test-new-piano) is transcribed and featurised
into the cache first if it is not there yet (as scripts/train.py would), then archived with the config's feature
settings.
"""

import argparse
from pathlib import Path

from mdpiano import MDPianoConfig, MDPianoProcessor
from mdpiano.caching import cache_dataset
from mdpiano.cli import exit_on_input_errors
from mdpiano.clip_archive import archive_manifest, clip_source, write_clip_archive
from mdpiano.configuration_mdpiano import config_values
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set
from mdpiano.training import load_clips

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--split-scheme", default="emopia_cls", choices=["emopia_cls", "emopia_1.0"])
    parser.add_argument("--cache-dir", required=True, help="holds audio/<set> and the caches")
    parser.add_argument("--output-dir", required=True, help="the archive's folder")
    parser.add_argument("--config", help="JSON file of MDPianoConfig values: the feature settings to archive")
    parser.add_argument("--sets", nargs="+", default=["train-0", "train-1", "validation", "test-unseen", "test-new-piano"],
                        help="audio sets; train-* sets come from the train split")  # fmt: skip
    parser.add_argument("--clips-per-file", type=int, default=200, help="clips per archive file (at least 1)")
    parser.add_argument("--num-proc", type=int, default=2, help="processes for transcription and features")
    args = parser.parse_args()
    if args.clips_per_file < 1:
        parser.error(f"--clips-per-file must be at least 1, got {args.clips_per_file}")

    try:
        config = MDPianoConfig(**config_values(args.config))
    except ValueError as error:  # the message names the file or field
        parser.error(str(error))
    processor = MDPianoProcessor.from_config(config)
    # Every check before caching, which can take an hour: the archive's settings, the sets' names and audio.
    try:
        archive_manifest(args.output_dir, processor.feature_extractor, clip_source(processor, args.split_scheme))
        splits = {audio_set: split_of_audio_set(audio_set) for audio_set in args.sets}
    except ValueError as error:
        parser.error(str(error))
    datasets = {}
    for audio_set, split in splits.items():
        audio_dir = Path(args.cache_dir) / "audio" / audio_set
        datasets[audio_set] = load_emopia(Path(args.data) / "emopia", args.split_scheme, audio_dir=audio_dir, splits=[split])[split]
        if len(datasets[audio_set]) == 0:
            parser.error(f"{audio_dir} holds audio of none of the {split} split's clips: render it first "
                         f"(scripts/render_emopia.py --cache-dir {args.cache_dir} --sets {audio_set}).")  # fmt: skip
    sets = {name: load_clips(cache_dataset(dataset, processor, args.cache_dir, name, args.num_proc))
            for name, dataset in datasets.items()}  # fmt: skip
    files = write_clip_archive(args.output_dir, sets, processor.feature_extractor, args.clips_per_file,
                               clip_source(processor, args.split_scheme))  # fmt: skip
    for path in files:
        print(f"{path}  {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    exit_on_input_errors(main)
