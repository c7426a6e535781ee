"""The recipe's scripts end to end on a tiny EMOPIA (a few real clips): render, train, evaluate, ablations."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from mdpiano import MDPianoConfig
from mdpiano.note_statistics import NOTE_STATISTICS

REPOSITORY = Path(__file__).resolve().parents[1]
TINY_CONFIG = {"chunk_length_s": 6.0, "n_mels": 32, "conv_channels": [8, 16, 32], "d_model": 64, "num_encoder_layers": 2,
               "num_attention_heads": 4, "intermediate_size": 128, "cda_num_heads": 4, "max_symbolic_length": 512}  # fmt: skip


def run(script, *arguments, timeout=900):
    result = subprocess.run([sys.executable, str(REPOSITORY / "scripts" / script), *map(str, arguments)],
                            capture_output=True, text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def tiny_emopia(emopia_dir, tmp_path_factory):
    """EMOPIA with two clips per split (one per arousal level), and their renderings."""
    data = tmp_path_factory.mktemp("data")
    root = data / "emopia"
    (root / "midis").mkdir(parents=True)
    (root / "split" / "emopia_cls").mkdir(parents=True)
    shutil.copy(emopia_dir / "label.csv", root / "label.csv")
    for name in ("train.csv", "val.csv", "test.csv"):
        with open(emopia_dir / "split" / "emopia_cls" / name) as file:
            rows = list(csv.DictReader(file))
        chosen = [next(r for r in rows if r["label"] == "Q1"), next(r for r in rows if r["label"] == "Q3")]
        with open(root / "split" / "emopia_cls" / name, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["fname", "label"])
            writer.writeheader()
            writer.writerows(chosen)
        for row in chosen:
            (root / "midis" / f"{row['fname']}.mid").symlink_to(emopia_dir / "midis" / f"{row['fname']}.mid")
    cache = tmp_path_factory.mktemp("cache")
    run("render_emopia.py", "--data", data, "--cache-dir", cache, "--train-variants", "1", "--workers", "1",
        "--sets", "train", "validation", "test-clean")  # fmt: skip
    return data, cache


def test_render_train_evaluate(tiny_emopia, tmp_path, model_dir, run_script, monkeypatch):
    data, cache = tiny_emopia
    assert len(list((cache / "audio" / "train-0").glob("*.flac")) + list((cache / "audio" / "train-0").glob("*.ogg"))) == 2
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    output = tmp_path / "run"
    trained = run("train.py", "--data", data, "--cache-dir", cache, "--output-dir", output, "--config", config,
                  "--train-sets", "train-0", "--epochs", "2", "--batch-size", "2", "--num-proc", "1")  # fmt: skip
    assert "2 training clips" in trained.stdout
    assert (output / "best" / "model.safetensors").is_file() and len((output / "log.jsonl").read_text().splitlines()) == 2
    for extra, suffix in (([], ""), (["--symbolic-source", "midi"], "-midi"), (["--stride-s", "2.5"], "-stride-2.5s")):
        status, error = run_script("evaluate.py", "--model", output / "best", "--data", data, "--cache-dir", cache,
                                   "--audio-set", "test-clean", "--num-proc", "1", *extra)  # fmt: skip
        assert status == 0, error[-3000:]
        folder = output / "best" / "evaluation" / f"test-clean-test{suffix}"
        report = json.loads((folder / "results.json").read_text())
        assert len(report["clips"]) == 2 and 0 <= report["metrics"]["accuracy"] <= 1
        assert (folder / "confusion_matrix.png").is_file() and (folder / "valence_arousal.png").is_file()
        assert "| accuracy |" in run_script.stdout
    assert "windows every 2.5 s" in report["title"]
    # A model installed in site-packages (the shipped one, after `pip install`): reports go under the current folder,
    # and its config is not calibrated in place.
    import sysconfig

    paths = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {**paths, "purelib": str(output), "platlib": str(output)})
    monkeypatch.chdir(tmp_path)
    status, error = run_script("evaluate.py", "--model", output / "best", "--data", data, "--cache-dir", cache,
                               "--audio-set", "test-clean", "--num-proc", "1")  # fmt: skip
    assert status == 0, error[-3000:]
    assert (tmp_path / "evaluation" / "best" / "test-clean-test" / "results.json").is_file()
    status, error = run_script("evaluate.py", "--model", output / "best", "--data", data, "--cache-dir", cache,
                               "--audio-set", "test-clean", "--fit-calibration")  # fmt: skip
    assert status == 2 and "part of an installed package: copy the folder" in error
    monkeypatch.undo()
    status, error = run_script("evaluate.py", "--model", output / "best", "--cache-dir", cache, "--stride-s", "0")
    assert status == 2 and "--stride-s must be a positive number" in error
    status, error = run_script("evaluate.py", "--model", output / "best", "--data", data, "--cache-dir", cache,
                               "--audio-set", "test-clean", "--stride-s", "7")  # the tiny model's window is 6 s
    assert status == 2 and "--stride-s must be a number of seconds above 0 and at most the window length (6 s" in error
    status, error = run_script("evaluate.py", "--model", output / "best", "--cache-dir", cache, "--mode", "pipeline",
                               "--symbolic-source", "midi")  # fmt: skip
    assert status == 2 and "--symbolic-source midi needs --mode cached" in error
    # A folder of another split's clips says which split it holds.
    status, error = run_script("evaluate.py", "--model", output / "best", "--data", data, "--cache-dir", cache,
                               "--audio-dir", cache / "audio" / "train-0")  # fmt: skip
    assert status == 1 and "None of the EMOPIA test clips has audio in" in error and "it holds train clips: add --split train" in error


def test_training_validates_on_several_renderings(tiny_emopia, tmp_path, run_script, monkeypatch):
    """--validation-set with two renderings of the validation split: each epoch is scored on both, their mean picks
    the best epoch, and publish_model.py says so and refuses to rank runs validated otherwise."""
    import runpy

    from mdpiano.evaluation import write_scaled_copies
    from mdpiano.training import check_resumed_arguments

    data, cache = tiny_emopia
    write_scaled_copies(cache / "audio" / "validation", cache / "audio" / "validation-quiet", -12.0)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    output = tmp_path / "run"
    trained = run("train.py", "--data", data, "--cache-dir", cache, "--output-dir", output, "--config", config,
                  "--train-sets", "train-0", "--validation-set", "validation", "validation-quiet", "--epochs", "2",
                  "--batch-size", "2", "--num-proc", "1")  # fmt: skip
    assert "validation clips: 2 (validation), 2 (validation-quiet)" in trained.stdout
    log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    for record in log:
        per_set = record["validation_sets"]
        assert list(per_set) == ["validation", "validation-quiet"]
        assert record["validation_accuracy"] == pytest.approx(np.mean([s["accuracy"] for s in per_set.values()]))
        assert record["validation_loss"] == pytest.approx(np.mean([s["loss"] for s in per_set.values()]))
    best = json.loads((output / "best_validation.json").read_text())
    assert best["validation_accuracy"] == max(r["validation_accuracy"] for r in log) and "validation_sets" in best
    validated = json.loads((output / "clips.json").read_text())["validation"]
    assert len(validated) == len(set(validated)) == 2  # the split's clips, once each

    # A run recorded before several sets could be given named one, as a string: resuming it with that one is allowed.
    check_resumed_arguments(output, {"validation_set": ["validation", "validation-quiet"]}, ("validation_set",))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "arguments.json").write_text(json.dumps({"validation_set": "validation"}))
    check_resumed_arguments(tmp_path / "old", {"validation_set": ["validation"]}, ("validation_set",))
    with pytest.raises(ValueError, match="--validation-set 'validation' then"):
        check_resumed_arguments(tmp_path / "old", {"validation_set": ["validation", "validation-quiet"]}, ("validation_set",))

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script edits it
    publish = runpy.run_path(str(REPOSITORY / "scripts" / "publish_model.py"), run_name="publish_model")
    summary = publish["training_summary"](output, [output])
    each = ", ".join(f"{best['validation_sets'][name]['accuracy']:.3f} on `{name}`" for name in ("validation", "validation-quiet"))
    assert (f"best mean 4Q accuracy over the validation split rendered as `validation` and `validation-quiet` "
            f"{best['validation_accuracy']:.3f} ({each}) at epoch {best['epoch']}") in summary  # fmt: skip
    assert publish["best_run"]([output]) == output
    with pytest.raises(ValueError, match="validated on different sets"):
        publish["best_run"]([output, tmp_path / "old"])


def test_accelerate_launch_trains_with_two_processes(tiny_emopia, tmp_path):
    """DDP on CPU (gloo): the same script under `accelerate launch`, each process on its share of the batches."""
    data, cache = tiny_emopia
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    output = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", str(REPOSITORY / "scripts" / "train.py"),
               "--data", data, "--cache-dir", cache, "--output-dir", output, "--config", config, "--train-sets", "train-0",
               "--epochs", "2", "--batch-size", "2", "--num-proc", "1"]  # fmt: skip
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training on 2 process(es)" in result.stdout and "MULTI_CPU" in result.stdout
    assert (output / "best" / "model.safetensors").is_file()
    assert len((output / "log.jsonl").read_text().splitlines()) == 2  # one line per epoch: only the main process logs


def test_ablations_write_their_table(tiny_emopia, tmp_path, run_script):
    data, cache = tiny_emopia
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    output = tmp_path / "ablations"
    # ablations.py in this process; each run's train.py in a process of its own
    status, error = run_script("ablations.py", "--data", data, "--cache-dir", cache, "--output-dir", output, "--config", config,
                               "--variants", "acoustic-only", "symbolic-only", "--seeds", "0", "--epochs", "1", "--test-set",
                               "test-clean", "--num-proc", "1", "--no-docs", "--", "--train-sets", "train-0", "--batch-size", "2")  # fmt: skip
    assert status == 0, error[-3000:]
    table = (output / "ablations.md").read_text()
    assert "| acoustic-only | 1 |" in table and "| symbolic-only | 1 |" in table and "0.630 / 0.902 / 0.697" in table
    assert "one seed (0)" in table and "at most 1 epochs" in table and "Not run: full, stft-input, single-loss." in table
    assert "--cache-dir <cache-dir>" in table and str(cache) not in table
    assert run_script.stdout.strip().endswith(table.strip().splitlines()[-1])
    # --finished-only trains nothing: it tabulates the finished runs and names the rest
    status, error = run_script("ablations.py", "--data", data, "--cache-dir", cache, "--output-dir", output, "--config", config,
                               "--variants", "acoustic-only", "symbolic-only", "single-loss", "--seeds", "0", "1",
                               "--epochs", "1", "--test-set", "test-clean", "--no-docs", "--finished-only")  # fmt: skip
    assert status == 0, error[-3000:]
    table = (output / "ablations.md").read_text()
    assert "| acoustic-only | 1 |" in table and "| symbolic-only | 1 |" in table and "| single-loss" not in table
    assert "Not run: full, stft-input." in table
    assert "Not finished, left out: acoustic-only seed 1, symbolic-only seed 1, single-loss seed 0, single-loss seed 1." in table
    assert not (output / "single-loss").exists() and not (output / "acoustic-only" / "seed-1").exists()
    # Another test set: the trained runs are evaluated on it, not trained again (nor left with the old set's figures).
    # (a copy of test-clean under another name, removed after: the module's other tests share the cache)
    other_set = cache / "audio" / "test-new-piano-clean"
    shutil.copytree(cache / "audio" / "test-clean", other_set)
    run = output / "acoustic-only" / "seed-0"
    trained = (run / "best_validation.json").stat().st_mtime_ns
    try:
        status, error = run_script("ablations.py", "--data", data, "--cache-dir", cache, "--output-dir", output, "--config",
                                   config, "--variants", "acoustic-only", "--seeds", "0", "--epochs", "1", "--test-set",
                                   "test-new-piano-clean", "--num-proc", "1", "--no-docs", "--", "--train-sets", "train-0",
                                   "--batch-size", "2")  # fmt: skip
    finally:
        shutil.rmtree(other_set)
    assert status == 0, error[-3000:]
    assert json.loads((run / "evaluation" / "results.json").read_text())["test_set"] == "test-new-piano-clean"
    assert (run / "best_validation.json").stat().st_mtime_ns == trained
    status, error = run_script("ablations.py", "--cache-dir", cache, "--output-dir", tmp_path / "none", "--epochs", "0")
    assert status == 2 and "--epochs must be at least 1, got 0" in error and not (tmp_path / "none").exists()


def test_baseline_trains_on_midi_and_transcriptions(tiny_emopia, tmp_path, run_script):
    data, cache = tiny_emopia
    output = tmp_path / "baseline"
    # a second rendering of the train split, pooled with the first into one classifier
    shutil.copytree(cache / "audio" / "train-0", cache / "audio" / "train-1", dirs_exist_ok=True)
    status, error = run_script("baseline.py", "--data", data, "--cache-dir", cache, "--train-on", "midi", "train-0",
                               "train-0+train-1", "--eval-sets", "test-clean", "validation", "--num-proc", "1",
                               "--output-dir", output, "--no-docs")  # fmt: skip
    assert status == 0, error[-3000:]
    for train_on, training_clips in (("midi", 2), ("train-0", 2), ("train-0+train-1", 4)):
        for name in ("test-midi", "test-clean", "validation"):
            report = json.loads((output / train_on / name / "results.json").read_text())
            assert report["trained_on"] == train_on and report["training_clips"] == training_clips
            assert len(report["clips"]) == 2
            # trained on a Q1 and a Q3 clip: the other quadrants get no probability
            assert all(clip["probabilities"]["Q2"] == clip["probabilities"]["Q4"] == 0 for clip in report["clips"])
            assert (output / train_on / name / "confusion_matrix.png").is_file()
    rows = [line for line in run_script.stdout.splitlines() if line.startswith(("| train MIDI", "| transcriptions"))]
    assert [row.split(" | ")[:2] for row in rows] == [
        [trained_on, evaluated_on]
        for trained_on in ("| train MIDI", "| transcriptions of `train-0`", "| transcriptions of `train-0+train-1`")
        for evaluated_on in ("test MIDI", "transcriptions of `test-clean` (2 test clips)", "transcriptions of `validation` (2 validation clips)")
    ]  # fmt: skip
    assert "--train-on midi train-0 train-0+train-1 --eval-sets test-clean validation`" in run_script.stdout
    assert "(the train split: 2 clips; sets joined by + pool their transcriptions" in run_script.stdout
    # how the test transcriptions' statistics differ from the same clips' MIDI (validation sets have no MIDI row)
    shift = json.loads((output / "transcription_shift.json").read_text())
    assert list(shift) == ["test-clean"] and shift["test-clean"]["clips"] == 2
    assert list(shift["test-clean"]["shift_sd"]) == list(NOTE_STATISTICS) == list(shift["test-clean"]["correlation"])
    assert "| statistic | `test-clean`: shift / r |" in run_script.stdout
    # fused with the shipped model, its weights chosen on the validation clips; --save-fusion writes them into the
    # model folder's config, which then loads as a fusing model
    model_copy = tmp_path / "model"
    shutil.copytree(REPOSITORY / "models" / "mdpiano-emopia", model_copy)
    status, error = run_script("baseline.py", "--data", data, "--cache-dir", cache, "--train-on", "midi", "train-0",
                               "--eval-sets", "test-clean", "--fusion-choose-on", "validation", "--save-fusion",
                               "--model", model_copy, "--num-proc", "1", "--output-dir", output, "--no-docs")  # fmt: skip
    assert status == 0, error[-3000:]
    config = MDPianoConfig.from_pretrained(model_copy)
    for name, source, field, trained_on in (("test-clean", "transcription", "note_statistics_fusion", "train-0"),
                                            ("test-clean-midi", "midi", "midi_note_statistics_fusion", "midi")):  # fmt: skip
        report = json.loads((output / "fusion" / name / "results.json").read_text())
        assert report["statistics_trained_on"] == trained_on and report["weight_chosen_on"] == ["validation"]
        assert report["symbolic_source"] == source and len(report["clips"]) == 2 and len(report["accuracy_by_weight"]) == 11
        assert f"The weight w = {report['network_weight']:g} has the best" in run_script.stdout
        fusion = getattr(config, field)
        assert fusion["weight_chosen_on"] == ["validation"] and fusion["network_weight"] == report["network_weight"]
    assert config.note_statistics_fusion["trained_on"] == "transcriptions of train-0"
    assert config.midi_note_statistics_fusion["trained_on"] == "train MIDI"
    assert "| `test-clean` (2 clips) |" in run_script.stdout and "| evaluated on with MIDI |" in run_script.stdout
    assert "band_limited_network_weight" not in config.note_statistics_fusion
    # a run that chooses only the transcriptions' fusion leaves the config with that one alone; with
    # --band-limited-rate it also chooses a weight for audio sampled below the model's rate, on resampled copies
    status, error = run_script("baseline.py", "--data", data, "--cache-dir", cache, "--train-on", "train-0",
                               "--eval-sets", "test-clean", "--fusion-choose-on", "validation", "--save-fusion",
                               "--band-limited-rate", "16000", "--model", model_copy, "--num-proc", "1",
                               "--output-dir", output, "--no-docs")  # fmt: skip
    assert status == 0, error[-3000:]
    resampled = cache / "audio" / "validation-16000Hz"
    assert sorted(soundfile.info(path).samplerate for path in resampled.iterdir()) == [16000, 16000]
    shutil.rmtree(resampled)  # the cache is shared by this module's tests
    config = MDPianoConfig.from_pretrained(model_copy)
    assert config.note_statistics_fusion is not None and config.midi_note_statistics_fusion is None
    fusion = config.note_statistics_fusion
    assert fusion["band_limited_weight_chosen_on"] == ["validation-16000Hz"] and 0 <= fusion["band_limited_network_weight"] <= 1
    report = json.loads((output / "fusion" / "test-clean" / "results.json").read_text())
    assert report["band_limited_network_weight"] == fusion["band_limited_network_weight"]
    assert f"take a weight of their own, w = {fusion['band_limited_network_weight']:g}" in run_script.stdout
    assert "--fusion-choose-on validation --band-limited-rate 16000 --save-fusion`" in run_script.stdout
    for arguments, expected in ((["--fusion-choose-on", "test-clean"], "takes validation audio sets"),
                                (["--train-on", "train-0", "--save-fusion"], "give both"),
                                (["--train-on", "train-0", "--band-limited-rate", "16000"], "give both")):  # fmt: skip
        status, error = run_script("baseline.py", "--data", data, "--cache-dir", cache, *arguments)
        assert status == 2 and expected in error
    for train_on in ("test-clean", "train-0+test-clean"):
        status, error = run_script("baseline.py", "--data", data, "--cache-dir", cache, "--train-on", train_on)
        assert status == 2 and "train audio sets" in error
    status, error = run_script("baseline.py", "--data", data, "--cache-dir", cache, "--eval-sets", "train-0")
    assert status == 2 and "test or validation audio sets" in error
    status, error = run_script("baseline.py", "--data", data, "--cache-dir", cache, "--eval-sets", "test-unseen", "--no-docs",
                               "--output-dir", tmp_path / "none")  # fmt: skip
    assert status == 1 and "holds no test-unseen: render it first" in error and not (tmp_path / "none").exists()


def test_clip_archive_trains_and_evaluates_without_the_cache(tiny_emopia, tmp_path, run_script):
    """export_clips.py packs the cached sets; ablations.py (and train.py under it) then run on the archive alone."""
    data, cache = tiny_emopia
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    archive = tmp_path / "archive"
    status, error = run_script("export_clips.py", "--data", data, "--cache-dir", cache, "--output-dir", archive, "--config",
                               config, "--sets", "train-0", "validation", "test-clean", "--num-proc", "1",
                               "--clips-per-file", "1")  # fmt: skip
    assert status == 0, error[-3000:]
    manifest = json.loads((archive / "archive.json").read_text())
    assert {name: entry["clips"] for name, entry in manifest["sets"].items()} == {"train-0": 2, "validation": 2, "test-clean": 2}
    assert len(list(archive.glob("train-0-*.npz.xz"))) == 2
    output = tmp_path / "ablations"
    status, error = run_script("ablations.py", "--clips", archive, "--output-dir", output, "--config", config, "--jobs", "2",
                               "--variants", "full", "augmented", "--seeds", "0", "--epochs", "1", "--test-set",
                               "test-clean", "--no-docs", "--", "--train-sets", "train-0", "--batch-size", "2")  # fmt: skip
    assert status == 0, error[-3000:]
    table = (output / "ablations.md").read_text()
    assert "Training arguments added to every run: `--train-sets train-0 --batch-size 2`." in table
    assert "| full | 1 |" in table and "| augmented | 1 |" in table and "Trained on: CPU" in table
    assert table.splitlines()[-3].endswith("| — |")  # the augmented row has no paper figure
    assert "EMOPIA test split (emopia_cls, 2 clips)" in table and "Not run" not in table
    assert "Validation: the best epoch's 4Q accuracy on the validation split rendered as `validation` (like the training audio)" in table
    for variant, augmented in (("full", False), ("augmented", True)):
        assert json.loads((output / variant / "seed-0" / "arguments.json").read_text())["augment_features"] is augmented
        assert "2 training clips (train-0)" in (output / variant / "seed-0" / "train.log").read_text()
    assert run_script.stdout.strip().endswith(table.strip().splitlines()[-1])


def test_pretraining_from_an_exported_corpus(emopia_midis, tmp_path, run_script):
    """pretrain_symbolic.py reads MAESTRO-shaped MIDI, exports the notes, and pretrains from that archive alone."""
    import torch
    from safetensors.torch import load_file

    from mdpiano import MDPianoForAudioClassification
    from mdpiano.pretraining import read_corpus_archive, write_corpus_archive

    maestro = tmp_path / "data" / "maestro-v2.0.0"
    (maestro / "2018").mkdir(parents=True)
    rows = []
    for index, (midi, split) in enumerate(zip(emopia_midis[:4], ["train", "train", "train", "validation"])):
        shutil.copy(midi, maestro / "2018" / f"piece-{index}.midi")
        rows.append({"split": split, "midi_filename": f"2018/piece-{index}.midi"})
    rows.append({"split": "train", "midi_filename": "2018/absent.midi"})  # listed, not there: reported, not fatal
    with open(maestro / "maestro-v2.0.0.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["split", "midi_filename"])
        writer.writeheader()
        writer.writerows(rows)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    corpus = tmp_path / "corpus.npz.xz"
    # exporting in this process; the pretraining runs in processes of their own
    status, error = run_script("pretrain_symbolic.py", "--data", tmp_path / "data", "--cache-dir", tmp_path / "cache",
                               "--no-giantmidi", "--transcribed-pieces", "2", "--transcribed-seconds", "8", "--workers", "1",
                               "--export-corpus", corpus)  # fmt: skip
    assert status == 0, error[-3000:]
    assert "3 train and 1 validation files; 1 listed files are absent" in run_script.stdout
    corpora = read_corpus_archive(corpus)
    assert {name: len(pieces) for name, pieces in corpora.items()} == {"train": 3, "validation": 1, "train-transcribed": 2}
    assert all(notes.shape[1] == 4 and len(notes) > 0 for pieces in corpora.values() for notes in pieces)
    # Transcriptions of the rendered excerpts: notes within their first 8 s, not the MIDI's own notes.
    assert all(notes[:, 0].max() < 8.0 for notes in corpora["train-transcribed"])
    assert len(list((tmp_path / "cache" / "audio" / "pretraining-first-8s").glob("2018-piece-*.*"))) == 2

    output = tmp_path / "mlm"
    settings = ["--corpus", corpus, "--output-dir", output, "--config", config, "--batch-size", "2", "--eval-steps", "1",
                "--eval-windows", "2", "--warmup-steps", "0", "--dataloader-workers", "1", "--transcribed-repeat", "3",
                "--group-by-length"]  # fmt: skip
    pretrained = run("pretrain_symbolic.py", *settings, "--max-steps", "2")
    assert "from 3 MIDI pieces (0.0 h) and 2 transcribed excerpts" in pretrained.stdout
    assert np.isfinite(json.loads((output / "best" / "eval_metrics.json").read_text())["eval_loss"])
    MDPianoForAudioClassification.from_pretrained(output / "best")  # the classifier starts from it
    midi_only = run("pretrain_symbolic.py", "--corpus", corpus, "--output-dir", tmp_path / "mlm-midi", "--config", config,
                    "--max-steps", "1", "--batch-size", "2", "--eval-windows", "2", "--no-transcribed")  # fmt: skip
    assert "and 0 transcribed excerpts (0.0 h, 0% of the windows)" in midi_only.stdout
    again = run("pretrain_symbolic.py", "--corpus", corpus, "--output-dir", tmp_path / "mlm-midi-again", "--config", config,
                "--max-steps", "1", "--batch-size", "2", "--eval-windows", "2", "--no-transcribed")  # fmt: skip
    assert "and 0 transcribed excerpts" in again.stdout
    # The seed fixes the run, the encoder's initial weights included.
    first, second = (load_file(path / "best" / "model.safetensors") for path in (tmp_path / "mlm-midi", tmp_path / "mlm-midi-again"))
    assert first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)

    # A rerun of the finished run trains nothing and exports its best checkpoint again; fewer steps are refused.
    exported = load_file(output / "best" / "model.safetensors")
    again = run("pretrain_symbolic.py", *settings, "--max-steps", "2")
    assert "finished its 2 steps: exporting checkpoint-" in again.stdout and not (output / "checkpoint-3").exists()
    assert all(torch.equal(tensor, load_file(output / "best" / "model.safetensors")[name]) for name, tensor in exported.items())
    status, error = run_script("pretrain_symbolic.py", *settings, "--max-steps", "1")
    assert status == 2 and "already holds 2 steps, more than --max-steps 1" in error
    # A checkpoint cut short while saving is set aside: the run resumes from the last whole one.
    (output / "checkpoint-3").mkdir()
    (output / "checkpoint-3" / "model.safetensors").write_bytes(b"")
    longer = run("pretrain_symbolic.py", *settings, "--max-steps", "3")
    assert "checkpoint-3 was saved only in part" in longer.stdout and (output / "checkpoint-3.incomplete").is_dir()
    assert (output / "checkpoint-3" / "trainer_state.json").is_file()
    # A rerun resumes from the last checkpoint: with other settings, it is refused.
    status, error = run_script("pretrain_symbolic.py", "--corpus", corpus, "--output-dir", output, "--config", config,
                               "--batch-size", "4", "--transcribed-repeat", "3")  # fmt: skip
    assert status == 2 and "--batch-size 2 then, 4 now" in error
    status, error = run_script("pretrain_symbolic.py", "--corpus", corpus, "--output-dir", tmp_path / "mlm-2",
                               "--no-transcribed", "--transcribed-repeat", "3")  # fmt: skip
    assert status == 2 and "which --no-transcribed leaves out" in error
    status, error = run_script("pretrain_symbolic.py", "--corpus", corpus, "--output-dir", tmp_path / "mlm-2",
                               "--ignore-sustain-pedal")  # the archive's MIDI was read with the pedal
    assert status == 2 and "drop --ignore-sustain-pedal" in error
    status, error = run_script("pretrain_symbolic.py", "--corpus", tmp_path / "absent.npz.xz", "--output-dir", tmp_path / "mlm-3")
    assert status == 2 and "No corpus archive at" in error
    status, error = run_script("pretrain_symbolic.py", "--corpus", corpus, "--output-dir", tmp_path / "mlm-4", "--config",
                               config, "--window-s", "600")  # fmt: skip
    assert status == 2 and "--window-s 600 is longer than the model's analysis window" in error
    # Data that is not all there is named, not pretrained without: GiantMIDI-Piano absent, a split without notes.
    status, error = run_script("pretrain_symbolic.py", "--data", tmp_path / "data", "--cache-dir", tmp_path / "cache",
                               "--export-corpus", tmp_path / "other.npz.xz")  # fmt: skip
    assert status == 1 and "no GiantMIDI-Piano files in" in error and "--no-giantmidi" in error
    hollow = write_corpus_archive(tmp_path / "hollow.npz.xz", {"train": corpora["train"], "validation": []})
    status, error = run_script("pretrain_symbolic.py", "--corpus", hollow, "--output-dir", tmp_path / "mlm-5")
    assert status == 2 and "no notes to pretrain on in the validation corpus" in error and "check --corpus" in error
    (tmp_path / "broken.json").write_text('{"d_model": 64,')
    for script, arguments in (("pretrain_symbolic.py", ["--corpus", corpus, "--output-dir", tmp_path / "mlm-6"]),
                              ("export_clips.py", ["--cache-dir", tmp_path / "cache", "--output-dir", tmp_path / "archive"])):  # fmt: skip
        status, error = run_script(script, *arguments, "--config", tmp_path / "broken.json")
        assert status == 2 and "broken.json is not valid JSON" in error


def test_corpus_archive_errors(tmp_path):
    from mdpiano.pretraining import read_corpus_archive, write_corpus_archive

    corrupt = tmp_path / "corrupt.npz.xz"
    corrupt.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not a readable corpus archive"):
        read_corpus_archive(corrupt)
    notes = [np.array([[0.0, 0.5, 60, 80]], np.float32), np.zeros((0, 4), np.float32)]
    assert [len(n) for n in read_corpus_archive(write_corpus_archive(tmp_path / "c.npz.xz", {"train": notes}))["train"]] == [1, 0]
    released = write_corpus_archive(tmp_path / "released.npz.xz", {"train": notes}, sustain_pedal=False)
    assert len(read_corpus_archive(released, sustain_pedal=False)["train"]) == 2
    with pytest.raises(ValueError, match="read without their sustain pedal.*add --ignore-sustain-pedal"):
        read_corpus_archive(released)
    with pytest.raises(ValueError, match="read with their sustain pedal.*drop --ignore-sustain-pedal"):
        read_corpus_archive(tmp_path / "c.npz.xz", sustain_pedal=False)


def test_level_robustness_compares_the_floor_on_quieter_copies(tiny_emopia, tmp_path, model_dir, run_script):
    data, cache = tiny_emopia
    output = tmp_path / "levels.json"
    status, error = run_script("level_robustness.py", "--model", model_dir, "--data", data, "--cache-dir", cache,
                               "--audio-set", "test-clean", "--gains-db", "0", "-30", "--num-proc", "1",
                               "--output", output, "--no-readme")  # fmt: skip
    assert status == 0, error[-3000:]
    results = json.loads(output.read_text())
    assert results["clips"] == 2 and results["min_peak"] == 0.25 and [row["gain_db"] for row in results["rows"]] == [0, -30]
    loud, quiet = results["rows"]
    assert loud["with_floor"] == loud["without_floor"]  # renderings peak above the floor: nothing is raised
    assert loud["with_floor"]["same_prediction"] == 1.0 and quiet["median_peak"] < loud["median_peak"] / 30
    assert len(list((cache / "audio" / "test-clean-gain-30dB").glob("*.wav"))) == 2
    assert "| -30 dB |" in run_script.stdout
    status, error = run_script("level_robustness.py", "--cache-dir", cache, "--audio-set", "bogus")
    assert status == 2 and "Cannot tell the EMOPIA split" in error


def test_rate_robustness_evaluates_copies_at_lower_rates(tiny_emopia, tmp_path, model_dir, run_script):
    data, cache = tiny_emopia
    output = tmp_path / "rates.json"
    status, error = run_script("rate_robustness.py", "--model", model_dir, "--data", data, "--cache-dir", cache,
                               "--audio-set", "test-clean", "--sampling-rates", "11025", "--num-proc", "1",
                               "--output", output, "--no-readme")  # fmt: skip
    assert status == 0, error[-3000:]
    results = json.loads(output.read_text())
    assert results["clips"] == 2 and [row["sampling_rate"] for row in results["rows"]] == [None, 11025]
    assert results["rows"][0]["same_prediction"] == 1.0 and results["model_sampling_rate"] == 22050
    copies = sorted((cache / "audio" / "test-clean-11025Hz").glob("*.wav"))
    assert len(copies) == 2 and all(soundfile.info(path).samplerate == 11025 for path in copies)
    assert "| 11025 Hz | 5.51 kHz |" in run_script.stdout
    assert "band_limited_network_weight" not in results and "band_limited" not in run_script.stdout  # no such fusion
    shutil.rmtree(cache / "audio" / "test-clean-11025Hz")  # the module's other tests share the cache
    status, error = run_script("rate_robustness.py", "--cache-dir", cache, "--sampling-rates", "16")
    assert status == 2 and "in Hz, 1000 or more" in error


def test_scripts_name_bad_inputs_without_a_traceback(run_script, tmp_path):
    status, error = run_script("render_emopia.py", "--cache-dir", tmp_path, "--sets", "test-clean", "train-x")
    assert status == 2 and "Unknown set 'train-x'" in error
    assert not (tmp_path / "audio").exists()  # refused before rendering anything
    status, error = run_script("render_emopia.py", "--data", tmp_path / "nowhere", "--cache-dir", tmp_path, "--sets", "test-clean")
    assert status == 1 and error.startswith("error: ") and "nowhere" in error
    status, error = run_script("pretrain_symbolic.py", "--data", tmp_path / "nowhere", "--cache-dir", tmp_path,
                               "--output-dir", tmp_path / "mlm")  # fmt: skip
    assert status == 1 and error.startswith("error: ") and "nowhere" in error


def test_publish_model_remeasures_a_published_model_from_the_readme(run_script, tmp_path, monkeypatch):
    """--model keeps the training paragraph and command its publication wrote into README's results section."""
    import runpy

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script edits it
    publish = runpy.run_path(str(REPOSITORY / "scripts" / "publish_model.py"), run_name="publish_model")
    training, calibrated_on, command = publish["last_publication"]()
    assert training.startswith("Training: ") and command.startswith("`python scripts/publish_model.py --run ")
    # the offsets' sentence is measured again, on the rendering named there; the training sentences are kept once
    assert "Decision calibration" not in training and calibrated_on == "validation-unseen"
    assert not training.endswith(publish["AS_LOGGED"])
    # the paragraph on the fusions says which inputs each one serves
    fusion = MDPianoConfig.from_pretrained(REPOSITORY / "models" / "mdpiano-emopia").note_statistics_fusion
    summary = publish["fusion_summary"](MDPianoConfig(note_statistics_fusion=fusion))
    assert summary.startswith("Fusion: each recording's") and summary.count("raised to") == 1
    assert "MIDI input is not fused" in summary
    summary = publish["fusion_summary"](MDPianoConfig(note_statistics_fusion=fusion, midi_note_statistics_fusion=fusion))
    assert "; for MIDI input, each file's" in summary and "(`midi_note_statistics_fusion`)" in summary
    assert "not fused" not in summary and publish["fusion_summary"](MDPianoConfig()) == ""
    limited = {**fusion, "band_limited_network_weight": 0.2, "band_limited_weight_chosen_on": ["validation-unseen-16000Hz"]}
    summary = publish["fusion_summary"](MDPianoConfig(note_statistics_fusion=limited))
    assert ("raised to 0.5 and 0.5 (0.2 and 0.8 for a recording sampled below the model's 22050 Hz, chosen on "
            "`validation-unseen-16000Hz`), weights chosen on the validation split") in summary
    status, error = run_script("publish_model.py", "--model", tmp_path, "--cache-dir", tmp_path, "--calibrate-on", "x")
    assert status == 2 and "use it with --run" in error
    status, error = run_script("publish_model.py", "--model", tmp_path, "--run", tmp_path, "--cache-dir", tmp_path)
    assert status == 2 and "not allowed with argument" in error
    status, error = run_script("publish_model.py", "--model", tmp_path, "--cache-dir", tmp_path, "--output", tmp_path / "m")
    assert status == 2 and "--output goes with --run" in error
    # Nothing is calibrated or saved before the audio it needs is known to be there, nor with a model that cannot load.
    status, error = run_script("publish_model.py", "--run", tmp_path, "--cache-dir", tmp_path, "--calibrate-on", "test-clean")
    assert status == 2 and "--calibrate-on takes a rendering of the validation split" in error
    status, error = run_script("publish_model.py", "--run", tmp_path, "--cache-dir", tmp_path, "--output", tmp_path / "m")
    assert status == 2 and "holds no test-new-piano, test-new-piano-clean, test-unseen, test-clean: render it first" in error
    assert not (tmp_path / "m").exists()
    for name in ("test-new-piano", "test-new-piano-clean", "test-unseen", "test-clean"):
        (tmp_path / "audio" / name).mkdir(parents=True)
    status, error = run_script("publish_model.py", "--model", tmp_path / "no-model", "--cache-dir", tmp_path)
    assert status == 2 and "holds no validation-unseen: render it first" in error  # where the offsets are remeasured
    (tmp_path / "audio" / "validation-unseen").mkdir()
    status, error = run_script("publish_model.py", "--model", tmp_path / "no-model", "--cache-dir", tmp_path)
    assert status == 1 and error.startswith(f"error: --model {tmp_path / 'no-model'}: no such folder")


