"""A reference baseline without deep learning: logistic regression on nine note statistics of each clip (key fit,
density, velocity, register, durations; see mdpiano.note_statistics), trained on EMOPIA's train split and evaluated
on its test split, from the ground-truth MIDI and from basic-pitch transcriptions of rendered test (and validation)
audio.

    python scripts/baseline.py --cache-dir ~/.cache/mdpiano                        # train on the train split's MIDI
    python scripts/baseline.py --cache-dir ~/.cache/mdpiano --train-on midi train-0   # ... and on transcriptions of train-0
    python scripts/baseline.py ... --eval-sets test-new-piano test-unseen test-clean validation-unseen
    python scripts/baseline.py ... --train-on train-0 --fusion-choose-on validation-unseen validation-new-piano
    python scripts/baseline.py ... --fusion-choose-on validation-unseen validation-new-piano --band-limited-rate 16000
    python scripts/baseline.py ... --train-on train-0+train-1     # one classifier on the transcriptions of both

The transcriptions are the shipped model's (its processor's settings), cached like evaluate.py's, so the two
share them. Writes results/baseline/<training source>/<evaluation set>/ (results.json, confusion matrix,
valence-arousal plane) and the table into README.md and model_card.md (unless --no-docs).

With --fusion-choose-on, the classifier trained on the first transcribed training set is also fused with the model
(--model; mdpiano.statistics_fusion): the network weight is chosen on those validation sets, then the fusion is
evaluated on --eval-sets (results/baseline/fusion/<evaluation set>/, and the "fusion" section of the documents).
With `midi` in --train-on, the train MIDI's classifier is fused likewise with the model reading each clip's MIDI
(its MIDI input; results/baseline/fusion/<evaluation set>-midi/). --save-fusion writes them into the model's
config.json (`note_statistics_fusion`, `midi_note_statistics_fusion`): from then on the pipeline and the evaluation
scripts fuse.

With --band-limited-rate R, the transcriptions' fusion also gets a network weight of its own for recordings sampled
below the model's rate (`band_limited_network_weight`), chosen on copies of the --fusion-choose-on sets resampled to
R Hz (<cache-dir>/audio/<set>-<R>Hz, as scripts/rate_robustness.py writes them); a clip of --eval-sets whose file
is sampled below the model's rate is fused with it.
"""

import os
import sys

# This folder holds evaluate.py; keep it from shadowing the `evaluate` library that computes the metrics.
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse  # noqa: E402
import json
from pathlib import Path

import numpy as np
from datasets import Audio, concatenate_datasets
from tqdm.auto import tqdm

from mdpiano import MDPianoConfig
from mdpiano.audio_mdpiano import source_sampling_rate
from mdpiano.caching import cache_dataset
from mdpiano.checkpoints import DEFAULT_MODEL_DIR, load_model_or_exit, save_for_package
from mdpiano.cli import exit_on_input_errors
from mdpiano.emopia import DEFAULT_DATA_DIR, load_emopia, split_of_audio_set
from mdpiano.evaluation import clip_predictions, replace_section, shown_path, write_report, write_resampled_copies
from mdpiano.note_statistics import NOTE_STATISTICS, note_statistics, statistics_shift
from mdpiano.notes_mdpiano import read_midi_notes
from mdpiano.statistics_fusion import (
    FUSION_FIELDS,
    choose_network_weight,
    fit_statistics_classifier,
    fuse,
    fusion_settings,
    statistics_probabilities,
)
from mdpiano.training import load_clips

REPOSITORY = Path(__file__).resolve().parents[1]


