"""Every bad or unusual input, through the processor, the pipeline and the command line: a correct result or a clear
error. README's "Robustness" table lists these cases; keep the two in step."""

import io
import json

import numpy as np
import pretty_midi
import pytest
import soundfile
import torch
from transformers import pipeline

from mdpiano import AudioDecodeError, MDPianoConfig, MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.checkpoints import save_for_package
from mdpiano.cli import main as cli
from mdpiano.windowing import window_starts

from conftest import write_piano_on_several_tracks

SR = 22050


def tone(seconds, rate=SR, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 261.6 * t) * np.exp(-3 * (t % 0.5))  # a repeated middle C
    return np.stack([audio] * channels, axis=1) if channels > 1 else audio


def write(folder, name, audio, rate=SR, subtype="FLOAT"):
    path = folder / name
    soundfile.write(path, audio, rate, subtype=subtype)
    return path


def truncated(folder):
    whole = write(folder, "whole.wav", tone(4.0), subtype="PCM_16")
    path = folder / "truncated.wav"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def empty_midi(folder):
    path = folder / "empty.mid"
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(pretty_midi.Instrument(program=0))
    midi.write(str(path))
    return path


def hours_of_midi(folder):
    """A MIDI file three hours long: a chord at the start and one at the end."""
    path = folder / "hours.mid"
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for start in (0.0, 3 * 3600.0):
        piano.notes += [pretty_midi.Note(velocity=80, pitch=p, start=start, end=start + 1.0) for p in (60, 64, 67)]
    midi.instruments.append(piano)
    midi.write(str(path))
    return path


def seconds_of_notes_hours_of_midi(folder):
    """A few seconds of notes, then a controller change two hours later: rendering runs to that event."""
    path = folder / "late_controller.mid"
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes += [pretty_midi.Note(velocity=80, pitch=60 + k, start=k * 0.5, end=k * 0.5 + 0.4) for k in range(8)]
    piano.control_changes.append(pretty_midi.ControlChange(7, 100, 2 * 3600.0))
    midi.instruments.append(piano)
    midi.write(str(path))
    return path


# name -> (make the input file in a folder, expected: "ok", "no notes" or (error type, message))
FILE_CASES = {
    "empty WAV (0 samples)": (lambda d: write(d, "empty.wav", np.zeros(0)), (ValueError, "empty")),
    "10 ms of audio": (lambda d: write(d, "short.wav", tone(0.01)), (ValueError, "too short")),
    "30 s of silence": (lambda d: write(d, "silence.wav", np.zeros(30 * SR)), "no notes"),
    "music followed by a long silence": (lambda d: write(d, "pause.wav", np.r_[tone(4.0), np.zeros(40 * SR)]), "ok"),
    "NaN samples": (lambda d: write(d, "nan.wav", np.r_[tone(1.0), np.nan]), (ValueError, "NaN or infinite")),
    "Inf samples": (lambda d: write(d, "inf.wav", np.r_[tone(1.0), np.inf]), (ValueError, "NaN or infinite")),
    "int16 PCM": (lambda d: write(d, "int16.wav", tone(2.0), subtype="PCM_16"), "ok"),
    "int32 PCM": (lambda d: write(d, "int32.wav", tone(2.0), subtype="PCM_32"), "ok"),
    "stereo": (lambda d: write(d, "stereo.wav", tone(2.0, channels=2)), "ok"),
    "6 channels": (lambda d: write(d, "six.wav", tone(2.0, channels=6)), "ok"),
    **{f"{rate / 1000:g} kHz": ((lambda r: lambda d: write(d, f"{r}.wav", tone(2.0, r), r))(rate), "ok")
       for rate in (8000, 16000, 44100, 48000, 96000)},  # fmt: skip
    "truncated audio file": (truncated, "ok"),
    "text file named .wav": (lambda d: (d / "text.wav").write_text("not audio") and d / "text.wav", (AudioDecodeError, "Could not decode")),
    "missing path": (lambda d: d / "missing.wav", (FileNotFoundError, "not found")),
    "directory passed as a file": (lambda d: (d / "folder.wav").mkdir() or d / "folder.wav", (IsADirectoryError, "directory")),
    "MIDI file with no notes": (empty_midi, (ValueError, "no notes")),
    "MIDI file with a track per hand and the pedal on its own": (lambda d: write_piano_on_several_tracks(d)[0], "ok"),
    "MIDI file of several hours": (hours_of_midi, (ValueError, "limited to 1 h")),
    "MIDI file of seconds of notes and an event hours later": (seconds_of_notes_hours_of_midi, (ValueError, "limited to 1 h")),
}