def test_publish_model_measures_the_offsets_on_the_networks_own_probabilities(monkeypatch):
    """The calibration figures come from predictions without offsets or fusion, and the model keeps both after,
    also when the predictions fail midway."""
    import runpy
    from types import SimpleNamespace

    from datasets import Dataset

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script edits it
    uncalibrated = runpy.run_path(str(REPOSITORY / "scripts" / "publish_model.py"), run_name="publish_model")["uncalibrated_predictions"]
    seen = []

    def clip_predictions(model, processor, dataset, cache_dir, audio_set, num_proc=1):
        seen.append((model.config.quadrant_logit_bias, model.config.note_statistics_fusion))
        if len(seen) == 2:
            raise RuntimeError("interrupted")
        return {"probabilities": np.full((len(dataset), 4), 0.25)}

    monkeypatch.setitem(uncalibrated.__globals__, "clip_predictions", clip_predictions)
    monkeypatch.setitem(uncalibrated.__globals__, "load_emopia", lambda *a, **k: {"validation": Dataset.from_dict({"label": [0, 3]})})
    fusion = MDPianoConfig.from_pretrained(REPOSITORY / "models" / "mdpiano-emopia").note_statistics_fusion
    model = SimpleNamespace(config=MDPianoConfig(quadrant_logit_bias=[0.0, 0.0, 0.0, -0.4], note_statistics_fusion=fusion))
    args = SimpleNamespace(cache_dir="cache", data="data", num_proc=1)
    probabilities, labels = uncalibrated(model, None, args, "validation-unseen", "emopia_cls")
    assert seen == [(None, None)] and probabilities.shape == (2, 4) and labels.tolist() == [0, 3]
    assert model.config.quadrant_logit_bias == [0.0, 0.0, 0.0, -0.4] and model.config.note_statistics_fusion == fusion
    with pytest.raises(RuntimeError, match="interrupted"):
        uncalibrated(model, None, args, "validation-unseen", "emopia_cls")
    assert model.config.quadrant_logit_bias == [0.0, 0.0, 0.0, -0.4] and model.config.note_statistics_fusion == fusion


