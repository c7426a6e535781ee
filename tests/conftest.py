"""Shared fixtures: real EMOPIA MIDI from ../shared/data, rendered to audio with FluidSynth."""

import os
from pathlib import Path

import numpy as np
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
    from mdpiano.rendering import render_midi

    waveform = render_midi(clip_midi, "FluidR3_GM", SAMPLING_RATE, max_duration_s=CLIP_SECONDS)
    path = tmp_path_factory.mktemp("audio") / f"{TEST_CLIP}.wav"
    soundfile.write(path, waveform, SAMPLING_RATE, subtype="FLOAT")
    return path, waveform


@pytest.fixture(scope="session")
def clip_notes(clip_midi):
    """Ground-truth notes of the rendered part of the clip."""
    from mdpiano import read_midi_notes

    return [n for n in read_midi_notes(clip_midi) if n.onset < CLIP_SECONDS]


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(0)