# Inputs the processor prepares but the model refuses (the pipeline and the command line raise or report).
MODEL_REFUSES = {"10 ms of audio"}


@pytest.fixture(scope="module")
def classifier(model_dir):
    return pipeline("audio-classification", model=str(model_dir))


@pytest.fixture(scope="module")
def processor(model_dir):
    return MDPianoProcessor.from_pretrained(model_dir)


def check_scores(labels):
    scores = [entry["score"] for entry in labels]
    assert len(scores) == 4 and np.isfinite(scores).all() and abs(sum(scores) - 1) < 1e-5


@pytest.mark.parametrize("case", FILE_CASES)
def test_pipeline(case, classifier, tmp_path):
    make, expected = FILE_CASES[case]
    path = make(tmp_path)
    if isinstance(expected, tuple):
        with pytest.raises(expected[0], match=expected[1]):
            classifier(str(path))
        return
    result = classifier(str(path), return_notes=True)
    check_scores(result["labels"])
    assert (result["num_notes"] == 0) == (expected == "no notes")


@pytest.mark.parametrize("case", FILE_CASES)
def test_processor(case, processor, tmp_path):
    make, expected = FILE_CASES[case]
    path = make(tmp_path)
    is_midi = path.suffix == ".mid"
    if isinstance(expected, tuple) and not is_midi and case not in MODEL_REFUSES:
        with pytest.raises(expected[0], match=expected[1]):
            processor(audio=str(path))
        return
    inputs = processor(midi=str(path)) if is_midi else processor(audio=str(path), return_tensors="pt")
    if is_midi:  # the processor reads the first window: an empty sequence for an empty file; the pipeline refuses both
        empty = [[processor.tokenizer.bos_token_id, processor.tokenizer.eos_token_id]]
        assert (inputs["input_ids"] == empty) == (case == "MIDI file with no notes")
        return
    assert torch.isfinite(inputs["input_features"]).all()
    assert (inputs["input_ids"].shape[1] == 2) == (expected == "no notes" or case in MODEL_REFUSES)


@pytest.mark.parametrize("case", FILE_CASES)
def test_command_line(case, model_dir, tmp_path, capsys):
    make, expected = FILE_CASES[case]
    path = make(tmp_path)
    code = cli(["predict", str(path), "--model", str(model_dir), "--format", "json", "--quiet"])
    captured = capsys.readouterr()
    if isinstance(expected, tuple):
        assert code == 1 and f"error: {path}" in captured.err
        # A folder given on the command line is searched for audio, so it fails as an empty folder.
        assert (expected[1] in captured.err) or (path.is_dir() and "no audio or MIDI files" in captured.err)
        return
    assert code == 0
    (record,) = json.loads(captured.out)
    check_scores([{"score": s} for s in record["scores"].values()])
    assert (record["num_notes"] == 0) == (expected == "no notes")


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        (np.zeros(0, np.float32), SR, "empty"),
        (np.array([0.1, np.nan], np.float32), SR, "NaN or infinite"),
        (tone(1.0).astype(np.float32), None, "sampling rate"),
    ],
)
def test_bad_arrays(classifier, processor, audio, rate, message):
    with pytest.raises(ValueError, match=message):
        classifier(audio, sampling_rate=rate)
    with pytest.raises(ValueError, match=message):
        processor(audio=audio, sampling_rate=rate)


