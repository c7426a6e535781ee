"""Makes a trained run the default model: saves it into models/mdpiano-emopia (for use with the package installed),
evaluates it on the EMOPIA test split, and writes the results into results/, README.md and model_card.md.

    python scripts/publish_model.py --run runs/full --cache-dir ~/.cache/mdpiano [--data ../shared/data]
    python scripts/publish_model.py --run runs/robust/augmented/seed-* --cache-dir ...   # the best of several runs
    python scripts/publish_model.py --model models/mdpiano-emopia --cache-dir ...        # re-measure the published one

The test audio comes from `python scripts/render_emopia.py --cache-dir ... --sets test-new-piano test-new-piano-clean
test-unseen test-clean` (the same files on any machine). --model evaluates the published model folder as it is
(nothing trained, calibrated or saved) and keeps the training paragraph of its publication, so the test figures can
be reproduced without the runs.

Given several runs, the one with the best validation accuracy (then the lower validation loss) is published; the
test split plays no part in the choice.

Evaluations (cached transcriptions; the first one also through the end-to-end pipeline): test-new-piano (the
acceptance condition: a piano, room, EQ, noise and codec unseen in training), test-new-piano-clean (that piano
alone), test-unseen (the same recording chain on the FluidR3_GM piano, whose samples training knows from
FluidR3Mono_GM), test-clean (that piano alone); both clean sets also with the symbolic branch fed the ground-truth
MIDI.
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json
import re
from pathlib import Path

import numpy as np

from mdpiano.augmentation import ACCEPTANCE_SET
from mdpiano.calibration import decision_scores, fit_quadrant_bias
from mdpiano.checkpoints import DEFAULT_MODEL_DIR, load_model_or_exit, save_for_package
from mdpiano.cli import exit_on_input_errors
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set
from mdpiano.evaluation import clip_predictions, metrics_table, read_section, replace_section, write_report
from mdpiano.statistics_fusion import FUSION_FIELDS
from mdpiano.training import recorded_validation_sets

REPOSITORY = Path(__file__).resolve().parents[1]
EVALUATIONS = [  # (name, audio set, mode, symbolic source)
    ("test-new-piano", "test-new-piano", "cached", "transcription"),
    ("test-new-piano-pipeline", "test-new-piano", "pipeline", "transcription"),
    ("test-new-piano-clean", "test-new-piano-clean", "cached", "transcription"),
    ("test-new-piano-clean-midi", "test-new-piano-clean", "cached", "midi"),
    ("test-unseen", "test-unseen", "cached", "transcription"),
    ("test-clean", "test-clean", "cached", "transcription"),
    ("test-clean-midi", "test-clean", "cached", "midi"),
]
AS_LOGGED = " (Figures of the training run, as logged then.)"  # what --model says of the training sentences it keeps
DESCRIPTIONS = {
    "test-new-piano": "a piano training never heard (FreePats grand, TiMidity++) through an unseen room, EQ, noise and "
    "MP3 codec; basic-pitch transcription",
    "test-new-piano-pipeline": "the same files through `pipeline(\"audio-classification\")` end to end",
    "test-new-piano-clean": "FreePats grand, dry, lossless; basic-pitch transcription",
    "test-new-piano-clean-midi": "FreePats grand, dry; symbolic branch fed the ground-truth MIDI",
    "test-unseen": "FluidR3_GM piano (training knows its samples, from FluidR3 Mono) through the same unseen chain",
    "test-clean": "FluidR3_GM piano (FluidSynth's own reverb and chorus), no added room, lossless; basic-pitch "
    "transcription",
    "test-clean-midi": "FluidR3_GM piano (FluidSynth's own reverb and chorus), no added room; symbolic branch fed the "
    "ground-truth MIDI",
}


def pretraining_summary(folder: str | None) -> str:
    """The masked-token pretraining state the symbolic encoder started from, read from its Trainer checkpoint."""
    state_file = Path(folder or "") / "trainer_state.json"
    if folder is None or not state_file.is_file():
        return ""
    state = json.loads(state_file.read_text())
    evaluations = [entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry]
    loss = f", MAESTRO validation loss {evaluations[-1]:.2f}" if evaluations else ""
    return f" (masked-token pretraining, step {state['global_step']} of {state['max_steps']}{loss})"


def best_run(runs: list[Path]) -> Path:
    """The run with the best validation accuracy, then the lower validation loss (train.py's own criterion); runs
    validated on other sets are refused, since their accuracies do not compare."""
    validated_on = {run: tuple(recorded_validation_sets(json.loads((run / "arguments.json").read_text()))) for run in runs}
    if len(set(validated_on.values())) > 1:
        listing = "; ".join(f"{run}: {', '.join(sets)}" for run, sets in validated_on.items())
        raise ValueError(f"The runs were validated on different sets ({listing}): their validation accuracies do not "
                         "compare; give runs validated alike.")  # fmt: skip

    def key(run):
        best = json.loads((run / "best_validation.json").read_text())
        return best["validation_accuracy"], -best["validation_loss"]

    return max(runs, key=key)


def training_summary(run: Path, candidates: list[Path]) -> str:
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    best = json.loads((run / "best_validation.json").read_text())
    arguments = json.loads((run / "arguments.json").read_text())
    minutes = sum(record["seconds"] for record in log) / 60
    validation_sets = recorded_validation_sets(arguments)
    renderings = " and ".join(f"`{name}`" for name in validation_sets)
    if len(validation_sets) > 1:
        each = ", ".join(f"{best['validation_sets'][name]['accuracy']:.3f} on `{name}`" for name in validation_sets)
        criterion = f"best mean 4Q accuracy over the validation split rendered as {renderings} {best['validation_accuracy']:.3f} ({each})"
    else:
        criterion = f"best 4Q accuracy on the validation split rendered as {renderings} {best['validation_accuracy']:.3f}"
    chosen = (f"; chosen from {len(candidates)} runs ({', '.join(str(c) for c in candidates)}) by that accuracy"
              if len(candidates) > 1 else "")  # fmt: skip
    return (
        f"Training: {len(log)} epochs ({minutes:.0f} min on {best.get('trained_on', 'this machine')}, {minutes / len(log):.1f} min per epoch, "
        f"validation included), {criterion} at epoch {best['epoch']}{chosen}; "
        f"train sets {', '.join(arguments['train_sets'])}"
        + (" with feature augmentation (`--augment-features`)" if arguments.get("augment_features") else "")
        + f", batch {arguments['batch_size']}, Adam, learning rate "
        f"{arguments['learning_rate']}, seed {arguments['seed']}, config `{arguments['config']}`, symbolic encoder "
        f"initialised from `{arguments['symbolic_pretrained']}`{pretraining_summary(arguments['symbolic_pretrained'])}."
    )


def uncalibrated_predictions(model, processor, args, audio_set: str, split_scheme: str):
    """The network's own clip probabilities (no offsets, no fusion: offsets apply first) on the validation split (of
    `split_scheme`) rendered as `audio_set`, and the clips' labels."""
    audio_dir = Path(args.cache_dir) / "audio" / audio_set
    dataset = load_emopia(Path(args.data) / "emopia", split_scheme, audio_dir=audio_dir, splits=["validation"])["validation"]
    kept = {field: getattr(model.config, field) for field in ("quadrant_logit_bias", *FUSION_FIELDS.values())}
    model.config.update(dict.fromkeys(kept))
    try:
        predictions = clip_predictions(model, processor, dataset, args.cache_dir, audio_set, num_proc=args.num_proc)
    finally:
        model.config.update(kept)
    return predictions["probabilities"], np.array(dataset["label"])