def clip_statistics(args, processor, split: str, source: str):
    """The split's clips (a `datasets.Dataset`), their note statistics (clips, len(NOTE_STATISTICS)), from the clips'
    MIDI (`source` "midi") or from the cached transcriptions of the audio set `source`, and the names of the listed
    clips left out. A source of sets joined by "+" pools them: each clip once per set."""
    if "+" in source:
        parts = [clip_statistics(args, processor, split, part) for part in source.split("+")]
        left_out = [name for _, _, names in parts for name in names]
        return concatenate_datasets([clips for clips, _, _ in parts]), np.concatenate([s for _, s, _ in parts]), left_out
    emopia_dir = Path(args.data) / "emopia"
    if source == "midi":
        splits, report = load_emopia(emopia_dir, args.split_scheme, splits=[split], return_report=True)
        paths = tqdm(splits[split]["midi_path"], desc=f"Note statistics, {split} MIDI")
        return splits[split], np.stack([note_statistics(read_midi_notes(path)) for path in paths]), report.left_out(split)
    audio_dir = Path(args.cache_dir) / "audio" / source
    splits, report = load_emopia(emopia_dir, args.split_scheme, audio_dir=audio_dir, splits=[split], return_report=True)
    dataset = splits[split]
    if len(dataset) == 0:
        raise ValueError(f"{audio_dir} holds audio of none of the {split} split's clips: render it first "
                         f"(scripts/render_emopia.py --cache-dir {args.cache_dir} --sets {source}).")  # fmt: skip
    clips = load_clips(cache_dataset(dataset, processor, args.cache_dir, source, args.num_proc, with_features=False))
    # A clip lasts as long as its notes span for both sources (the audio's length would add the rendering's tail).
    return dataset, np.stack([note_statistics(clip.notes) for clip in clips]), report.left_out(split)


def shift_section(evaluations: dict, output_dir: Path) -> str | None:
    """
    The table of how transcriptions' note statistics differ from the same test clips' MIDI statistics (mean shift in
    the MIDI's standard deviations, correlation across clips), for each transcribed test set of `evaluations`; also
    written to <output_dir>/transcription_shift.json. None without such a set.
    """
    midi_clips, midi_statistics, _ = evaluations["midi"]
    midi_rows = {clip_id: row for row, clip_id in enumerate(midi_clips["clip_id"])}
    shifts = {}
    for source, (clips, statistics, _) in evaluations.items():
        if source == "midi" or split_of_audio_set(source) != "test":
            continue
        shared = [(midi_rows[clip_id], row) for row, clip_id in enumerate(clips["clip_id"]) if clip_id in midi_rows]
        midi_index, set_index = (list(index) for index in zip(*shared))
        shift, correlation = statistics_shift(midi_statistics[midi_index], statistics[set_index])
        shifts[source] = {"clips": len(shared), "shift_sd": dict(zip(NOTE_STATISTICS, shift.tolist())),
                          "correlation": dict(zip(NOTE_STATISTICS, correlation.tolist()))}  # fmt: skip
    if not shifts:
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "transcription_shift.json").write_text(json.dumps(shifts, indent=2) + "\n")
    rows = ["| statistic | " + " | ".join(f"`{source}`: shift / r" for source in shifts) + " |",
            "|---|" + "---|" * len(shifts)]  # fmt: skip
    for name in NOTE_STATISTICS:
        cells = [f"{shifts[source]['shift_sd'][name]:+.2f} / {shifts[source]['correlation'][name]:.2f}" for source in shifts]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    clips = ", ".join(f"{shifts[source]['clips']} clips of `{source}`" for source in shifts)
    return "\n".join([
        "Note statistics of basic-pitch transcriptions against those of the same test clips' MIDI (read with its "
        f"sustain pedal; {clips}): shift, the mean of transcription minus MIDI in units of the MIDI statistic's "
        "standard deviation across clips; r, the correlation across clips between the two.",
        "",
        *rows,
    ])  # fmt: skip


def band_limited_set_name(source: str, rate: int) -> str:
    """The audio set of `source`'s files resampled to `rate` Hz (`scripts/rate_robustness.py` names them alike)."""
    return f"{source}-{rate}Hz"


def band_limited(clips, model_rate: int) -> np.ndarray:
    """(clips,) whether each clip's audio file is sampled below the model's rate (its header says)."""
    files = clips.cast_column("audio", Audio(decode=False))["audio"]
    return np.array([source_sampling_rate(file["path"]) < model_rate for file in files], dtype=bool)