def test_integer_and_multichannel_arrays(classifier):
    int16 = (tone(2.0) * 32767).astype(np.int16)
    check_scores(classifier(int16, sampling_rate=SR))
    check_scores(classifier(np.stack([tone(2.0)] * 6).astype(np.float32), sampling_rate=48000))


def test_encoded_inputs_in_memory(classifier, processor, tmp_path):
    """The rows of README's table for bytes and file objects (the command line reads files only)."""
    cut = truncated(tmp_path).read_bytes()
    for audio in (cut, io.BytesIO(cut)):
        check_scores(classifier(audio))
    assert torch.isfinite(processor(audio=cut, return_tensors="pt")["input_features"]).all()
    midi = write_piano_on_several_tracks(tmp_path)[0].read_bytes()
    for run in (classifier, lambda audio: processor(audio=audio)):
        with pytest.raises(ValueError, match="save it as a .mid file and pass its path"):
            run(midi)


def test_clips_stacked_in_one_array_are_averaged_with_a_warning(classifier, processor, caplog):
    stack = np.stack([tone(2.0), tone(2.0)[::-1], np.zeros(2 * SR)]).astype(np.float32)
    with caplog.at_level("WARNING"):
        check_scores(classifier(stack, sampling_rate=SR))
        processor(audio=stack, sampling_rate=SR)
    assert caplog.text.count("pass them as a list of 1-D arrays") == 2


def test_missing_and_corrupt_checkpoints(model_dir, tmp_path):
    folder = save_for_package(tmp_path / "model", MDPianoForAudioClassification.from_pretrained(model_dir),
                              MDPianoProcessor.from_pretrained(model_dir))  # fmt: skip
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises((OSError, ValueError), match="not a readable safetensors file"):  # pipeline() wraps it
        pipeline("audio-classification", model=str(folder))
    weights.unlink()
    with pytest.raises(OSError, match="model.safetensors"):
        MDPianoForAudioClassification.from_pretrained(folder)
    torch.save({}, folder / "pytorch_model.bin")  # a pickle is never read
    with pytest.raises(OSError, match="model.safetensors"):
        MDPianoForAudioClassification.from_pretrained(folder)


def test_invalid_config_file(model_dir, tmp_path):
    folder = save_for_package(tmp_path / "model", MDPianoConfig(), MDPianoProcessor.from_pretrained(model_dir))
    config = json.loads((folder / "config.json").read_text())
    config["cda_num_heads"] = 7
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="cda_num_heads"):
        MDPianoConfig.from_pretrained(folder)


def test_same_input_same_scores(classifier, model_dir, quadrant_clips):
    path = str(quadrant_clips[0][1])
    first = classifier(path)
    assert classifier(path) == first
    reloaded = pipeline("audio-classification", model=str(model_dir))
    assert reloaded(path) == first


def test_one_hour_recording(classifier, tmp_path):
    """A 1-hour recording streams through in windows; the scores are aggregated."""
    rate = 16000
    minute = tone(60.0, rate)
    path = tmp_path / "hour.flac"
    with soundfile.SoundFile(path, "w", rate, 1, subtype="PCM_16") as file:
        for _ in range(60):
            file.write(minute)
    result = classifier(str(path), return_timeline=True)
    check_scores(result["labels"])
    window = classifier.feature_extractor.chunk_length_s
    assert len(result["timeline"]) == len(window_starts(3600.0, window, window))
    assert result["timeline"][-1]["end"] == pytest.approx(3600.0, abs=0.1)
    assert result["num_notes"] > 1000  # a middle C every half second, all hour long


def test_hub_module_files_make_no_network_calls():
    """The files copied into a Hub folder import no network library and call no download function."""
    import re

    from mdpiano.checkpoints import remote_code_files

    forbidden = re.compile(r"\b(requests|httpx|urllib|http\.client|socket|aiohttp|hf_hub_download|snapshot_download)\b")
    for path in remote_code_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            assert not forbidden.search(code), f"{path.name}:{number}: {line.strip()}"
