import csv
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest

from mdpiano.cli import expand_inputs, main


@pytest.fixture(scope="module")
def inputs(quadrant_clips, clip_midi, tmp_path_factory):
    """A folder with three rendered clips, a MIDI file and a text file named .wav."""
    folder = tmp_path_factory.mktemp("inputs")
    for _, path, _ in quadrant_clips[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "score.mid").write_bytes(clip_midi.read_bytes())
    (folder / "broken.wav").write_text("this is not audio")
    return folder


def test_predict_json_with_a_bad_file(model_dir, inputs, capsys):
    code = main(["predict", str(inputs), str(inputs / "missing.wav"), "--model", str(model_dir), "--format", "json", "--quiet"])
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert code == 1
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in results) == sorted(
        [p.name for p in inputs.iterdir() if p.name != "broken.wav"]
    )
    for record in results:
        assert set(record["scores"]) == {"Q1", "Q2", "Q3", "Q4"}
        assert abs(sum(record["scores"].values()) - 1) < 1e-5 and record["prediction"] in record["scores"]
    assert "error: " in captured.err and "broken.wav" in captured.err and "missing.wav: file or folder not found" in captured.err


def test_predict_table_timeline_and_midi_out(model_dir, quadrant_clips, tmp_path, capsys):
    path = str(quadrant_clips[0][1])
    code = main(["predict", path, "--model", str(model_dir), "--timeline", "--stride", "2", "--midi-out", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["file", "prediction"] and path in lines[1]
    assert sum("-" in line and " s " in line for line in lines) == 1  # 6-s clip, 6-s window: one window
    assert lines[-1].startswith("(window rows: each window as the network alone reads it")
    midi = pretty_midi.PrettyMIDI(str(tmp_path / f"{quadrant_clips[0][1].stem}.mid"))
    assert int(lines[1].split()[-1]) == len(midi.instruments[0].notes) > 0


def test_predict_csv(model_dir, quadrant_clips, capsys):
    paths = [str(p) for _, p, _ in quadrant_clips[:2]]
    assert main(["predict", *paths, "--model", str(model_dir), "--format", "csv", "--quiet"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["file"] for r in rows] == paths and all(r["prediction"] in ("Q1", "Q2", "Q3", "Q4") for r in rows)


def test_transcribe(model_dir, quadrant_clips, tmp_path, capsys):
    assert main(["transcribe", str(quadrant_clips[1][1]), "--out", str(tmp_path), "--model", str(model_dir), "--quiet"]) == 0
    assert "notes)" in capsys.readouterr().out
    assert len(pretty_midi.PrettyMIDI(str(tmp_path / f"{quadrant_clips[1][1].stem}.mid")).instruments[0].notes) > 0


def test_console_entry_point(model_dir, quadrant_clips):
    # With CI set, pyfluidsynth prints where it found its library on stdout; the JSON there must still parse.
    result = subprocess.run([sys.executable, "-m", "mdpiano", "predict", str(quadrant_clips[2][1]), "--model", str(model_dir),
                             "--format", "json", "--quiet"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CI": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)[0]["file"] == str(quadrant_clips[2][1])


def test_midi_outputs_never_overwrite_inputs_or_each_other(tmp_path):
    from mdpiano.cli import midi_output_paths

    inputs = [tmp_path / "same" / "x.mid", tmp_path / "same" / "x.wav", tmp_path / "d1" / "y.flac", tmp_path / "d2" / "y.wav",
              tmp_path / "d2" / "z.mp3"]  # fmt: skip
    targets = midi_output_paths(inputs, str(tmp_path / "same"))
    assert [t.name for t in targets.values()] == ["same__x.mid.mid", "same__x.wav.mid", "d1__y.flac.mid", "d2__y.wav.mid", "z.mid"]
    # Alone, a MIDI input would be written over by its own transcription's name: it gets the long name too.
    assert midi_output_paths([tmp_path / "same" / "x.mid"], str(tmp_path / "same"))[tmp_path / "same" / "x.mid"].name == "x.mid.mid"
    # The long name taken by an input, or by another output: a number is added.
    crowded = [tmp_path / "d1" / "x.wav", tmp_path / "d2" / "x.wav", tmp_path / "d1__x.wav.mid", tmp_path / "d1__x.wav.flac"]
    targets = midi_output_paths(crowded, str(tmp_path)).values()
    assert [t.name for t in targets] == ["d1__x.wav-2.mid", "d2__x.wav.mid", "d1__x.wav.mid.mid", "d1__x.wav.flac.mid"]
    assert len(set(targets)) == len(crowded) and not set(targets) & set(crowded)
    # Nor the results file (`predict -o`) given a transcription's name.
    reserved = midi_output_paths([tmp_path / "a.wav"], str(tmp_path / "out"), reserved=(str(tmp_path / "out" / "a.mid"),))
    assert reserved[tmp_path / "a.wav"].name == "a.wav.mid"


def test_midi_out_may_not_be_a_folder_being_classified(model_dir, inputs):
    with pytest.raises(SystemExit, match="is a folder being classified"):
        main(["predict", str(inputs), "--midi-out", str(inputs), "--model", str(model_dir), "--quiet"])


def test_transcribe_skips_midi_in_folders(model_dir, inputs, tmp_path, capsys):
    code = main(["transcribe", str(inputs), "--out", str(tmp_path), "--model", str(model_dir), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and "broken.wav" in captured.err and "score.mid" not in captured.err  # only the text file fails
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.stem + ".mid" for p in inputs.glob("*.wav") if p.name != "broken.wav")


def test_csv_timeline_rows_count_their_own_notes(model_dir, tmp_path, quadrant_clips, capsys):
    import numpy as np
    import soundfile

    long_path = tmp_path / "long.wav"
    soundfile.write(long_path, np.concatenate([w for _, _, w in quadrant_clips[:2]]), 22050)  # 12 s, 6-s windows
    assert main(["predict", str(long_path), "--model", str(model_dir), "--format", "csv", "--timeline", "--quiet"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    whole, windows = rows[0], rows[1:]
    assert len(windows) == 2 and all(0 < int(w["num_notes"]) < int(whole["num_notes"]) for w in windows)


def test_bad_arguments_fail_before_any_work(model_dir, quadrant_clips, tmp_path, capsys):
    path = str(quadrant_clips[0][1])
    (tmp_path / "file.mp3").write_text("")
    refused = {
        "its folder does not exist": ["-o", str(tmp_path / "nowhere" / "out.json")],
        "is a folder; give a file name": ["-o", str(tmp_path)],
        "new/ is a folder": ["-o", f"{tmp_path / 'new'}/"],
        "cannot write /proc/out.json": ["-o", "/proc/out.json"],  # a folder no file can be created in
        "is one of the inputs": ["-o", os.path.join(os.path.dirname(path), ".", os.path.basename(path))],
        "is a file; give a folder": ["--midi-out", str(tmp_path / "file.mp3")],
        "cannot write MIDI files to .*: Not a directory": ["--midi-out", str(tmp_path / "file.mp3" / "sub")],
        "cannot write MIDI files to /proc": ["--midi-out", "/proc"],
    }
    for message, option in refused.items():
        with pytest.raises(SystemExit, match=message):
            main(["predict", path, "--model", str(tmp_path / "no model"), *option])  # refused before the model loads
    with pytest.raises(SystemExit, match="cannot write MIDI files to /proc/x"):
        main(["transcribe", path, "--out", "/proc/x", "--model", str(model_dir)])
    assert not (tmp_path / "new").exists() and os.path.getsize(path) > 0
    for stride, message in [("0", "at least 0.1 s"), ("inf", "at most 86400 s"), ("nan", "got nan"), ("1e308", "at most"),
                            ("abc", "expected a number of seconds, got 'abc'")]:  # fmt: skip
        with pytest.raises(SystemExit) as error:
            main(["predict", path, "--model", str(model_dir), "--stride", stride])
        assert error.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--stride must be a number of seconds above 0 and at most the window length"):
        main(["predict", path, "--model", str(model_dir), "--stride", "600"])


def test_failed_writes_are_reported_and_the_batch_goes_on(model_dir, quadrant_clips, tmp_path, capsys):
    paths = [str(p) for _, p, _ in quadrant_clips[:2]]
    (tmp_path / f"{quadrant_clips[0][1].stem}.mid").mkdir()  # the first transcription's name is taken by a folder
    # /dev/full can be opened but not written to, as a disk that fills up during the run: the results go to the screen.
    code = main(["predict", *paths, "--model", str(model_dir), "--midi-out", str(tmp_path), "-o", "/dev/full", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and [line.split()[0] for line in captured.out.splitlines()[1:]] == paths
    assert f"error: {paths[0]}: cannot write {tmp_path / quadrant_clips[0][1].stem}.mid: Is a directory" in captured.err
    assert "error: cannot write /dev/full: No space left on device" in captured.err
    assert (tmp_path / f"{quadrant_clips[1][1].stem}.mid").is_file()
    (tmp_path / f"{quadrant_clips[1][1].stem}.mid").unlink()
    assert main(["transcribe", *paths, "--out", str(tmp_path), "--model", str(model_dir), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "Is a directory" in captured.err and f"{paths[1]} -> " in captured.out and paths[0] not in captured.out


def test_inputs_are_read_once_without_hidden_files_or_earlier_outputs(model_dir, quadrant_clips, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    clip = quadrant_clips[0][1].read_bytes()
    os.makedirs("rec/.hidden")
    for name in ("rec/a.wav", "rec/.hidden/b.wav", "rec/.c.wav"):
        with open(name, "wb") as file:
            file.write(clip)
    with open("rec/._a.wav", "wb") as file:  # a macOS resource fork: not audio
        file.write(b"\x00\x05\x16\x07" + bytes(100))
    args = ["--model", str(model_dir), "--format", "json", "--quiet"]
    assert main(["predict", "rec", "./rec/a.wav", "rec/.c.wav", "--midi-out", "rec/midi", *args]) == 0
    assert [r["file"] for r in json.loads(capsys.readouterr().out)] == ["rec/a.wav", "rec/.c.wav"]  # hidden, but named
    assert os.path.isfile("rec/midi/a.mid")
    # A second run leaves out the first one's transcriptions; transcribe refuses MIDI files named explicitly.
    assert main(["predict", "rec", "--midi-out", "rec/midi", *args]) == 0
    assert [r["file"] for r in json.loads(capsys.readouterr().out)] == ["rec/a.wav"]
    assert main(["transcribe", "rec", "rec/midi/a.mid", "--out", "rec/midi", "--model", str(model_dir), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count(" -> ") == 1 and "rec/midi/a.mid: is a MIDI file already" in captured.err


def test_missing_inputs_and_models_are_one_line_errors(model_dir, quadrant_clips, tmp_path, capsys):
    missing = [str(tmp_path / "missing.wav"), str(tmp_path / "missing")]
    # With every input missing, nothing is loaded: a model that does not exist is never looked at.
    for command in (["predict", *missing], ["transcribe", *missing, "--out", str(tmp_path / "out")]):
        assert main([*command, "--model", str(tmp_path / "no model")]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("file or folder not found") == 2
    path = str(quadrant_clips[0][1])
    with pytest.raises(SystemExit, match="no model weights"):
        main(["predict", path, "--model", str(tmp_path)])
    with pytest.raises(SystemExit, match="no such folder"):
        main(["transcribe", path, "--out", str(tmp_path / "out"), "--model", str(tmp_path / "no model")])
    with pytest.raises(SystemExit, match="holds no processor settings"):
        main(["transcribe", path, "--out", str(tmp_path / "out"), "--model", str(tmp_path)])


def broken_model_folders(model_dir, root) -> dict:
    """Copies of a model folder, each broken one way: weights cut short, an invalid config value, no processor."""
    import shutil

    folders = {}
    for name in ("corrupt", "invalid", "unprocessed"):
        folders[name] = shutil.copytree(model_dir, root / name)
    weights = folders["corrupt"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    config = json.loads((folders["invalid"] / "config.json").read_text())
    (folders["invalid"] / "config.json").write_text(json.dumps({**config, "domains": "foo"}))
    (folders["unprocessed"] / "processor_config.json").unlink()
    return folders


def test_broken_model_folders_are_one_line_errors(model_dir, quadrant_clips, tmp_path):
    """A folder that cannot be loaded whole is refused with the loader's reason, before any input is read; one
    without its processor is not run with default feature settings."""
    folders = broken_model_folders(model_dir, tmp_path)
    path = str(quadrant_clips[0][1])
    for name, message in (("corrupt", "not a readable safetensors file"), ("invalid", "`domains` must be one of"),
                          ("unprocessed", "holds no processor settings (processor_config.json)")):  # fmt: skip
        with pytest.raises(SystemExit) as stopped:
            main(["predict", path, "--model", str(folders[name])])
        assert str(stopped.value).startswith("error: ") and message in str(stopped.value) and "\n" not in str(stopped.value)


def test_open_progress_bars_end_their_lines_before_a_message():
    import io

    from tqdm import tqdm

    from mdpiano.cli import end_progress_bars

    open_output, half_built_output = io.StringIO(), io.StringIO()
    open_bar = tqdm(total=3, file=open_output, desc="open")
    open_bar.update()
    half_built = tqdm(total=3, file=half_built_output, desc="half-built")
    del half_built.last_print_t  # as if interrupted right after it drew itself, before its construction finished
    end_progress_bars()
    for output, desc in ((open_output, "open"), (half_built_output, "half-built")):
        assert desc in output.getvalue() and output.getvalue().endswith("\n")


def test_ctrl_c_is_one_line_and_status_130(model_dir, quadrant_clips, tmp_path):
    import soundfile

    # five minutes of audio: still being classified, whatever this machine's speed, when the signal comes
    waveform, rate = soundfile.read(quadrant_clips[0][1], dtype="float32")
    long_recording = tmp_path / "long.wav"
    soundfile.write(long_recording, np.tile(waveform, -(-300 * rate // len(waveform))), rate)
    paths = [str(long_recording), *(str(p) for _, p, _ in quadrant_clips)]  # several files: a progress bar
    # SIGINT as a terminal leaves it: a test run started in the background (`cmd &`) ignores it, and so would the child
    restore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen([sys.executable, "-m", "mdpiano", "predict", *paths, "--model", str(model_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=restore_sigint)  # fmt: skip
    err = b""
    while b"Classifying" not in err:  # the progress bar: the model is loaded and the files are being read
        chunk = os.read(process.stderr.fileno(), 1024)
        assert chunk, "the command ended before classifying"
        err += chunk
    process.send_signal(signal.SIGINT)
    out, rest = process.communicate(timeout=120)
    assert process.returncode == 130 and out == b""
    assert (err + rest).decode().splitlines()[-1] == "interrupted" and b"Traceback" not in rest


def test_predict_agrees_with_the_pipeline_and_writes_its_file(model_dir, rendered_clip, tmp_path, capsys):
    """The command line's prediction, scores and windows are the pipeline's (a 20-s clip, 6-s windows every 2 s),
    and `-o` writes what it would print."""
    from transformers import pipeline

    path = str(rendered_clip[0])
    expected = pipeline("audio-classification", model=str(model_dir))(path, stride_length_s=2, return_timeline=True)
    output = tmp_path / "results.json"
    code = main(["predict", path, "--model", str(model_dir), "--stride", "2", "--timeline", "--format", "json",
                 "-o", str(output), "--quiet"])  # fmt: skip
    assert code == 0
    (record,) = json.loads(output.read_text())
    assert record["prediction"] == expected["labels"][0]["label"]
    assert record["scores"] == pytest.approx({r["label"]: r["score"] for r in expected["labels"]}, abs=1e-4)
    assert len(record["timeline"]) == len(expected["timeline"]) > 3


def test_folders_are_searched_for_every_audio_format_ffmpeg_reads(tmp_path):
    names = ["a.wav", "b.FLAC", "c.aac", "d.wma", "e.webm", "f.mp4", "g.oga", "h.mid", "cover.jpg", "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    files, errors = expand_inputs([str(tmp_path)])
    assert [path.name for path in files] == sorted(names[:-2]) and errors == []