def fusion_section(args, processor, model, classifier, trained_on: str, evaluations: dict, symbolic_source: str):
    """
    Chooses the network weight on --fusion-choose-on (and, with --band-limited-rate, the one for recordings sampled
    below the model's rate on those sets resampled), evaluates the fused model on --eval-sets, writes the reports,
    and returns the documents' table and the fusion's settings. `symbolic_source` "transcription" fuses the network
    as it hears audio with `classifier` on the transcriptions; "midi" fuses the network reading each clip's
    ground-truth MIDI as its symbolic input, with the set's audio, with `classifier` on that MIDI.
    """
    midi = symbolic_source == "midi"
    predicted = {}  # a set both chosen on and evaluated on is predicted once

    def probabilities(source, clips, statistics):
        if source not in predicted:
            if midi:  # the statistics of the clips' own MIDI, row for row
                statistics = np.stack([note_statistics(read_midi_notes(path)) for path in clips["midi_path"]])
            network = clip_predictions(model, processor, clips, args.cache_dir, source, symbolic_source=symbolic_source,
                                       num_proc=args.num_proc)["probabilities"]  # fmt: skip
            predicted[source] = network, statistics_probabilities(classifier, statistics), np.array(clips["label"])
        return predicted[source]

    choice_sets = {source: evaluations.get(source) or clip_statistics(args, processor, split_of_audio_set(source), source)
                   for source in args.fusion_choose_on}  # fmt: skip
    weight, scores = choose_network_weight([probabilities(source, *choice_sets[source][:2]) for source in choice_sets])
    provenance = {"trained_on": "train MIDI" if trained_on == "midi" else f"transcriptions of {trained_on}",
                  "weight_chosen_on": list(choice_sets)}  # fmt: skip
    limited_weight, limited_scores = None, {}
    if args.band_limited_rate and not midi:  # MIDI input is rendered at the model's rate: never band-limited
        limited_sets = {name: clip_statistics(args, processor, "validation", name)
                        for name in (band_limited_set_name(source, args.band_limited_rate) for source in choice_sets)}  # fmt: skip
        limited_weight, limited_scores = choose_network_weight([probabilities(name, *limited_sets[name][:2]) for name in limited_sets])
        provenance["band_limited_weight_chosen_on"] = list(limited_sets)
    settings = fusion_settings(classifier, weight, limited_weight, **provenance)
    with_midi = " with MIDI" if midi else ""
    rows = [f"| evaluated on{with_midi} | model 4Q | note statistics 4Q | fused 4Q | fused arousal | fused valence | fused macro-F1 |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    for source, (clips, statistics, left_out) in evaluations.items():
        if source == "midi":  # the test MIDI's statistics alone, without audio for the network: no row
            continue
        network, stats, labels = probabilities(source, clips, statistics)
        fused = fuse(network, stats, weight)
        if limited_weight is not None:  # clips sampled below the model's rate take their own weight
            fused = np.where(band_limited(clips, processor.sampling_rate)[:, None], fuse(network, stats, limited_weight), fused)
        # every weight's accuracy here too, for the record: the choice above never reads it
        by_weight = {f"{w:g}": float((fuse(network, stats, w).argmax(1) == labels).mean()) for w in scores}
        extra = {"network_weight": weight, "band_limited_network_weight": limited_weight, **provenance, "statistics_trained_on": trained_on,
                 "symbolic_source": symbolic_source, "accuracy_by_weight": by_weight, "clips_skipped": left_out}  # fmt: skip
        title = f"mdpiano-emopia fused with note statistics on EMOPIA {split_of_audio_set(source)}, {source}{with_midi}"
        report_dir = Path(args.output_dir) / "fusion" / (f"{source}-midi" if midi else source)
        metrics = write_report({"probabilities": fused}, clips, report_dir, title, extra)
        accuracy = {name: (p.argmax(1) == labels).mean() for name, p in (("model", network), ("statistics", stats))}
        chose = ", chose w" if source in choice_sets else ""
        rows.append(f"| `{source}` ({clips.num_rows} clips{chose}) | {accuracy['model']:.3f} | {accuracy['statistics']:.3f} | "
                    f"{metrics['accuracy']:.3f} | {metrics['arousal_accuracy']:.3f} | {metrics['valence_accuracy']:.3f} | "
                    f"{metrics['macro_f1']:.3f} |")  # fmt: skip
    tried = ", ".join(f"{w:g}: {score:.3f}" for w, score in scores.items())
    limited = "" if limited_weight is None else (
        f" Recordings sampled below the model's {processor.sampling_rate} Hz lack the top of the band the network "
        f"hears, so they take a weight of their own, w = {limited_weight:g}, chosen likewise on those validation "
        f"renderings resampled to {args.band_limited_rate} Hz "
        f"({' and '.join(f'`{name}`' for name in provenance['band_limited_weight_chosen_on'])}; tried: "
        f"{', '.join(f'{w:g}: {score:.3f}' for w, score in limited_scores.items())}); in the rows below it applies "
        f"to the clips sampled below the model's {processor.sampling_rate} Hz, if any."
    )  # fmt: skip
    inputs = ("each clip's audio in the set named with its ground-truth MIDI as the symbolic input (the pipeline's MIDI "
              "input reads a MIDI file's notes so, but hears the file as it renders it: with FluidR3_GM unless told "
              "otherwise, as `test-clean` is rendered), fused with the note-statistics classifier trained on the train "
              "split's MIDI" if midi else
              f"the audio, fused with the note-statistics classifier trained on transcriptions of `{trained_on}`")  # fmt: skip
    table = "\n".join([
        f"Log-linear fusion of `{shown_path(args.model, REPOSITORY)}`'s quadrant probabilities (calibration offsets "
        f"included) on {inputs}: p ∝ p_model^w · p_statistics^(1−w). The weight w = {weight:g} has the best 4Q accuracy averaged over "
        f"the validation split rendered as {' and '.join(f'`{s}`' for s in choice_sets)} (weights tried, with that "
        f"accuracy: {tried}); the test split's figures do not enter the choice, but the rule was fixed after an "
        f"exploratory run had shown them for every weight (see below).{limited} Arousal and valence accuracy are "
        "read off the fused quadrant.",
        "",
        *rows,
    ])  # fmt: skip
    return table, settings


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR), help="folder holding emopia/ (default: %(default)s)")
    parser.add_argument("--split-scheme", default="emopia_cls", choices=["emopia_cls", "emopia_1.0"])
    parser.add_argument("--cache-dir", required=True, help="holds audio/<set>; transcriptions are cached here")
    parser.add_argument("--train-on", nargs="+", default=["midi"], metavar="SOURCE",
                        help="'midi' (the train split's MIDI) and/or train audio sets, e.g. train-0; one classifier "
                        "each; sets joined by '+' (train-0+train-1) train one classifier on all of them (default: midi)")  # fmt: skip
    parser.add_argument("--eval-sets", nargs="*", default=["test-new-piano", "test-unseen", "test-clean"],
                        help="rendered test or validation audio sets to evaluate on, besides the test MIDI "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="whose transcription settings to use (default: %(default)s)")
    parser.add_argument("--output-dir", default=str(REPOSITORY / "results" / "baseline"),
                        help="reports go to <output-dir>/<training source>/<evaluation set> (default: %(default)s)")  # fmt: skip
    parser.add_argument("--num-proc", type=int, default=2, help="processes for transcription")
    parser.add_argument("--fusion-choose-on", nargs="+", metavar="SET",
                        help="validation audio sets on which to choose the weight of a fusion with --model")  # fmt: skip
    parser.add_argument("--save-fusion", action="store_true",
                        help="with --fusion-choose-on: save the fusions chosen into --model's config.json, so the model "
                        "fuses (a fusion this run did not choose is removed)")  # fmt: skip
    parser.add_argument("--band-limited-rate", type=int, metavar="HZ",
                        help="with --fusion-choose-on: also choose a network weight for recordings sampled below the "
                        "model's rate, on those sets resampled to this rate (e.g. 16000)")  # fmt: skip
    parser.add_argument("--no-docs", action="store_true", help="do not write the tables into README.md and model_card.md")
    args = parser.parse_args()
    try:
        for name in args.train_on:
            if name != "midi" and any(split_of_audio_set(part) != "train" for part in name.split("+")):
                raise ValueError(f"--train-on takes 'midi' or train audio sets (train-0, train-1, train-0+train-1, ...), "
                                 f"got {name!r}.")  # fmt: skip
        for name in args.eval_sets:
            if split_of_audio_set(name) == "train":
                raise ValueError(f"--eval-sets takes test or validation audio sets (test-unseen, validation-unseen, ...), "
                                 f"got {name!r}.")  # fmt: skip
        for name in args.fusion_choose_on or []:
            if split_of_audio_set(name) != "validation":
                raise ValueError(f"--fusion-choose-on takes validation audio sets (validation-unseen, ...), got {name!r}.")
        if args.save_fusion and not args.fusion_choose_on:
            raise ValueError("--save-fusion saves the fusion that --fusion-choose-on chooses: give both.")
        if args.band_limited_rate is not None and not args.fusion_choose_on:
            raise ValueError("--band-limited-rate resamples the sets of --fusion-choose-on: give both.")
    except ValueError as error:
        parser.error(str(error))
    sources = [*args.train_on, *args.eval_sets, *(args.fusion_choose_on or [])]
    audio_sets = dict.fromkeys(part for name in sources if name != "midi" for part in name.split("+"))
    unrendered = [name for name in audio_sets if not (Path(args.cache_dir) / "audio" / name).is_dir()]
    if unrendered:  # before any work
        sys.exit(f"error: {Path(args.cache_dir) / 'audio'} holds no {', '.join(unrendered)}: render it first "
                 f"(scripts/render_emopia.py --cache-dir {args.cache_dir} --sets {' '.join(unrendered)}).")  # fmt: skip

    model, processor = load_model_or_exit(args.model)
    if args.band_limited_rate is not None:
        if not 1000 <= args.band_limited_rate < processor.sampling_rate:
            sys.exit(f"error: --band-limited-rate must be at least 1000 Hz and below the model's {processor.sampling_rate} Hz, "
                     f"got {args.band_limited_rate}.")  # fmt: skip
        for source in args.fusion_choose_on:  # resumable: copies already written are kept
            audio = Path(args.cache_dir) / "audio"
            write_resampled_copies(audio / source, audio / band_limited_set_name(source, args.band_limited_rate), args.band_limited_rate)
    try:
        trains = {source: clip_statistics(args, processor, "train", source) for source in dict.fromkeys(args.train_on)}
        evaluations = {"midi": clip_statistics(args, processor, "test", "midi")}
        evaluations.update({source: clip_statistics(args, processor, split_of_audio_set(source), source) for source in args.eval_sets})
    except ValueError as error:
        sys.exit(f"error: {error}")
    rows = ["| trained on | evaluated on | 4Q accuracy | arousal | valence | macro-F1 |", "|---|---|---|---|---|---|"]
    classifiers = {}
    for train_source, (train, train_statistics, train_left_out) in trains.items():
        classifier = fit_statistics_classifier(train_statistics, np.array(train["label"]))
        classifiers[train_source] = classifier
        trained_on = "train MIDI" if train_source == "midi" else f"transcriptions of `{train_source}`"
        extra = {"trained_on": train_source, "training_clips": train.num_rows, "training_clips_skipped": train_left_out,
                 "statistics": list(NOTE_STATISTICS)}  # fmt: skip
        for source, (clips, statistics, left_out) in evaluations.items():
            name = "test-midi" if source == "midi" else source
            split = "test" if source == "midi" else split_of_audio_set(source)
            title = f"note-statistics baseline ({trained_on}) on EMOPIA {split}, {name}"
            predictions = {"probabilities": statistics_probabilities(classifier, statistics)}
            report_extra = {**extra, "clips_evaluated": clips.num_rows, "clips_skipped": left_out}
            metrics = write_report(predictions, clips, Path(args.output_dir) / train_source / name, title, report_extra)
            evaluated_on = "test MIDI" if source == "midi" else f"transcriptions of `{source}` ({clips.num_rows} {split} clips)"
            rows.append(f"| {trained_on} | {evaluated_on} | {metrics['accuracy']:.3f} | {metrics['arousal_accuracy']:.3f} | "
                        f"{metrics['valence_accuracy']:.3f} | {metrics['macro_f1']:.3f} |")  # fmt: skip

    options = "" if args.split_scheme == parser.get_default("split_scheme") else f" --split-scheme {args.split_scheme}"
    options += "" if args.train_on == ["midi"] else " --train-on " + " ".join(args.train_on)
    options += "" if args.eval_sets == parser.get_default("eval_sets") else " --eval-sets" + "".join(f" {s}" for s in args.eval_sets)
    options += "" if args.model == parser.get_default("model") else f" --model {args.model}"
    options += " --fusion-choose-on " + " ".join(args.fusion_choose_on) if args.fusion_choose_on else ""
    options += f" --band-limited-rate {args.band_limited_rate}" if args.band_limited_rate else ""
    options += " --save-fusion" if args.save_fusion else ""
    produced = f"Produced by `python scripts/baseline.py --cache-dir <cache-dir>{options}`"
    pooled = "; sets joined by + pool their transcriptions, each clip once per set" if any("+" in s for s in args.train_on) else ""
    text = "\n".join([
        f"Logistic regression on {len(NOTE_STATISTICS)} note statistics per clip ({', '.join(NOTE_STATISTICS)}), one "
        f"classifier per training source (the train split: {len(set(train['clip_id']))} clips{pooled}), evaluated on the EMOPIA test split "
        f"({evaluations['midi'][0].num_rows} clips) and the sets named. Transcriptions: basic-pitch, the model's "
        "settings. Arousal and valence accuracy are read off the predicted quadrant.",
        "",
        *rows,
        "",
        f"{produced} (results/baseline/<training source>/<evaluation set>/results.json).",
    ])  # fmt: skip
    sections = {"baseline": text}
    shift = shift_section(evaluations, Path(args.output_dir))
    if shift is not None:
        sections["transcription-shift"] = f"{shift}\n\n{produced} (results/baseline/transcription_shift.json)."
    if args.fusion_choose_on:
        model.eval()
        model.config.update(dict.fromkeys(FUSION_FIELDS.values()))  # the network's own, whatever the folder fuses with
        # the first transcribed training source for audio; the train MIDI's classifier, if trained, for MIDI input
        fused = {"transcription": next((source for source in trains if source != "midi"), None),
                 "midi": "midi" if "midi" in trains else None}  # fmt: skip
        tables, fusions = [], {}
        for symbolic_source, train_source in fused.items():
            if train_source is not None:
                table, settings = fusion_section(args, processor, model, classifiers[train_source], train_source,
                                                 evaluations, symbolic_source)  # fmt: skip
                tables.append(table)
                fusions[FUSION_FIELDS[symbolic_source]] = settings
        sections["fusion"] = "\n\n".join([*tables, f"{produced} (results/baseline/fusion/<evaluation set>[-midi]/results.json)."])
        if args.save_fusion:
            config = MDPianoConfig.from_pretrained(args.model)
            config.update({**dict.fromkeys(FUSION_FIELDS.values()), **fusions})  # the config fuses as this run chose
            save_for_package(args.model, config)
            for field, settings in fusions.items():
                print(f"{field} (network weight {settings['network_weight']:g}) saved in {Path(args.model) / 'config.json'}")
    for name, section in sections.items():
        print(section, end="\n\n")
        if not args.no_docs:
            for document in ("README.md", "model_card.md"):
                replace_section(REPOSITORY / document, name, section)

if __name__ == "__main__":
    exit_on_input_errors(main)