def calibration_summary(bias: list[float], audio_set: str, probabilities: np.ndarray, labels: np.ndarray) -> str:
    """What the offsets `bias`, fitted on the validation split rendered as `audio_set`, change on those clips."""
    (f1_before, f1_after), (accuracy_before, accuracy_after) = decision_scores(probabilities, labels, np.array([[0.0] * 4, bias]))
    print(f"quadrant_logit_bias {bias}: on {audio_set}, macro-F1 {f1_before:.3f} -> {f1_after:.3f}")
    return (
        f" Decision calibration: offsets {', '.join(f'{b:+.1f}' for b in bias)} (Q1-Q4) added to the log of each "
        f"recording's quadrant probabilities (`quadrant_logit_bias`), fitted on the validation split rendered as "
        f"`{audio_set}` ({len(labels)} clips; there, macro-F1 {f1_before:.3f} -> {f1_after:.3f}, 4Q accuracy "
        f"{accuracy_before:.3f} -> {accuracy_after:.3f})."
    )


def calibrate(model, processor, args, split_scheme: str) -> str:
    """
    Fits `config.quadrant_logit_bias` on the validation split (of the run's `split_scheme`, whose train split it did
    not train on) rendered as `args.calibrate_on`; says what it did.
    """
    probabilities, labels = uncalibrated_predictions(model, processor, args, args.calibrate_on, split_scheme)
    model.config.quadrant_logit_bias = fit_quadrant_bias(probabilities, labels)
    return calibration_summary(model.config.quadrant_logit_bias, args.calibrate_on, probabilities, labels)


