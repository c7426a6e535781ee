"""Trains an mdpiano emotion classifier with Accelerate on EMOPIA renderings (or a user's labelled audio).

    python scripts/train.py --cache-dir ~/.cache/mdpiano --output-dir runs/full --config configs/emopia-cpu.json
    accelerate launch scripts/train.py ...          # several processes / GPUs, mixed precision
    python scripts/train.py ... --set domains=acoustic --set use_auxiliary_losses=false   # an ablation
    python scripts/train.py --init-from models/mdpiano-emopia --train-data my_audio/ --cache-dir ... --output-dir ...

EMOPIA audio comes from <cache-dir>/audio/<set> (scripts/render_emopia.py writes it); --train-data takes a user's
own labelled audio instead: a folder with sub-folders Q1..Q4 (or happy, tense, sad, calm), or a CSV with columns
path and label (--validation-data likewise, or a stratified --validation-fraction of it). Transcriptions and features are
cached under <cache-dir> once; reruns reuse them. --clips reads the EMOPIA sets from a clip archive instead
(scripts/export_clips.py), on a machine with neither the audio nor the caches. The paper's optimisation is the default: batch 64, Adam,
learning rate 1e-4. The best model (by validation 4Q accuracy) is saved with its processor in <output-dir>/best.
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json
from pathlib import Path

from datasets import concatenate_datasets
from transformers import set_seed

from mdpiano import MDPianoConfig, MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.processing_mdpiano import PROCESSOR_CONFIG_FIELDS
from mdpiano.audio_mdpiano import AudioDecodeError
from mdpiano.caching import cache_dataset, source_cache_name
from mdpiano.checkpoints import check_model_folder_or_exit, load_error_message
from mdpiano.cli import exit_on_input_errors
from mdpiano.clip_archive import clip_source, read_clip_archive
from mdpiano.configuration_mdpiano import config_values
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia
from mdpiano.labelled_audio import check_disjoint, load_labelled_audio, recorded_split, split_validation
from mdpiano.statistics_fusion import FUSION_FIELDS
from mdpiano.training import (
    TrainingArguments,
    check_clip_lengths,
    check_mixed_precision,
    check_output_dir,
    check_resumed_arguments,
    clips_without_notes,
    device_description,
    fit_feature_normalization,
    load_clips,
    train,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--split-scheme", default="emopia_cls", choices=["emopia_cls", "emopia_1.0"])
    parser.add_argument("--cache-dir", help="holds audio/<set> and the caches (not needed with --clips)")
    parser.add_argument("--clips", help="a clip archive (scripts/export_clips.py) to read the sets from, instead of the cache")
    parser.add_argument("--train-sets", nargs="+", default=["train-0", "train-1"], help="audio sets of the train split")
    parser.add_argument("--validation-set", nargs="+", default=["validation"],
                        help="audio set(s) of the validation split; with several, the mean of their 4Q accuracies "
                             "picks the best epoch")  # fmt: skip
    parser.add_argument("--train-data", help="your labelled audio (folder of Q1..Q4 sub-folders, or CSV path,label)")
    parser.add_argument("--validation-data", help="labelled audio for validation (default: part of --train-data)")
    parser.add_argument("--validation-fraction", type=float, help="with --train-data alone (default: 0.2)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--config", help="JSON file of MDPianoConfig values (e.g. configs/emopia-cpu.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config value")
    parser.add_argument("--symbolic-pretrained", help="folder of a pretrained MDPianoSymbolicForMaskedLM")
    parser.add_argument("--init-from", help="model folder (or Hub id) to fine-tune: its config and processor are kept")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per step and process (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10, help="early stopping: epochs without improvement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"],
                        help="default: accelerate launch's setting, else no")  # fmt: skip
    parser.add_argument("--augment-features", action="store_true",
                        help="pass training features through random recording chains (reverb, EQ, noise, gain)")
    parser.add_argument("--band-limit-probability", type=float, default=0.0,
                        help="with --augment-features: chance that a chain empties the band above a random cutoff "
                        "(4 kHz and up), as audio stored at a low sampling rate (default: 0)")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue from <output-dir>/checkpoint")
    parser.add_argument("--num-proc", type=int, default=2, help="processes for transcription and features")
    return parser


# What defines a run: resuming it with any of these changed would silently train something else.
RUN_DEFINING_ARGUMENTS = (
    "data", "split_scheme", "clips", "train_sets", "validation_set", "train_data", "validation_data",
    "validation_fraction", "config", "set", "symbolic_pretrained", "init_from", "batch_size", "learning_rate",
    "weight_decay", "seed", "gradient_accumulation_steps", "augment_features", "band_limit_probability",
)  # fmt: skip
PATH_ARGUMENTS = ("data", "clips", "train_data", "validation_data", "config", "symbolic_pretrained", "init_from")
EMOPIA_ARGUMENTS = ("data", "split_scheme", "clips", "validation_set")  # what a run on --train-data does not read


def load_or_exit(flag: str, location: str, load):
    """`load()`, or one `error:` line when the model folder (or Hub id) given with `flag` cannot be loaded."""
    try:
        return load()
    except OSError as error:
        sys.exit(load_error_message(flag, location, error))


def with_pretrained_symbolic_encoder(folder: str, config: MDPianoConfig):
    """A new classifier whose symbolic encoder comes from a masked-token pretrained folder; any other model folder
    (a classifier would hand over its acoustic branch and heads too) or an encoder of another shape is refused."""
    saved = load_or_exit("--symbolic-pretrained", folder, lambda: MDPianoConfig.from_pretrained(folder))
    if "MDPianoSymbolicForMaskedLM" not in (saved.architectures or []):
        sys.exit(f"error: --symbolic-pretrained {folder} holds {', '.join(saved.architectures or ['no model class'])}, "
                 "not an MDPianoSymbolicForMaskedLM from scripts/pretrain_symbolic.py; to start from a whole "
                 "classifier, use --init-from.")  # fmt: skip
    try:
        return MDPianoForAudioClassification.from_pretrained(folder, config=config)
    except RuntimeError as error:  # tensors of other sizes
        sys.exit(f"error: --symbolic-pretrained {folder}: its encoder does not fit this model's configuration "
                 f"({str(error).splitlines()[0]}); pretrain with the same --config.")  # fmt: skip


def build_model_and_processor(args, overrides: dict):
    """The model to train (its new layers initialised under `args.seed`) and its processor, with the config values
    `overrides` ([`config_values`] of `--config` and `--set`)."""
    set_seed(args.seed)
    if args.init_from:
        check_model_folder_or_exit("--init-from", args.init_from)
        saved = load_or_exit("--init-from", args.init_from, lambda: MDPianoConfig.from_pretrained(args.init_from))
        # Values equal to the model's own (its config file given whole, say) change nothing.
        if fixed := [name for name in overrides if name in PROCESSOR_CONFIG_FIELDS and overrides[name] != getattr(saved, name)]:
            sys.exit(f"error: --init-from {args.init_from} keeps its processor, so its inputs stay as they are: "
                     f"{', '.join(fixed)} cannot be changed by --config or --set when fine-tuning (train a new model "
                     "without --init-from for other features, windows or tokens).")  # fmt: skip
        # Fitted to the old network's decisions, not the new one's. Dropped in the same call as the overrides apply,
        # so that they are checked against a config without them (a fusion refuses `domains=acoustic`).
        dropped = {}
        for field, refit in [("quadrant_logit_bias", "calibrate anew (scripts/evaluate.py --fit-calibration)"),
                             *((field, "refit it (scripts/baseline.py --save-fusion)") for field in FUSION_FIELDS.values())]:  # fmt: skip
            if getattr(saved, field) is not None:
                print(f"dropping {args.init_from}'s {field}: {refit}")
                dropped[field] = None

        def load():
            try:
                return MDPianoForAudioClassification.from_pretrained(args.init_from, **{**overrides, **dropped})
            except RuntimeError as error:  # tensors of other sizes
                sys.exit(f"error: --init-from {args.init_from}: the --config or --set values change its layer sizes "
                         f"({str(error).splitlines()[0]}); fine-tuning keeps them: leave those values out.")  # fmt: skip
            except ValueError as error:  # values that do not fit the model's others
                sys.exit(f"error: --init-from {args.init_from}: {error} Change the --config or --set values.")

        return load_or_exit("--init-from", args.init_from, load), MDPianoProcessor.from_pretrained(args.init_from)
    config = MDPianoConfig(**overrides)
    if args.symbolic_pretrained:
        model = with_pretrained_symbolic_encoder(args.symbolic_pretrained, config)
    else:
        model = MDPianoForAudioClassification(config)
    return model, MDPianoProcessor.from_config(config)


def labelled_data(args, recorded: dict | None = None) -> tuple:
    """
    The user's labelled audio as (train, validation) datasets, and the cache folder name of each: --validation-data,
    or a stratified --validation-fraction of --train-data; a resumed run's split `recorded` in its clips.json
    instead (clips added to the data since are left out and named, clips gone from it refused), so that no clip it
    trained on becomes a validation clip.
    """
    train, train_name = load_labelled_audio(args.train_data), source_cache_name("user", args.train_data)
    recorded_in = Path(args.output_dir) / "clips.json"
    if args.validation_data:
        validation = load_labelled_audio(args.validation_data)
        check_disjoint(train, validation, args.train_data, args.validation_data)
        if recorded is not None:
            train, validation = recorded_split(recorded, train, validation, recorded_in=recorded_in)
        return (train, train_name), (validation, source_cache_name("user", args.validation_data))
    if recorded is not None:
        train, validation = recorded_split(recorded, train, recorded_in=recorded_in)
    else:
        fraction = 0.2 if args.validation_fraction is None else args.validation_fraction
        train, validation = split_validation(train, fraction, args.seed)
    # Both halves are cached under the whole collection's name: a new fraction or seed reuses the same files.
    return (train, train_name), (validation, train_name)


def main():
    parser = build_parser()
    args = parser.parse_args()
    if not (args.cache_dir or args.clips):
        parser.error("give --cache-dir (audio and caches) or --clips (a clip archive)")
    if args.clips and args.train_data:
        parser.error("--clips holds EMOPIA sets; --train-data needs --cache-dir")
    if args.validation_fraction is not None and (args.validation_data or not args.train_data):
        parser.error("--validation-fraction splits --train-data; not with --validation-data or EMOPIA's own split")
    args.validation_set = list(dict.fromkeys(args.validation_set))
    if args.init_from and args.symbolic_pretrained:
        parser.error("--init-from starts from that model's weights, symbolic encoder included: not with --symbolic-pretrained")
    if args.validation_data and not args.train_data:
        parser.error("--validation-data goes with --train-data; EMOPIA's validation split is read from --validation-set")
    if not 0 <= args.band_limit_probability <= 1:
        parser.error(f"--band-limit-probability is a chance, from 0 to 1; got {args.band_limit_probability:g}")
    if args.band_limit_probability and not args.augment_features:
        parser.error("--band-limit-probability acts on the chains of --augment-features: give both")
    if args.train_data:  # the user's audio replaces EMOPIA's sets: naming those would be ignored
        named = [flag for flag, name in (("--train-sets", "train_sets"), ("--validation-set", "validation_set"))
                 if getattr(args, name) != parser.get_default(name)]  # fmt: skip
        if named:
            parser.error(f"{' and '.join(named)} name EMOPIA audio sets: not with --train-data (use --validation-data)")
    for flag, value, least in (("--epochs", args.epochs, 1), ("--patience", args.patience, 1), ("--batch-size", args.batch_size, 1),
                               ("--gradient-accumulation-steps", args.gradient_accumulation_steps, 1),
                               ("--num-proc", args.num_proc, 1), ("--weight-decay", args.weight_decay, 0)):  # fmt: skip
        if value < least:
            parser.error(f"{flag} must be at least {least}, got {value:g}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be above 0, got {args.learning_rate:g}")
    try:
        check_mixed_precision(args.mixed_precision)
        overrides = config_values(args.config, args.set)
    except ValueError as error:  # the message names the setting, file or field
        parser.error(str(error))
    try:
        check_output_dir(args.output_dir, args.resume)
        clips_path = Path(args.output_dir) / "clips.json"
        recorded = json.loads(clips_path.read_text()) if args.resume and clips_path.is_file() else None
        if args.resume:
            # A run on --train-data reads none of the EMOPIA arguments (its data is recorded as its train set), and
            # a recorded split makes the fraction that drew it moot.
            unread = {*EMOPIA_ARGUMENTS, "train_sets"} if args.train_data else set()
            unread |= {"validation_fraction"} if recorded is not None else set()
            defining = tuple(name for name in RUN_DEFINING_ARGUMENTS if name not in unread)
            check_resumed_arguments(args.output_dir, vars(args), defining, PATH_ARGUMENTS)
        user_data = labelled_data(args, recorded) if args.train_data else None
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # the message says what to change
        sys.exit(f"error: {error}")
    model, processor = build_model_and_processor(args, overrides)
    emopia_dir = Path(args.data) / "emopia"
    use_acoustic = model.config.domains in ("both", "acoustic")

    unusable = []

    def cached(dataset, name):
        """The dataset with its cache entries, or `None` where some of its files are unusable: those are named with
        every other set's, once all are cached (see `loaded_clips`)."""
        try:
            return cache_dataset(dataset, processor, args.cache_dir, name, args.num_proc, with_features=use_acoustic)
        except AudioDecodeError as error:
            unusable.append(str(error))

    def loaded_clips(dataset):
        if unusable:
            sys.exit("error: " + "\n".join(unusable))
        return load_clips(dataset)

    if args.train_data:
        (train_rows, train_name), (validation_rows, validation_name) = user_data
        if validation_name == train_name:  # both shares of one collection: cached as one set, so counted together
            both = loaded_clips(cached(concatenate_datasets([train_rows, validation_rows]), train_name))
            train_clips, validation_clips = both[: len(train_rows)], {"validation": both[len(train_rows) :]}
        else:
            train_rows, validation_rows = cached(train_rows, train_name), cached(validation_rows, validation_name)
            train_clips, validation_clips = loaded_clips(train_rows), {"validation": loaded_clips(validation_rows)}
        args.train_sets = [args.train_data]
    elif args.clips:
        def archived(audio_set):
            return read_clip_archive(args.clips, audio_set, processor.feature_extractor, clip_source(processor, args.split_scheme))

        train_clips = [clip for audio_set in args.train_sets for clip in archived(audio_set)]
        validation_clips = {audio_set: archived(audio_set) for audio_set in args.validation_set}
    else:
        def emopia_set(split, audio_set):
            audio_dir = Path(args.cache_dir) / "audio" / audio_set
            return cached(load_emopia(emopia_dir, args.split_scheme, audio_dir=audio_dir, splits=[split])[split], audio_set)

        train_sets = [emopia_set("train", audio_set) for audio_set in args.train_sets]
        validation_sets = {audio_set: emopia_set("validation", audio_set) for audio_set in args.validation_set}
        train_clips = [clip for dataset in train_sets for clip in loaded_clips(dataset)]
        validation_clips = {audio_set: loaded_clips(dataset) for audio_set, dataset in validation_sets.items()}
    try:  # before anything is written: a clip too short would stop training at the batch that draws it
        check_clip_lengths(model.config, [train_clips, *validation_clips.values()])
    except ValueError as error:
        sys.exit(f"error: {error}")
    if model.config.domains != "acoustic":
        for name, clips in (("training", train_clips), *((f"validation ({n})", c) for n, c in validation_clips.items())):
            if empty := clips_without_notes(clips):
                print(f"warning: the transcriber found no notes in {len(empty)} {name} clip(s) (silence, noise, or not "
                      f"a piano?); their symbolic input is empty: {', '.join(empty[:20])}"
                      + (" ..." if len(empty) > 20 else ""))  # fmt: skip
    if use_acoustic and processor.feature_extractor.feature_mean is None:
        if silent := fit_feature_normalization(processor.feature_extractor, train_clips):
            print(f"warning: {len(silent)} training clip(s) are digital silence, left out of the feature "
                  f"normalisation: {', '.join(silent[:20])}" + (" ..." if len(silent) > 20 else ""))  # fmt: skip
    validation_sizes = ", ".join(f"{len(clips)} ({name})" for name, clips in validation_clips.items())
    print(f"{len(train_clips)} training clips ({', '.join(args.train_sets)}), validation clips: {validation_sizes}")
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        augment_features=args.augment_features,
        band_limit_probability=args.band_limit_probability,
        resume=args.resume,
    )
    # The launcher's rank, read without initialising Accelerate's state: `train` sets that up (gloo on CPUs).
    main_process = os.environ.get("RANK", "0") == "0"
    if main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "arguments.json").write_text(json.dumps(vars(args), indent=1))
        # Written before training, so that a resumed run, even of a run cut short, keeps this split.
        validated = dict.fromkeys(clip.clip_id for clips in validation_clips.values() for clip in clips)
        split = {"train": [clip.clip_id for clip in train_clips], "validation": list(validated)}
        (Path(args.output_dir) / "clips.json").write_text(json.dumps(split, indent=1))
    best = train(model, processor, train_clips, validation_clips, training_args)
    if main_process:
        best["trained_on"] = device_description()
        (Path(args.output_dir) / "best_validation.json").write_text(json.dumps(best, indent=1))
        print(json.dumps(best, indent=1))


if __name__ == "__main__":
    exit_on_input_errors(main)
