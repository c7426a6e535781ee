r"""Pretrains the symbolic encoder by masked-token prediction on MAESTRO (train split) and GiantMIDI-Piano MIDI.

    python scripts/pretrain_symbolic.py --cache-dir ~/.cache/mdpiano --output-dir runs/symbolic-mlm \
        --config configs/emopia-cpu.json [--max-steps 400]

MIDI notes sound until their key's release or, if later, the sustain pedal's lift, as in a recording and its
transcription (--ignore-sustain-pedal ends them at the release, as the published encoders were pretrained).
Random 5-s windows (--window-s) are tokenized as the processor tokenizes a transcription; 15% of the
tokens are masked (transformers' DataCollatorForLanguageModeling) and the transformers Trainer (Accelerate
underneath) optimises MDPianoSymbolicForMaskedLM. The loss on fixed windows of MAESTRO's validation split, masked
once, picks the best checkpoint, saved in <output-dir>/best; `scripts/train.py --symbolic-pretrained
<output-dir>/best` starts the classifier's symbolic encoder from it. A rerun into a folder holding checkpoints resumes
from the last one saved whole (one cut short while saving is set aside as checkpoint-<step>.incomplete), and is
refused if its settings differ from the run's (arguments.json). --max-steps may grow (the cosine schedule is then
stretched to the new length; the first step after resuming runs at the learning rate the optimizer was saved with,
0 at the end of a schedule); a rerun of a finished run trains nothing and exports its best checkpoint again.

With --transcribed-pieces N, N of MAESTRO's train pieces (their first --transcribed-seconds) are also rendered
through the training distribution of SoundFonts, rooms, EQ, noise and codecs and transcribed by basic-pitch, so the
encoder also sees transcriber-like input (wrong and missing notes included), as the classifier does at inference.

Where the MIDI files are not (a rented GPU), pretrain from a notes archive: `--export-corpus corpus.npz.xz` writes the
parsed train and validation notes (~21 MB) and stops; `--corpus corpus.npz.xz` then replaces --data and --cache-dir.
On a GPU, tokenize in worker processes and train in bfloat16 (4000 steps took under 3 min on one H100):

    python scripts/pretrain_symbolic.py --corpus corpus.npz.xz --config configs/emopia-cpu.json \
        --output-dir runs/mlm --window-s 10 --max-steps 4000 --warmup-steps 200 --eval-steps 500 --bf16 \
        --dataloader-workers 6
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainingArguments, set_seed

from mdpiano import MDPianoConfig, MDPianoProcessor, MDPianoSymbolicForMaskedLM
from mdpiano.cli import exit_on_input_errors
from mdpiano.configuration_mdpiano import config_values
from mdpiano.emopia import DEFAULT_DATA_DIR
from mdpiano.pretraining import (
    LengthGroupedWindows,
    MaskedLMCollator,
    RandomMidiWindows,
    fixed_windows,
    load_corpus,
    maestro_files,
    masked_evaluation_windows,
    read_corpus_archive,
    resumable_checkpoint,
    transcribed_corpus,
    write_corpus_archive,
)
from mdpiano.training import check_resumed_arguments


# What defines a pretraining run: resuming it with any of these changed would silently train something else.
RUN_DEFINING_ARGUMENTS = (
    "data", "corpus", "config", "no_giantmidi", "transcribed_pieces", "transcribed_seconds", "window_s", "batch_size",
    "learning_rate", "warmup_steps", "mlm_probability", "eval_windows", "seed", "no_transcribed", "transcribed_repeat",
    "group_by_length", "bf16", "ignore_sustain_pedal",
)  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding maestro-v2.0.0/ and giantmidi-piano/")
    parser.add_argument("--cache-dir", help="parsed MIDI notes are cached here (not needed with --corpus)")
    parser.add_argument("--output-dir", help="checkpoints and best/ (not needed with --export-corpus)")
    parser.add_argument("--corpus", help="archive written by --export-corpus, read instead of the MIDI under --data")
    parser.add_argument("--export-corpus", metavar="PATH", help="write the parsed notes to PATH (.npz.xz) and stop")
    parser.add_argument("--config", help="JSON file of MDPianoConfig values (use the classifier's)")
    parser.add_argument("--no-giantmidi", action="store_true", help="MAESTRO only")
    parser.add_argument("--transcribed-pieces", type=int, default=0, help="MAESTRO pieces rendered and transcribed")
    parser.add_argument("--transcribed-seconds", type=float, default=120.0, help="of each (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="rendering and transcription processes")
    parser.add_argument("--window-s", type=float, default=5.0, help="seconds of MIDI per sequence (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--mlm-probability", type=float, default=0.15)
    parser.add_argument("--eval-windows", type=int, default=256)
    parser.add_argument("--eval-steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-transcribed", action="store_true",
                        help="leave out the train-transcribed pieces of a --corpus archive that has them")
    parser.add_argument("--transcribed-repeat", type=int, default=1,
                        help="draw windows from the transcribed excerpts this many times as often as their length gives")
    parser.add_argument("--dataloader-workers", type=int, default=0,
                        help="processes that tokenize windows for the batches (on a GPU, enough to keep it busy)")
    parser.add_argument("--group-by-length", action="store_true",
                        help="batch windows of similar length together (less padding: faster steps)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (GPUs that support it)")
    parser.add_argument("--ignore-sustain-pedal", action="store_true",
                        help="end MIDI notes at their key release, as the published encoders were pretrained (default: "
                        "held by the sustain pedal, as they sound and as the transcriptions hold them)")  # fmt: skip
    args = parser.parse_args()
    if args.corpus is None and args.cache_dir is None:
        parser.error("--cache-dir is needed to read MIDI files (or give --corpus)")
    if args.export_corpus is None and args.output_dir is None:
        parser.error("--output-dir is needed for pretraining")
    if args.transcribed_pieces < 0:
        parser.error("--transcribed-pieces must be at least 0")
    if not args.transcribed_seconds > 0:
        parser.error("--transcribed-seconds must be positive")
    if args.transcribed_repeat < 1:
        parser.error("--transcribed-repeat must be at least 1")
    if args.dataloader_workers < 0:
        parser.error("--dataloader-workers must be at least 0")
    if not args.window_s > 0 or min(args.max_steps, args.eval_steps, args.batch_size, args.eval_windows) < 1:
        parser.error("--window-s must be positive; --max-steps, --eval-steps, --batch-size and --eval-windows at least 1")
    if args.corpus and args.no_giantmidi:
        parser.error("--no-giantmidi selects MIDI under --data; a --corpus archive already holds what it holds")
    if args.bf16 and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        parser.error("--bf16 needs a GPU that supports bfloat16")
    if args.corpus and args.transcribed_pieces:
        parser.error("--transcribed-pieces renders MAESTRO from --data: export a corpus with them, then use --corpus")
    if args.no_transcribed and args.transcribed_repeat != 1:
        parser.error("--transcribed-repeat weighs the transcribed excerpts, which --no-transcribed leaves out")
    checkpoint, trained_steps = None, 0
    if args.output_dir:
        checkpoint, trained_steps, set_aside = resumable_checkpoint(args.output_dir)
        for folder in set_aside:
            print(f"{folder.name.partition('.incomplete')[0]} was saved only in part (a run stopped while saving): set aside "
                  f"as {folder}")  # fmt: skip
    if checkpoint is not None:  # the Trainer resumes from it
        try:
            check_resumed_arguments(args.output_dir, vars(args), RUN_DEFINING_ARGUMENTS, ("data", "corpus", "config"))
        except ValueError as error:
            parser.error(str(error))
        if trained_steps > args.max_steps:
            parser.error(f"{args.output_dir} already holds {trained_steps} steps, more than --max-steps "
                         f"{args.max_steps}: give at least {trained_steps}, or another --output-dir")  # fmt: skip

    try:
        config = MDPianoConfig(**config_values(args.config))
    except ValueError as error:  # the message names the file or field
        parser.error(str(error))
    if args.window_s > config.chunk_length_s:  # the processor cuts every window to its own analysis window
        parser.error(f"--window-s {args.window_s:g} is longer than the model's analysis window "
                     f"(chunk_length_s {config.chunk_length_s:g} s): give at most that")  # fmt: skip
    processor = MDPianoProcessor.from_config(config)
    if args.corpus:
        try:
            corpora = read_corpus_archive(args.corpus, sustain_pedal=not args.ignore_sustain_pedal)
        except ValueError as error:
            parser.error(str(error))
        if not {"train", "validation"} <= corpora.keys():
            parser.error(f"{args.corpus} holds {sorted(corpora)}, not train and validation corpora")
    else:
        midi_corpora = read_midi_corpora(Path(args.data), args.cache_dir, args.no_giantmidi, not args.ignore_sustain_pedal)
        corpora = dict(zip(("train", "validation"), midi_corpora))
        if args.transcribed_pieces:
            corpora["train-transcribed"] = read_transcribed_corpus(Path(args.data), processor, args)
    print(", ".join(f"{name}: {len(corpus)} pieces, {corpus_hours(corpus):.1f} h" for name, corpus in corpora.items()))
    if empty := [name for name in ("train", "validation") if not any(len(notes) for notes in corpora[name])]:
        parser.error(f"no notes to pretrain on in the {' and '.join(empty)} corpus (MAESTRO's {' and '.join(empty)} "
                     f"split{'s' if len(empty) > 1 else ''}): check {'--corpus' if args.corpus else '--data'}")  # fmt: skip
    if args.transcribed_repeat != 1 and not corpora.get("train-transcribed"):
        parser.error("--transcribed-repeat weighs transcribed excerpts, and this corpus has none (--transcribed-pieces)")
    if args.export_corpus:
        write_corpus_archive(args.export_corpus, corpora, sustain_pedal=not args.ignore_sustain_pedal)
        print(f"wrote {args.export_corpus}")
        return
    # Pieces are drawn in proportion to their duration: the transcribed excerpts weigh by their length, times
    # --transcribed-repeat (a few hours of them would otherwise be a few percent of the windows).
    transcribed = [] if args.no_transcribed else corpora.get("train-transcribed", [])
    train_corpus = corpora["train"] + transcribed * args.transcribed_repeat
    validation_corpus = corpora["validation"]
    share = corpus_hours(transcribed * args.transcribed_repeat) / corpus_hours(train_corpus)
    print(f"training windows drawn from {len(corpora['train'])} MIDI pieces ({corpus_hours(corpora['train']):.1f} h) "
          f"and {len(transcribed)} transcribed excerpts ({corpus_hours(transcribed):.1f} h, {share:.0%} of the windows)")

    train_windows = RandomMidiWindows(train_corpus, processor, seed=args.seed, window_s=args.window_s)
    if args.group_by_length:
        train_windows = LengthGroupedWindows(train_windows, args.batch_size, seed=args.seed)
    evaluation_windows = fixed_windows(validation_corpus, processor, args.eval_windows, args.seed + 1, args.window_s)
    set_seed(args.seed)  # the Trainer seeds only once built, after the model's initial weights are drawn
    finished = checkpoint is not None and trained_steps == args.max_steps
    if finished:  # a rerun of a finished run exports its best checkpoint again and trains nothing
        best_checkpoint = json.loads((checkpoint / "trainer_state.json").read_text()).get("best_model_checkpoint") or checkpoint
        print(f"{args.output_dir} finished its {args.max_steps} steps: exporting {Path(best_checkpoint).name} again")
        model = MDPianoSymbolicForMaskedLM.from_pretrained(best_checkpoint)
    else:
        model = MDPianoSymbolicForMaskedLM(config)
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        lr_scheduler_type="cosine",
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        save_strategy="steps",
        save_steps=args.eval_steps,
        save_total_limit=None,  # every checkpoint-<step>/ is kept: the recipe starts the classifier from one
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        logging_steps=10,
        seed=args.seed,
        report_to=[],
        dataloader_num_workers=args.dataloader_workers,
        bf16=args.bf16,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_windows,
        eval_dataset=masked_evaluation_windows(evaluation_windows, processor.tokenizer, args.mlm_probability, args.seed + 1),
        data_collator=MaskedLMCollator(processor.tokenizer, mlm_probability=args.mlm_probability),
    )
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "arguments.json").write_text(json.dumps(vars(args), indent=1))
    if not finished:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    metrics = trainer.evaluate()
    best = Path(args.output_dir) / "best"
    trainer.save_model(best)
    processor.save_pretrained(best)
    (best / "eval_metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps(metrics, indent=1))


def read_midi_corpora(data: Path, cache_dir, no_giantmidi: bool, sustain_pedal: bool) -> tuple[list, list]:
    """Notes of MAESTRO's train split (with GiantMIDI-Piano) and of its validation split; skipped files are printed."""
    train_files, missing_train = maestro_files(data / "maestro-v2.0.0", "train")
    validation_files, missing_validation = maestro_files(data / "maestro-v2.0.0", "validation")
    print(f"MAESTRO: {len(train_files)} train and {len(validation_files)} validation files; "
          f"{len(missing_train) + len(missing_validation)} listed files are absent (see REMOVED_CORRUPT_FILES.txt)")  # fmt: skip
    if not no_giantmidi:
        giantmidi = sorted((data / "giantmidi-piano" / "midis").glob("*.mid"))
        if not giantmidi:  # pretraining without it must be asked for, not happen because a folder is missing
            raise SystemExit(f"error: no GiantMIDI-Piano files in {data / 'giantmidi-piano' / 'midis'}: give the data "
                             "folder that holds giantmidi-piano/, or leave GiantMIDI-Piano out with --no-giantmidi.")  # fmt: skip
        print(f"GiantMIDI-Piano: {len(giantmidi)} files")
        train_files += giantmidi
    train_corpus, train_failures = load_corpus(train_files, cache_dir, sustain_pedal)
    validation_corpus, validation_failures = load_corpus(validation_files, cache_dir, sustain_pedal)
    for path, error in {**train_failures, **validation_failures}.items():
        print(f"skipped {path}: {error}")
    return train_corpus, validation_corpus


def read_transcribed_corpus(data: Path, processor, args) -> list:
    """Transcriptions of renderings of `--transcribed-pieces` MAESTRO train pieces, drawn with the seed."""
    files, _ = maestro_files(data / "maestro-v2.0.0", "train")
    if args.transcribed_pieces > len(files):
        raise SystemExit(f"--transcribed-pieces {args.transcribed_pieces}: MAESTRO's train split has {len(files)} files")
    chosen = np.random.default_rng(args.seed).choice(len(files), args.transcribed_pieces, replace=False)
    pieces = {f"{files[i].parent.name}-{files[i].stem}": files[i] for i in sorted(chosen)}
    corpus, failures = transcribed_corpus(pieces, processor, args.cache_dir, args.transcribed_seconds, args.workers)
    for piece, error in failures.items():
        print(f"skipped {piece} (not rendered): {error}")
    return corpus


def corpus_hours(corpus: list) -> float:
    return sum(float(notes[:, 1].max()) for notes in corpus if len(notes)) / 3600


if __name__ == "__main__":
    exit_on_input_errors(main)