def test_export_clips_checks_everything_before_caching(run_script, tmp_path):
    archive, cache = tmp_path / "archive", tmp_path / "cache"
    archive.mkdir()
    (archive / "archive.json").write_text(json.dumps({"format_version": 1, "feature_settings": {"n_mels": 1}, "sets": {}}))
    status, error = run_script("export_clips.py", "--cache-dir", cache, "--output-dir", archive, "--sets", "test-clean")
    assert status == 2 and "other feature settings" in error
    # test-clean holds one test clip's audio (the Q1 example), test-unseen no folder, then an empty one.
    (cache / "audio" / "test-clean").mkdir(parents=True)
    example = next((REPOSITORY / "examples").glob("Q1_*.mp3"))
    (cache / "audio" / "test-clean" / example.name).symlink_to(example)
    for expected_status, expected in ((1, "Audio folder not found"), (2, "render it first")):
        status, error = run_script("export_clips.py", "--cache-dir", cache, "--output-dir", tmp_path / "new",
                                   "--sets", "test-clean", "test-unseen")  # fmt: skip
        assert status == expected_status and expected in error and "test-unseen" in error
        (cache / "audio" / "test-unseen").mkdir(exist_ok=True)
    assert sorted(p.name for p in cache.iterdir()) == ["audio"]  # test-clean was not cached
