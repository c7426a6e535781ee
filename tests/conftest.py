"""Shared fixtures: real EMOPIA MIDI from ../shared/data, rendered to audio with FluidSynth."""

import os
from pathlib import Path

import pytest
import soundfile

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MDPIANO_DATA", REPO_ROOT.parent / "shared" / "data"))
SAMPLING_RATE = 22050
CLIP_SECONDS = 20.0
# A clip of the EMOPIA test split (emopia_cls), labelled Q3.
TEST_CLIP = "Q3_ii1Jw1-7Ka4_1"


@pytest.fixture(scope="session")
def emopia_dir() -> Path:
    path = DATA_DIR / "emopia"
    if not (path / "midis").is_dir():
        pytest.fail(f"EMOPIA MIDI not found at {path}: set MDPIANO_DATA to the folder holding emopia/.")
    return path


@pytest.fixture(scope="session")
def emopia_midis(emopia_dir) -> list[Path]:
    return sorted((emopia_dir / "midis").glob("*.mid"))


@pytest.fixture(scope="session")
def clip_midi(emopia_dir) -> Path:
    return emopia_dir / "midis" / f"{TEST_CLIP}.mid"


@pytest.fixture(scope="session")
def rendered_clip(clip_midi, tmp_path_factory):
    """The first 20 s of an EMOPIA test clip rendered with FluidR3_GM: (wav path, waveform at 22050 Hz)."""
    from mdpiano.rendering_mdpiano import render_midi

    waveform = render_midi(clip_midi, "FluidR3_GM", SAMPLING_RATE, max_duration_s=CLIP_SECONDS)
    path = tmp_path_factory.mktemp("audio") / f"{TEST_CLIP}.wav"
    soundfile.write(path, waveform, SAMPLING_RATE, subtype="FLOAT")
    return path, waveform


@pytest.fixture(scope="session")
def clip_notes(clip_midi):
    """Ground-truth notes of the rendered part of the clip."""
    from mdpiano import read_midi_notes

    return [n for n in read_midi_notes(clip_midi) if n.onset < CLIP_SECONDS]


def write_piano_on_several_tracks(folder: Path) -> tuple[Path, Path]:
    """
    One performance written twice with mido at 120 bpm (960 ticks a second): as a notation program writes a piano,
    a track per hand on channel 0 with the sustain pedal on a track of its own (type 1), and as a single track
    (type 0). Both also play a note on channel 1, whose notes channel 0's pedal must not hold.
    Returns (type-1 path, type-0 path).
    """
    import mido

    def event(seconds, kind, **fields):  # (tick, message)
        return round(seconds * 960), mido.Message(kind, **fields)

    def note(channel, pitch, onset, offset):
        return [event(onset, "note_on", channel=channel, note=pitch, velocity=80),
                event(offset, "note_off", channel=channel, note=pitch)]  # fmt: skip

    def pedal(seconds, value):
        return event(seconds, "control_change", channel=0, control=64, value=value)

    tracks = [
        [(0, mido.MetaMessage("set_tempo", tempo=500_000))],
        note(0, 72, 0.0, 0.5) + note(0, 76, 2.5, 2.8),  # right hand
        note(0, 48, 0.0, 0.4) + note(0, 43, 1.0, 1.2),  # left hand
        [pedal(0.3, 127), pedal(2.0, 0)],  # the pedal
        note(1, 60, 0.5, 0.8),  # another instrument on channel 1
    ]

    def as_track(events):
        track, now = mido.MidiTrack(), 0
        for tick, message in sorted(events, key=lambda timed: timed[0]):
            track.append(message.copy(time=tick - now))
            now = tick
        return track

    paths = folder / "type1.mid", folder / "type0.mid"
    mido.MidiFile(type=1, ticks_per_beat=480, tracks=[as_track(events) for events in tracks]).save(paths[0])
    mido.MidiFile(type=0, ticks_per_beat=480, tracks=[as_track(sum(tracks, []))]).save(paths[1])
    return paths


