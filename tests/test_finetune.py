import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdpiano import MDPianoConfig, MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.configuration_mdpiano import config_values
from mdpiano.emopia import EmopiaFormatError
from mdpiano.labelled_audio import load_labelled_audio, split_validation

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def user_folder(quadrant_clips, tmp_path_factory):
    """A user's labelled audio: sub-folders named by quadrant or emotion word, two clips each."""
    root = tmp_path_factory.mktemp("user_audio")
    for (quadrant, path, _), folder in zip(quadrant_clips, ["Q1", "tense", "sad", "Q4"]):
        (root / folder).mkdir()
        for copy in range(2):
            (root / folder / f"{path.stem}_{copy}.wav").write_bytes(path.read_bytes())
    return root


def test_folder_and_csv(user_folder, tmp_path, caplog):
    dataset = load_labelled_audio(user_folder)
    assert len(dataset) == 8 and dataset.features["label"].names == ["Q1", "Q2", "Q3", "Q4"]
    assert sorted(dataset["label"]) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all("/" not in clip_id for clip_id in dataset["clip_id"])
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(user_folder.rglob("*.wav"))] + ["nowhere.wav,Q2"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        from_csv = load_labelled_audio(tmp_path / "labels.csv")
    assert len(from_csv) == 8 and "1 file left out" in caplog.text and "nowhere.wav (line 10: no such file)" in caplog.text
    (tmp_path / "bad.csv").write_text("path,label\nx.wav,joyful\n")
    (tmp_path / "x.wav").write_bytes((user_folder / "Q1").iterdir().__next__().read_bytes())
    with pytest.raises(EmopiaFormatError, match="unknown label 'joyful'"):
        load_labelled_audio(tmp_path / "bad.csv")


def test_what_a_folder_or_csv_leaves_out_is_named(user_folder, tmp_path, caplog):
    folder = tmp_path / "mine"
    (folder / "Q1").mkdir(parents=True)
    # Hidden files and folders, at any depth, and a Mac zip's __MACOSX folder: skipped without a word.
    for hidden in (folder / ".ipynb_checkpoints", folder / "Q1" / ".ipynb_checkpoints", folder / "__MACOSX" / "Q1"):
        hidden.mkdir(parents=True)
    clip = next((user_folder / "Q1").iterdir())
    for path in [folder / "Q1" / name for name in ("a.wav", "b.WAV", "notes.txt", ".DS_Store")] + [
            folder / "Q1" / ".ipynb_checkpoints" / "a-checkpoint.wav", folder / "__MACOSX" / "Q1" / "._a.wav"]:  # fmt: skip
        path.write_bytes(clip.read_bytes())
    (folder / "loose.wav").write_bytes(clip.read_bytes())
    with caplog.at_level(logging.WARNING):
        dataset = load_labelled_audio(folder)
    assert sorted(dataset["clip_id"]) == ["Q1__a", "Q1__b"]
    assert "2 files left out" in caplog.text and "loose.wav (not in a label folder)" in caplog.text
    assert "notes.txt (not an audio file" in caplog.text and "DS_Store" not in caplog.text and "checkpoint" not in caplog.text
    assert "MACOSX" not in caplog.text
    # Two files giving one clip id are both named.
    (folder / "Q1" / "a.flac").write_bytes(clip.read_bytes())
    with pytest.raises(ValueError, match=r"clip ids must be unique, but Q1__a is the id of Q1/a\.flac and Q1/a\.wav: rename"):
        load_labelled_audio(folder)
    (folder / "Q1" / "a.flac").unlink()
    # A spreadsheet's CSV: byte-order mark, spaces around the header names.
    (folder / "labels.csv").write_text("\ufeffpath , label\nQ1/a.wav,happy\nQ1/b.WAV,Q1\nQ1/a.wav,Q1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"Q1__a is the id of line 2 \(Q1/a\.wav\) and line 4 \(Q1/a\.wav\): remove repeated"):
        load_labelled_audio(folder / "labels.csv")
    (folder / "labels.csv").write_text("\ufeffpath , label\nQ1/a.wav,happy\nQ1/b.WAV,Q1\n", encoding="utf-8")
    assert load_labelled_audio(folder / "labels.csv")["label"] == [0, 0]
    # Capitalised header names, quoted values after ", ", and a row that is not audio (left out and named).
    (folder / "Q1" / "c d.wav").write_bytes(clip.read_bytes())
    (folder / "piece.mid").write_bytes(b"MThd")
    (folder / "labels.csv").write_text('Path, Label\n"Q1/c d.wav", "tense"\npiece.mid, Q1\n')
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dataset = load_labelled_audio(folder / "labels.csv")
    assert dataset["clip_id"] == ["Q1__c d"] and dataset["label"] == [1]
    assert "piece.mid (line 3: not an audio file" in caplog.text
    # A label folder may link to audio kept elsewhere, at any depth; a link back up does not loop.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked.wav").write_bytes(clip.read_bytes())
    (folder / "Q1" / "sub").mkdir()
    (folder / "Q1" / "sub" / "more").symlink_to(elsewhere, target_is_directory=True)
    (folder / "Q1" / "sub" / "up").symlink_to(folder / "Q1", target_is_directory=True)
    assert "Q1__sub__more__linked" in load_labelled_audio(folder)["clip_id"]


def test_split_validation(user_folder):
    dataset = load_labelled_audio(user_folder)  # 8 clips, 2 per quadrant
    train, validation = split_validation(dataset, 0.5, seed=0)
    assert sorted(train["label"]) == sorted(validation["label"]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="gives 1 validation and 7 training clips.*between 0.50 and 0.50"):
        split_validation(dataset, 0.1, seed=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_validation(dataset, 0, seed=0)
    with pytest.raises(ValueError, match="at least 2 clips of each quadrant"):
        split_validation(dataset.select(range(7)), 0.5, seed=0)


def write_clips(root: Path, counts: dict[str, int], seconds: float = 0.1) -> Path:
    """A labelled folder of sine-tone WAV files of `seconds` each: `counts` clips in each named sub-folder (none: left
    empty; one that exists gets more)."""
    import numpy as np
    import soundfile

    for folder, count in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        first = len(list((root / folder).glob("clip*.wav")))
        for index in range(first, first + count):
            tone = 0.1 * np.sin(2 * np.pi * (220 + 20 * index) * np.arange(round(seconds * 22050)) / 22050)
            soundfile.write(root / folder / f"clip{index}.wav", tone.astype(np.float32), 22050)
    return root


def test_split_validation_holds_every_quadrant_on_both_sides(tmp_path):
    # Rounding each quadrant's share on its own gave 14 clips at 0.3 a validation side without Q4.
    dataset = load_labelled_audio(write_clips(tmp_path / "mine", {"Q1": 5, "Q2": 5, "Q3": 2, "Q4": 2}))
    train, validation = split_validation(dataset, 0.3, seed=0)
    assert sorted(validation["label"]) == [0, 0, 1, 2, 3] and sorted(set(train["label"])) == [0, 1, 2, 3]
    assert sorted(list(train["clip_id"]) + list(validation["clip_id"])) == sorted(dataset["clip_id"])
    again, _ = split_validation(dataset, 0.3, seed=0)
    assert list(again["clip_id"]) == list(train["clip_id"])  # the same seed, the same split
    assert len({tuple(split_validation(dataset, 0.3, seed=seed)[1]["clip_id"]) for seed in range(5)}) > 1
    # Every fraction the checks let through, on uneven quadrants: each side holds every quadrant.
    uneven = dataset.select([i for i, label in enumerate(dataset["label"]) if label != 1])  # Q1 5, Q3 2, Q4 2
    for fraction in (0.34, 0.45, 0.5, 0.6, 0.66):  # the range the refusal names
        for seed in range(3):
            train, validation = split_validation(uneven, fraction, seed)
            assert sorted(set(train["label"])) == sorted(set(validation["label"])) == [0, 2, 3], (fraction, seed)
            assert len(validation) == math.ceil(fraction * 9)


def test_a_quadrant_without_clips_is_named(tmp_path, caplog):
    folder = write_clips(tmp_path / "mine", {"Q1": 2, "Q2": 2, "Q3": 2, "Q4": 0})
    with caplog.at_level(logging.WARNING):
        load_labelled_audio(folder)
    assert "has no clips of Q4 (clips per quadrant: Q1 2, Q2 2, Q3 2, Q4 0)" in caplog.text
    (tmp_path / "labels.csv").write_text("path,label\nmine/Q1/clip0.wav,Q1\nmine/Q3/clip0.wav,sad\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_labelled_audio(tmp_path / "labels.csv")
    assert "has no clips of Q2 or Q4 (clips per quadrant: Q1 1, Q2 0, Q3 1, Q4 0)" in caplog.text


def test_labelled_audio_must_be_a_folder_or_a_csv(tmp_path, run_script):
    folder = write_clips(tmp_path / "mine", {"Q1": 1})
    clip = folder / "Q1" / "clip0.wav"
    (tmp_path / "latin1.csv").write_bytes("path,label\nQ1/caf\xe9.wav,Q1\n".encode("latin-1"))
    for source, message in ((clip, "clip0.wav is an audio file: give a folder"),
                            (tmp_path / "latin1.csv", "latin1.csv is not a UTF-8 CSV file")):  # fmt: skip
        with pytest.raises(EmopiaFormatError, match=message):
            load_labelled_audio(source)
    status, error = run_script("train.py", "--train-data", clip, "--cache-dir", tmp_path / "cache", "--output-dir",
                               tmp_path / "run")  # fmt: skip
    assert status == 1 and "clip0.wav is an audio file: give a folder with sub-folders Q1" in error, error[-2000:]


def test_fine_tune_from_a_hub_folder(user_folder, tiny_config, tmp_path, run_script):
    import copy

    torch.manual_seed(0)
    hub = tmp_path / "hub"
    model = MDPianoForAudioClassification(copy.deepcopy(tiny_config))  # its config is changed below: not the fixture's
    # Offsets and a fusion fitted to the Hub model's decisions, which the fine-tuned model must not inherit.
    shipped = MDPianoConfig.from_pretrained(REPOSITORY / "models" / "mdpiano-emopia")
    model.config.quadrant_logit_bias = [0.0, 0.0, 0.0, -0.4]
    model.config.note_statistics_fusion = shipped.note_statistics_fusion
    model.save_pretrained(hub)
    MDPianoProcessor.from_config(tiny_config).save_pretrained(hub)
    output = tmp_path / "finetuned"

    def train_command(output_dir, validation_fraction="0.5"):
        return [sys.executable, str(REPOSITORY / "scripts" / "train.py"), "--init-from", str(hub), "--train-data",
                str(user_folder), "--validation-fraction", validation_fraction, "--cache-dir", str(tmp_path / "cache"),
                "--output-dir", str(output_dir), "--epochs", "2", "--batch-size", "4", "--num-proc", "1"]  # fmt: skip

    command = train_command(output)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 training clips" in result.stdout
    assert "dropping" in result.stdout and "quadrant_logit_bias: calibrate anew" in result.stdout
    assert "note_statistics_fusion: refit it" in result.stdout and "midi_note_statistics_fusion" not in result.stdout
    log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2
    split = json.loads((output / "clips.json").read_text())
    assert len(split["train"]) == len(split["validation"]) == 4 and not set(split["train"]) & set(split["validation"])
    tuned = MDPianoForAudioClassification.from_pretrained(output / "best")
    assert tuned.config.d_model == tiny_config.d_model
    assert tuned.config.quadrant_logit_bias is None and tuned.config.note_statistics_fusion is None
    # Parameters, not buffers: batch norm's running statistics move with every forward pass in training mode.
    initial = dict(model.named_parameters())
    changed = [name for name, p in tuned.named_parameters() if not torch.equal(p, initial[name])]
    assert changed  # the optimiser moved the weights from the Hub folder's
    # Calibrated and evaluated on labelled audio listed in a CSV; a row without its file is reported.
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(user_folder.rglob("*.wav"))] + ["nowhere.wav,Q2"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    files_before, config_before = sorted(p.name for p in (output / "best").iterdir()), json.loads((output / "best" / "config.json").read_text())
    evaluated = subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "evaluate.py"), "--model", str(output / "best"),
                                "--labelled-data", str(tmp_path / "labels.csv"), "--cache-dir", str(tmp_path / "cache"), "--num-proc", "1",
                                "--output-dir", str(tmp_path / "evaluation"), "--fit-calibration"],
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((tmp_path / "evaluation" / "results.json").read_text())
    assert report["clips_evaluated"] == 8 and len(report["clips"]) == 8 and (tmp_path / "evaluation" / "confusion_matrix.png").is_file()
    assert report["clips_skipped"] == [f"{tmp_path / 'nowhere.wav'} (line 10: no such file)"]
    assert "labelled_data" in report["arguments"] and not {"audio_set", "split", "data"} & set(report["arguments"])  # unread
    bias = MDPianoForAudioClassification.from_pretrained(output / "best").config.quadrant_logit_bias
    assert len(bias) == 4 and bias[0] == 0 and f"quadrant_logit_bias {bias} saved" in evaluated.stdout
    # Only the offsets are written (save_pretrained rewrote auto_map and dropped the custom pipeline of a Hub-ready folder).
    config_after = json.loads((output / "best" / "config.json").read_text())
    config_before.pop("quadrant_logit_bias", None)
    assert config_after.pop("quadrant_logit_bias") == bias and config_after == config_before
    assert sorted(p.name for p in (output / "best").iterdir()) == files_before
    # A second run into the same folder must say --resume; a split that cannot hold every quadrant says what to change.
    # Resuming with other run settings, or from a model folder that is not there, is refused before any work.
    resumed_otherwise = [*train_command(output), "--resume", "--seed", "1"]
    missing_model = [*train_command(tmp_path / "third"), "--init-from", str(tmp_path / "no-such-model")]
    for again_command, message in ((train_command(output), "holds an earlier run"),
                                   (train_command(tmp_path / "other", "0.1"), "use a fraction between"),
                                   (resumed_otherwise, "--seed 0 then, 1 now"),
                                   (missing_model, "no-such-model: no such folder")):  # fmt: skip
        status, error = run_script("train.py", *again_command[2:])
        assert status == 1 and message in error, error[-2000:]
    status, error = run_script("evaluate.py", "--model", str(output), "--labelled-data", str(user_folder),
                               "--cache-dir", str(tmp_path / "cache"))  # the run's folder instead of its best model
    assert status == 1 and error.startswith(f"error: --model {output}: "), error[-2000:]
    # The training state is no model folder either (it was read with a default config: an error about sizes).
    status, error = run_script("evaluate.py", "--model", str(output / "checkpoint"), "--labelled-data", str(user_folder),
                               "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert status == 1 and "holds no config.json, so it is not a model folder (a run's training state" in error, error[-2000:]
    status, error = run_script("train.py", *[*train_command(tmp_path / "fourth"), "--init-from", str(output / "checkpoint")][2:])
    assert status == 1 and "holds no config.json" in error, error[-2000:]
    # Validating on training files would pick the epoch by memory.
    status, error = run_script("train.py", "--init-from", str(hub), "--train-data", str(user_folder), "--validation-data",
                               str(tmp_path / "labels.csv"), "--cache-dir", str(tmp_path / "cache"), "--output-dir",
                               str(tmp_path / "fifth"))  # fmt: skip
    assert status == 1 and "8 of the 8 validation files in" in error and "are also training files" in error, error[-2000:]
    assert not (tmp_path / "fourth").exists() and not (tmp_path / "fifth").exists()


def test_validation_files_are_compared_with_training_files_by_what_they_name(user_folder, tmp_path):
    from mdpiano.labelled_audio import check_disjoint

    train = load_labelled_audio(user_folder)
    files = sorted(user_folder.rglob("*.wav"))
    roundabout = ["path,label"] + [f"{p.parent}/../{p.parent.name}/{p.name},{p.parent.name}" for p in files[:3]]
    (tmp_path / "validation.csv").write_text("\n".join(roundabout) + "\n")
    with pytest.raises(ValueError, match="3 of the 3 validation files"):
        check_disjoint(train, load_labelled_audio(tmp_path / "validation.csv"), user_folder, tmp_path / "validation.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.wav").write_bytes(files[0].read_bytes())  # the same audio in another file is another recording
    (tmp_path / "other.csv").write_text(f"path,label\n{elsewhere / 'x.wav'},Q1\n")
    check_disjoint(train, load_labelled_audio(tmp_path / "other.csv"), user_folder, tmp_path / "other.csv")


def load_train_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", REPOSITORY / "scripts" / "train.py")
    train_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_script)
    return train_script


def test_train_arguments_are_checked_before_any_work(user_folder, tmp_path, run_script, monkeypatch):
    """Settings that would crash after the caching, or be ignored without a word, are refused first, by name."""
    (tmp_path / "broken.json").write_text('{"d_model": 64,}')
    base = ["--cache-dir", tmp_path / "cache", "--output-dir", tmp_path / "run"]
    user = ["--train-data", user_folder, "--validation-fraction", "0.5"]
    for arguments, message in (
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--patience", "0"], "--patience must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--learning-rate", "-1"], "--learning-rate must be above 0, got -1"),
        (["--validation-data", user_folder], "--validation-data goes with --train-data"),
        ([*user, "--validation-set", "validation-unseen"], "--validation-set name EMOPIA audio sets: not with --train-data"),
        (["--set", "d_modle=64"], "MDPianoConfig has no d_modle: check the spelling"),
        (["--set", "d_model"], "The setting 'd_model' is not KEY=VALUE"),
        (["--set", "d_model=abc"], "`d_model` must be a positive integer, got 'abc'"),
        (["--config", tmp_path / "broken.json"], "broken.json is not valid JSON"),
        (["--band-limit-probability", "0.3"], "acts on the chains of --augment-features: give both"),
        (["--augment-features", "--band-limit-probability", "1.5"], "is a chance, from 0 to 1; got 1.5"),
    ):
        status, error = run_script("train.py", *base, *arguments)
        assert status == 2 and message in error, (arguments, error[-2000:])
    from mdpiano.training import accelerator_available

    if not accelerator_available():  # fp16 on a CPU ended in a traceback after the caching
        status, error = run_script("train.py", *base, "--mixed-precision", "fp16")
        assert status == 2 and "fp16 mixed precision needs a GPU" in error, error[-2000:]
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")  # as `accelerate launch --mixed_precision fp16` sets it
        status, error = run_script("train.py", *base)
        assert status == 2 and "fp16 mixed precision needs a GPU" in error, error[-2000:]
        monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()
    # Fine-tuning keeps the model's layer sizes: a config that changes them is named before any caching.
    status, error = run_script("train.py", *base, *user, "--init-from", REPOSITORY / "models" / "mdpiano-emopia",
                               "--set", "d_model=64")  # fmt: skip
    assert status == 1 and "the --config or --set values change its layer sizes" in error, error[-2000:]
    # ... and its processor: other features or windows would be ignored while its config said otherwise.
    status, error = run_script("train.py", *base, *user, "--init-from", REPOSITORY / "models" / "mdpiano-emopia",
                               "--set", "hop_length=512", "--set", "chunk_length_s=5")  # fmt: skip
    assert status == 1 and "hop_length, chunk_length_s cannot be changed by --config or --set" in error, error[-2000:]
    status, error = run_script("train.py", *base, *user, "--init-from", REPOSITORY / "models" / "mdpiano-emopia",
                               "--set", "hop_length=1024", "--set", "chunk_length_s=5")  # the model's own hop changes nothing
    assert status == 1 and ": chunk_length_s cannot be changed by --config or --set" in error, error[-2000:]
    assert not (tmp_path / "cache").exists()


def test_seed_decides_the_new_model_weights(tiny_config, tmp_path):
    train_script = load_train_script()
    (tmp_path / "tiny.json").write_text(json.dumps(tiny_config.to_diff_dict()))

    def weights(seed):
        arguments = ["--cache-dir", str(tmp_path), "--output-dir", str(tmp_path / "run"), "--config", str(tmp_path / "tiny.json"), "--seed", seed]
        args = train_script.build_parser().parse_args(arguments)
        model, _ = train_script.build_model_and_processor(args, config_values(args.config, args.set))
        return model.state_dict()

    first, again, other = weights("3"), weights("3"), weights("4")
    assert all(torch.equal(tensor, again[name]) for name, tensor in first.items())
    assert not all(torch.equal(tensor, other[name]) for name, tensor in first.items())


def test_symbolic_pretrained_takes_only_a_pretrained_encoder(tiny_config, tmp_path, user_folder, run_script):
    """--symbolic-pretrained starts the symbolic encoder from masked-token pretraining and nothing else: a
    classifier's folder (which would hand over its acoustic branch and heads too) is refused."""
    from mdpiano import MDPianoSymbolicForMaskedLM

    torch.manual_seed(0)
    pretrained = MDPianoSymbolicForMaskedLM(tiny_config)
    pretrained.save_pretrained(tmp_path / "mlm")
    train_script = load_train_script()
    model = train_script.with_pretrained_symbolic_encoder(str(tmp_path / "mlm"), tiny_config)
    for name, tensor in pretrained.state_dict().items():
        if name.startswith("mdpiano.symbolic_encoder."):
            assert torch.equal(model.state_dict()[name], tensor)
    MDPianoForAudioClassification(tiny_config).save_pretrained(tmp_path / "classifier")
    status, error = run_script("train.py", "--symbolic-pretrained", str(tmp_path / "classifier"), "--train-data",
                               str(user_folder), "--validation-fraction", "0.5", "--cache-dir", str(tmp_path / "cache"),
                               "--output-dir", str(tmp_path / "run"))  # fmt: skip
    assert status == 1 and "not an MDPianoSymbolicForMaskedLM" in error and "use --init-from" in error, error[-2000:]


def test_evaluation_names_a_clip_too_short_for_the_model(quadrant_clips, model_dir, tmp_path, run_script):
    import numpy as np
    import soundfile

    folder = tmp_path / "audio"
    (folder / "Q1").mkdir(parents=True)
    (folder / "Q2").mkdir()
    (folder / "Q1" / "music.wav").write_bytes(quadrant_clips[0][1].read_bytes())
    soundfile.write(folder / "Q2" / "blip.wav", np.sin(np.linspace(0, 200, 2205)).astype(np.float32), 22050)  # 0.1 s
    for mode, message in (("cached", "shorter than the model's shortest input"), ("pipeline", "too short to analyse")):
        status, error = run_script("evaluate.py", "--model", model_dir, "--labelled-data", folder, "--mode", mode,
                                   "--cache-dir", tmp_path / "cache", "--num-proc", "1")  # fmt: skip
        last = error.strip().splitlines()[-1]
        assert status == 1 and last.startswith("error: ") and "blip" in last and message in last, error[-2000:]
        assert "Traceback" not in error


def test_csv_cells_unread_columns_and_broken_links_are_named(tmp_path, caplog):
    """A link to a missing file, a CSV's columns that are not read (a split column would train on its test rows),
    and empty path or label cells were skipped without a word or named misleadingly."""
    folder = write_clips(tmp_path / "mine", {"Q1": 2})
    (folder / "Q1" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    with caplog.at_level(logging.WARNING):
        assert load_labelled_audio(folder)["clip_id"] == ["Q1__clip0", "Q1__clip1"]
    assert f"{folder / 'Q1' / 'gone.wav'} (no such file: a link to {tmp_path / 'nowhere.wav'}" in caplog.text
    (tmp_path / "split.csv").write_text("path,label,split,composer\nmine/Q1/clip0.wav,Q1,train,X\n"
                                        "mine/Q1/clip1.wav,Q1,test,Y\n,Q2,train,Z\nmine/Q1,Q1,train,Z\n")  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(load_labelled_audio(tmp_path / "split.csv")) == 2
    assert "the columns split, composer are ignored" in caplog.text and "a split column splits nothing" in caplog.text
    assert f"{tmp_path / 'split.csv'} (line 4: the path cell is empty)" in caplog.text
    assert f"{tmp_path / 'mine' / 'Q1'} (line 5: a folder, not a file)" in caplog.text
    for rows in ("mine/Q1/clip0.wav,\n", "mine/Q1/clip0.wav\n"):  # a blank label, and a row short of it
        (tmp_path / "unlabelled.csv").write_text(f"path,label\n{rows}")
        with pytest.raises(EmopiaFormatError, match="unlabelled.csv, line 2: the label cell is empty"):
            load_labelled_audio(tmp_path / "unlabelled.csv")


def test_fine_tuning_settings_apply_to_the_model_without_its_fusions(tiny_config, tmp_path, capsys):
    """--set domains=acoustic from a model with a note-statistics fusion failed in the config's checks (a traceback),
    though the fusion is dropped anyway: it is now judged as from a model without one."""
    import copy

    shipped = MDPianoConfig.from_pretrained(REPOSITORY / "models" / "mdpiano-emopia")
    train_script = load_train_script()

    def start_from(folder, fusion, settings):
        model = MDPianoForAudioClassification(copy.deepcopy(tiny_config))
        model.config.note_statistics_fusion = fusion
        model.save_pretrained(folder)
        MDPianoProcessor.from_config(tiny_config).save_pretrained(folder)
        args = train_script.build_parser().parse_args(["--init-from", str(folder), "--cache-dir", str(tmp_path),
                                                       "--output-dir", str(tmp_path / "run")])  # fmt: skip
        return train_script.build_model_and_processor(args, config_values(None, settings))[0]

    for fusion in (None, shipped.note_statistics_fusion):  # an acoustic-only model has a smaller classifier
        with pytest.raises(SystemExit, match="the --config or --set values change its layer sizes"):
            start_from(tmp_path / "hub", fusion, ["domains=acoustic"])
    tuned = start_from(tmp_path / "hub", shipped.note_statistics_fusion, ["dropout=0.2"])
    assert tuned.config.dropout == 0.2 and tuned.config.note_statistics_fusion is None
    assert "note_statistics_fusion: refit it" in capsys.readouterr().out
    # A value that does not fit the model's others (its d_model of 64): one error line.
    with pytest.raises(SystemExit, match=r"--init-from .*hub: `d_model` \(64\) must be divisible by `cda_num_heads` \(128\)"):
        start_from(tmp_path / "hub", None, ["cda_num_heads=128"])


@pytest.fixture
def tiny_config_file(tiny_config, tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_config.to_diff_dict()))
    return path


QUADRANT_FOLDERS = ("Q1", "Q2", "Q3", "Q4")


def test_resuming_keeps_the_recorded_split(tiny_config_file, tmp_path, run_script, monkeypatch, caplog):
    """Clips added to --train-data before a resume were drawn into a new split, so clips trained on became validation
    clips; the resumed run keeps the split it recorded before training, naming the clips it leaves out."""
    import mdpiano.training

    data = write_clips(tmp_path / "mine", dict.fromkeys(QUADRANT_FOLDERS, 3), seconds=1.0)
    output = tmp_path / "run"
    command = ["--train-data", data, "--validation-fraction", "0.5", "--config", tiny_config_file, "--cache-dir",
               tmp_path / "cache", "--output-dir", output, "--epochs", "1", "--batch-size", "4", "--num-proc", "1"]  # fmt: skip

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # a run cut short in its first epoch
        patch.setattr(mdpiano.training, "train", interrupted)
        status, error = run_script("train.py", *command)
    assert status == 130, error[-2000:]
    split = json.loads((output / "clips.json").read_text())
    assert len(split["train"]) == len(split["validation"]) == 6
    write_clips(data, dict.fromkeys(QUADRANT_FOLDERS, 1), seconds=1.0)  # clip3 in each
    # The recorded split makes the fraction that drew it moot, and a run on --train-data reads no EMOPIA folder:
    # neither blocks the resume.
    other_fraction = [*command[:3], "0.2", *command[4:], "--data", tmp_path / "moved"]
    with caplog.at_level(logging.WARNING):
        status, error = run_script("train.py", *other_fraction, "--resume")
    assert status == 0, error[-2000:]
    assert "6 training clips" in run_script.stdout and json.loads((output / "clips.json").read_text()) == split
    assert "4 clip(s) are not in the split recorded in" in caplog.text
    assert "left out: Q1__clip3, Q2__clip3, Q3__clip3, Q4__clip3" in caplog.text
    (data / "Q2" / "clip0.wav").unlink()
    status, error = run_script("train.py", *command, "--resume")
    assert status == 1 and "1 clip(s) of the split recorded in" in error and "no longer in the data: Q2__clip0." in error, error[-2000:]


def test_unusable_and_too_short_files_are_all_named_before_training(tiny_config_file, tmp_path, run_script):
    """A damaged file in the validation share was found only once the training share's were fixed (and counted
    among those); a clip too short for the model ended in a traceback naming its id, with arguments.json written."""
    data = write_clips(tmp_path / "mine", dict.fromkeys(QUADRANT_FOLDERS, 3), seconds=1.0)
    held_out = write_clips(tmp_path / "held-out", dict.fromkeys(QUADRANT_FOLDERS, 1), seconds=1.0)
    for damaged in (data / "Q1" / "junk.wav", data / "Q3" / "junk.wav", held_out / "Q2" / "junk.wav"):
        damaged.write_bytes(b"not audio at all")
    base = ["--config", tiny_config_file, "--cache-dir", tmp_path / "cache", "--output-dir", tmp_path / "run", "--num-proc", "1"]
    for validation, counts in ((["--validation-fraction", "0.5"], [f"2 of 14 audio files in {data}"]),
                               (["--validation-data", held_out], [f"2 of 14 audio files in {data}", f"1 of 5 audio files in {held_out}"])):  # fmt: skip
        status, error = run_script("train.py", "--train-data", data, *validation, *base)
        assert status == 1 and all(count in error for count in counts) and "Traceback" not in error, error[-2000:]
        assert error.count("error: ") == 1 and f"error: {counts[0]}" in error
        assert str(data / "Q1" / "junk.wav") in error and str(data / "Q3" / "junk.wav") in error
    for damaged in (data / "Q1" / "junk.wav", data / "Q3" / "junk.wav"):
        damaged.unlink()
    write_clips(data, {"Q2": 1})  # 0.1 s: Q2/clip3.wav
    status, error = run_script("train.py", "--train-data", data, "--validation-fraction", "0.5", *base)
    last = error.strip().splitlines()[-1]
    assert status == 1 and last.startswith("error: 1 clip(s) are shorter than the model's shortest input"), error[-2000:]
    assert f"{data / 'Q2' / 'clip3.wav'} (0.100 s)" in last and "Traceback" not in error
    assert not (tmp_path / "run").exists()
