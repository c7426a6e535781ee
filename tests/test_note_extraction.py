"""mdpiano's note extraction gives exactly basic-pitch's `output_to_notes_polyphonic` notes, and loads none of its
heavy imports."""

import subprocess
import sys

import numpy as np
import pytest

from mdpiano import MDPianoTranscriber
from mdpiano.note_extraction import extract_notes, model_frames_to_time

SR = 22050


@pytest.fixture(scope="module")
def note_creation():
    from mdpiano.transcription_mdpiano import _basic_pitch

    return _basic_pitch("note_creation").note_creation


class CapturingTranscriber(MDPianoTranscriber):
    """Keeps the activations it extracts notes from."""

    def frames_to_notes(self, note, onset):
        self.activations = note.copy(), onset.copy()
        return super().frames_to_notes(note, onset)


@pytest.fixture(scope="module")
def activations(rendered_clip):
    transcriber = CapturingTranscriber()
    transcriber(rendered_clip[1], SR)
    return transcriber.activations


def reference_notes(note_creation, frames, onsets, *args):
    # basic-pitch writes into the arrays it is given (frequency limits), and warns on silence.
    with np.errstate(invalid="ignore", divide="ignore"):
        return note_creation.output_to_notes_polyphonic(frames.copy(), onsets.copy(), *args)


@pytest.mark.parametrize(
    "settings",
    [
        (0.5, 0.3, 11, True, None, None, True),  # basic-pitch's defaults
        (0.3, 0.2, 5, True, None, None, True),
        (0.7, 0.5, 20, False, None, None, False),
        (0.5, 0.3, 11, True, 2000.0, 60.0, True),
        (0.5, 0.1, 0, True, None, None, True),
    ],
)
def test_equal_to_basic_pitch_on_model_activations(note_creation, activations, settings):
    frames, onsets = activations
    expected = reference_notes(note_creation, frames, onsets, *settings)
    assert len(expected) > 50
    assert extract_notes(frames, onsets, *settings) == expected


@pytest.mark.parametrize("row_block, first_scan", [(4096, 64), (37, 4)])
def test_equal_to_basic_pitch_on_random_activations(note_creation, monkeypatch, row_block, first_scan):
    """Random matrices, including silence, ties between equal activations and inputs of one to three frames; also
    with tiny row blocks and note scans, as long inputs meet them."""
    from mdpiano import note_extraction

    monkeypatch.setattr(note_extraction, "_ROW_BLOCK", row_block)
    monkeypatch.setattr(note_extraction, "_FIRST_SCAN", first_scan)
    rng = np.random.default_rng(0)
    for trial in range(40):
        n_frames = [1, 2, 3][trial] if trial < 3 else int(rng.integers(4, 300))
        sharpness = rng.uniform(1, 6)
        frames = (rng.random((n_frames, 88)) ** sharpness).astype(np.float32)
        onsets = (rng.random((n_frames, 88)) ** sharpness).astype(np.float32)
        if trial % 5 == 0:
            frames[:], onsets[:] = 0, 0
        if trial % 7 == 1:
            frames = np.round(frames * 4) / 4  # many equal maxima: the row-major tie order matters
        minimum_length = int(rng.integers(0, 12))
        expected = reference_notes(note_creation, frames, onsets, 0.5, 0.3, minimum_length, True, None, None, True)
        assert extract_notes(frames, onsets, 0.5, 0.3, minimum_length) == expected, f"trial {trial}"


def test_onsets_at_a_float32_threshold_compare_as_basic_pitchs(note_creation):
    """Without inferred onsets the onset rows are the caller's float32 ones; float32(0.7) lies below 0.7, so it must
    not pass a threshold of 0.7 (basic-pitch compares in float64)."""
    frames = np.zeros((16, 88), np.float32)
    onsets = np.zeros((16, 88), np.float32)
    frames[1:15, 39] = 0.8
    onsets[1, 39] = 0.7
    settings = (0.7, 0.3, 5, False, None, None, True)
    assert extract_notes(frames, onsets, *settings) == reference_notes(note_creation, frames, onsets, *settings)


def test_frame_times_equal_basic_pitch(note_creation):
    assert np.array_equal(model_frames_to_time(2000), note_creation.model_frames_to_time(2000))


def test_inference_loads_no_librosa_scipy_signal_or_mir_eval(quadrant_clips, model_dir):
    """What basic-pitch's note creation and librosa import costs seconds at start-up; inference needs none of it."""
    script = (
        "import sys, mdpiano\n"
        "from transformers import pipeline\n"
        f"pipeline('audio-classification', model={str(model_dir)!r})({str(quadrant_clips[0][1])!r})\n"
        "print(sorted(m for m in ('librosa', 'scipy.signal', 'mir_eval', 'resampy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