@pytest.fixture(scope="session")
def piano_on_several_tracks(tmp_path_factory):
    return write_piano_on_several_tracks(tmp_path_factory.mktemp("tracks"))


@pytest.fixture(scope="session")
def quadrant_clips(emopia_dir, tmp_path_factory):
    """The first 6 s of the first test-split clip of each quadrant, rendered: [(label, wav path, waveform)]."""
    import csv

    from mdpiano.rendering_mdpiano import render_midi

    with open(emopia_dir / "split" / "emopia_cls" / "test.csv") as file:
        rows = list(csv.DictReader(file))
    folder = tmp_path_factory.mktemp("quadrants")
    clips = []
    for quadrant in ("Q1", "Q2", "Q3", "Q4"):
        name = next(row["fname"] for row in rows if row["label"] == quadrant)
        waveform = render_midi(emopia_dir / "midis" / f"{name}.mid", "FluidR3_GM", SAMPLING_RATE, max_duration_s=6.0)
        path = folder / f"{name}.wav"
        soundfile.write(path, waveform, SAMPLING_RATE, subtype="FLOAT")
        clips.append((quadrant, path, waveform))
    return clips


@pytest.fixture(scope="session")
def tiny_config():
    """A small mdpiano configuration (same architecture, fewer channels and layers) for fast tests."""
    from mdpiano import MDPianoConfig

    return MDPianoConfig(
        chunk_length_s=6.0, n_mels=32, conv_channels=(8, 16, 32), d_model=64, num_encoder_layers=2,
        num_attention_heads=4, intermediate_size=128, cda_num_heads=4, max_symbolic_length=512,
    )  # fmt: skip


@pytest.fixture(scope="session")
def model_dir(tiny_config, tmp_path_factory):
    """A folder (for use with the package installed) holding an untrained model of `tiny_config` and its processor."""
    import torch

    from mdpiano import MDPianoForAudioClassification, MDPianoProcessor
    from mdpiano.checkpoints import save_for_package

    torch.manual_seed(0)
    model = MDPianoForAudioClassification(tiny_config).eval()
    return save_for_package(tmp_path_factory.mktemp("model"), model, MDPianoProcessor.from_config(tiny_config))


@pytest.fixture(scope="module")
def serve_app():
    """
    Starts a Gradio app on a free loopback port: `serve_app(command, cwd, log_path, **env)` waits until it listens
    and returns its URL (fails with the app's output if it exits or does not listen within 180 s). Stopped at the
    end of the module.
    """
    import socket
    import subprocess
    import time

    processes = []

    def serve(command: list[str], cwd: Path, log_path: Path, **env: str) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
                   GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **env)  # fmt: skip
        log = open(log_path, "w+")
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}/"
            except OSError:
                if process.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"{' '.join(command)} exited: {log.read()[-3000:]}")
                time.sleep(1)
        pytest.fail(f"{' '.join(command)} did not listen within 180 s")

    yield serve
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def run_script(monkeypatch, capsys):
    """
    Runs `scripts/<name>` in this process, without an interpreter's start-up and imports (for argument and input
    checks that end a script early, and scripts that start their own processes for the heavy work):
    `run_script(name, *arguments)` gives (exit status, stderr); `run_script.stdout` then holds what it printed.
    """
    import runpy
    import sys

    def run(name: str, *arguments) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", [name, *map(str, arguments)])
        monkeypatch.setattr(sys, "path", list(sys.path))  # scripts may edit it
        message = ""
        try:
            runpy.run_path(str(REPO_ROOT / "scripts" / name), run_name="__main__")
            status = 0
        except SystemExit as exit:
            status, message = (exit.code, "") if isinstance(exit.code, int) or exit.code is None else (1, str(exit.code))
        captured = capsys.readouterr()
        run.stdout = captured.out
        return status or 0, captured.err + message

    return run