def fusion_summary(config) -> str:
    """What the model's note-statistics fusions are and where they came from; empty for a model that does not fuse."""
    sentences = []
    for source, field in FUSION_FIELDS.items():
        fusion = getattr(config, field)
        if fusion is None:
            continue
        weight = fusion["network_weight"]
        chosen_on = " and ".join(f"`{name}`" for name in fusion.get("weight_chosen_on", [])) or "validation audio"
        inputs = "each recording's" if source == "transcription" else "for MIDI input, each file's"
        limited = ""
        if "band_limited_network_weight" in fusion:
            limited_weight = fusion["band_limited_network_weight"]
            limited_on = " and ".join(f"`{name}`" for name in fusion.get("band_limited_weight_chosen_on", [])) or "resampled validation audio"
            limited = (f" ({limited_weight:g} and {1 - limited_weight:g} for a recording sampled below the model's "
                       f"{config.sampling_rate} Hz, chosen on {limited_on})")  # fmt: skip
        sentences.append(
            f"{inputs} quadrant probabilities (calibrated) are multiplied with those of a logistic regression on its "
            f"notes' statistics (trained on {fusion.get('trained_on', 'the train split')}), raised to {weight:g} and "
            f"{1 - weight:g}{limited}, {'weights' if limited else 'a weight'} chosen on the validation split rendered "
            f"as {chosen_on} (`{field}`)"
        )
    if not sentences:
        return ""
    midi = "" if config.midi_note_statistics_fusion is not None else "; MIDI input is not fused"
    return (f"Fusion: {'; '.join(sentences)}{midi}. Written by `scripts/baseline.py --save-fusion`; see the fusion "
            "tables below.")


def last_publication() -> tuple[str, str | None, str]:
    """From README's results section: the training sentences of the model's publication, the validation rendering its
    decision offsets were fitted on (`None` for a model without them), and the command that published it."""
    paragraphs = read_section(REPOSITORY / "README.md", "results").split("\n\n")
    provenance = next((p for p in paragraphs if p.startswith("Training:")), "")
    command = re.search(r"`python scripts/publish_model.py --run [^`]*`", "\n\n".join(paragraphs))
    if not provenance or command is None:
        raise ValueError("README.md's results section does not say how the model was published; publish it with --run.")
    training, _, calibration = provenance.partition(" Decision calibration:")
    calibrated_on = re.search(r"fitted on the validation split rendered as `([^`]+)`", calibration)
    return training.removesuffix(AS_LOGGED), calibrated_on and calibrated_on.group(1), command.group(0)


def model_index(results: dict) -> str:
    metrics = results[ACCEPTANCE_SET]
    lines = ["model-index:", "  - name: mdpiano-emopia", "    results:", "      - task:", "          type: audio-classification",
             "          name: Piano emotion quadrant classification", "        dataset:", "          type: EMOPIA",
             "          name: EMOPIA test split (emopia_cls), rendered through a piano, room, EQ, noise and codec unseen in training",
             "          split: test", "        metrics:"]  # fmt: skip
    for key, name in (("accuracy", "4Q accuracy"), ("arousal_accuracy", "arousal accuracy"),
                      ("valence_accuracy", "valence accuracy"), ("macro_f1", "4Q macro-F1")):  # fmt: skip
        kind = "f1" if key == "macro_f1" else "accuracy"
        lines += [f"          - type: {kind}", f"            name: {name}", f"            value: {metrics[key]:.3f}"]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", nargs="+", help="training output folder(s) (holding best/ and log.jsonl)")
    source.add_argument("--model", help="a published model folder: re-evaluate it as it is (no runs needed)")
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--output", help=f"where --run saves the model (default: {DEFAULT_MODEL_DIR})")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--calibrate-on", metavar="AUDIO_SET",
                        help="fit the quadrant decision offsets on the validation split rendered as AUDIO_SET")
    args = parser.parse_args()
    if args.model and args.calibrate_on:
        parser.error("--calibrate-on fits the offsets of a model being published: use it with --run")
    if args.model and args.output:
        parser.error("--model re-evaluates a published folder and saves nothing: --output goes with --run")
    if args.calibrate_on:
        try:
            calibration_split = split_of_audio_set(args.calibrate_on)
        except ValueError:
            calibration_split = None
        if calibration_split != "validation":
            parser.error(f"--calibrate-on takes a rendering of the validation split (validation-...), got {args.calibrate_on}")
    # Checked before anything is calibrated or saved: a model published without its test figures would not be the
    # one README describes.
    if args.model:
        training, calibrated_on, publication = last_publication()
    calibration_set = args.calibrate_on or (calibrated_on if args.model else None)
    audio = Path(args.cache_dir) / "audio"
    needed = [*(audio_set for _, audio_set, _, _ in EVALUATIONS), *([calibration_set] if calibration_set else [])]
    unrendered = [name for name in dict.fromkeys(needed) if not (audio / name).is_dir()]
    if unrendered:
        parser.error(f"{audio} holds no {', '.join(unrendered)}: render it first (scripts/render_emopia.py --cache-dir "
                     f"{args.cache_dir} --sets {' '.join(unrendered)})")  # fmt: skip

    if args.run:
        candidates = [Path(run) for run in args.run]
        run = best_run(candidates)
        print(f"publishing {run}")
        model, processor = load_model_or_exit(run / "best", "--run")
        model.eval()
        split_scheme = json.loads((run / "arguments.json").read_text()).get("split_scheme", "emopia_cls")
        calibration = calibrate(model, processor, args, split_scheme) if args.calibrate_on else ""
        save_for_package(args.output or DEFAULT_MODEL_DIR, model, processor)
        provenance = training_summary(run, candidates) + calibration
        publication = (f"`python scripts/publish_model.py --run {' '.join(args.run)} --cache-dir <cache-dir>"
                       + (f" --calibrate-on {args.calibrate_on}" if args.calibrate_on else "") + "`")  # fmt: skip
        produced = f"Produced by {publication}"
    else:
        model, processor = load_model_or_exit(args.model)
        model.eval()
        # The training figures are the run's log; the offsets' effect is measured again on today's renderings.
        provenance = training + AS_LOGGED
        if calibrated_on and model.config.quadrant_logit_bias is not None:
            probabilities, labels = uncalibrated_predictions(model, processor, args, calibrated_on, "emopia_cls")
            provenance += calibration_summary(model.config.quadrant_logit_bias, calibrated_on, probabilities, labels)
        produced = (f"Model published by {publication}; test figures measured by `python scripts/publish_model.py "
                    f"--model {args.model} --cache-dir <cache-dir>`")  # fmt: skip
    splits = load_emopia(Path(args.data) / "emopia")
    test_songs = set(splits["test"]["song_id"])
    shared_songs = test_songs & set(splits["train"]["song_id"]) | test_songs & set(splits["validation"]["song_id"])
    results = {}
    for name, audio_set, mode, symbolic_source in EVALUATIONS:
        audio_dir = Path(args.cache_dir) / "audio" / audio_set
        dataset = load_emopia(Path(args.data) / "emopia", audio_dir=audio_dir, splits=["test"])["test"]
        predictions = clip_predictions(model, processor, dataset, args.cache_dir, audio_set, mode, symbolic_source, args.num_proc)
        results[name] = write_report(predictions, dataset, REPOSITORY / "results" / name, f"mdpiano-emopia, EMOPIA test, {name}")
        print(name, json.dumps({k: round(results[name][k], 3) for k in ("accuracy", "arousal_accuracy", "valence_accuracy")}))

    rows = ["| test audio | 4Q accuracy | arousal | valence | macro-F1 | arousal head | valence head |", "|---|---|---|---|---|---|---|"]
    for name, _, _, _ in EVALUATIONS:
        m = results[name]
        heads = [f"{m[k]:.3f}" if k in m else "—" for k in ("arousal_head_accuracy", "valence_head_accuracy")]
        rows.append(f"| {name}: {DESCRIPTIONS[name]} | {m['accuracy']:.3f} | {m['arousal_accuracy']:.3f} | "
                    f"{m['valence_accuracy']:.3f} | {m['macro_f1']:.3f} | {' | '.join(heads)} |")  # fmt: skip
    fusion = fusion_summary(model.config)
    text = "\n".join([
        f"EMOPIA test split (emopia_cls, {splits['test'].num_rows} clips from {len(test_songs)} songs, "
        f"{len(shared_songs)} of them also in training or validation), audio rendered from the clips' MIDI "
        "(not EMOPIA's recordings). Arousal and valence accuracy: from the predicted quadrant, and from the auxiliary "
        "heads. Paper (Zhu et al., 2023, on EMOPIA's recordings): 4Q 0.708, arousal 0.874, valence 0.869.",
        "",
        *rows,
        "",
        f"Per quadrant on {ACCEPTANCE_SET}:",
        "",
        metrics_table(results[ACCEPTANCE_SET]).split("\n\n", 1)[1],
        "",
        provenance,
        "",
        *([fusion, ""] if fusion else []),
        f"{produced}, on the test audio of `python scripts/render_emopia.py --cache-dir <cache-dir> --sets test-new-piano "
        "test-new-piano-clean test-unseen test-clean`; figures: `results/<test audio>/confusion_matrix.png`, `valence_arousal.png`; per-clip "
        "predictions: `results.json`.",
    ])
    for document in ("README.md", "model_card.md"):
        replace_section(REPOSITORY / document, "results", text)
    card = REPOSITORY / "model_card.md"
    replace_section(card, "model-index", model_index(results), yaml=True)
    print(text)


if __name__ == "__main__":
    exit_on_input_errors(main)
