import mir_eval
import numpy as np
import pytest
import soundfile

from mdpiano import MDPianoTranscriber, Note

SR = 22050
ONSET_F1_FLOOR = 0.7  # basic-pitch on a FluidR3_GM rendering of an EMOPIA clip; measured about 0.83


def midi_to_hz(pitches):
    return 440.0 * 2.0 ** ((np.asarray(pitches, dtype=float) - 69) / 12)


def onset_scores(reference, estimate):
    ref_intervals = np.array([[n.onset, n.offset] for n in reference])
    est_intervals = np.array([[n.onset, max(n.offset, n.onset + 1e-3)] for n in estimate])
    ref_intervals[:, 1] = np.maximum(ref_intervals[:, 1], ref_intervals[:, 0] + 1e-3)
    precision, recall, f1, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ref_intervals, midi_to_hz([n.pitch for n in reference]), est_intervals, midi_to_hz([n.pitch for n in estimate]),
        onset_tolerance=0.05, offset_ratio=None,
    )  # fmt: skip
    return precision, recall, f1


@pytest.fixture(scope="module")
def transcriber():
    return MDPianoTranscriber()


@pytest.fixture(scope="module")
def transcription(transcriber, rendered_clip):
    _, waveform = rendered_clip
    return transcriber(waveform, SR)


def test_onset_f1_against_the_clip_midi(transcription, clip_notes):
    # Notes starting in the last half second may be cut by the end of the rendering.
    reference = [n for n in clip_notes if n.onset < 19.5]
    estimate = [n for n in transcription if n.onset < 19.5]
    precision, recall, f1 = onset_scores(reference, estimate)
    print(f"basic-pitch onset P/R/F1 (50 ms) on a FluidR3_GM rendering: {precision:.3f} / {recall:.3f} / {f1:.3f}")
    assert f1 >= ONSET_F1_FLOOR


def test_notes_are_well_formed(transcription):
    assert transcription and all(isinstance(n, Note) for n in transcription)
    assert all(0 <= n.onset < n.offset <= 20.0 for n in transcription)
    assert all(21 <= n.pitch <= 108 and 0 <= n.velocity <= 127 for n in transcription)
    assert transcription == sorted(transcription, key=lambda n: (n.onset, n.pitch))


def test_accepts_other_rates_and_paths(transcriber, transcription, rendered_clip):
    path, waveform = rendered_clip
    assert transcriber(path) == transcription
    import librosa

    at_44k = librosa.resample(waveform, orig_sr=SR, target_sr=44100)
    f1 = onset_scores(transcription, transcriber(at_44k, 44100))[2]
    assert f1 > 0.9  # same music after two resamplings


def test_silence_gives_no_notes(transcriber):
    assert transcriber(np.zeros(SR * 5, np.float32), SR) == []
    assert transcriber(np.zeros(100, np.float32), SR) == []


def test_thresholds_change_the_output(rendered_clip, transcription):
    _, waveform = rendered_clip
    strict = MDPianoTranscriber(onset_threshold=0.8, frame_threshold=0.5)(waveform, SR)
    assert len(strict) < len(transcription)


@pytest.mark.parametrize("settings", [{"batch_size": 1}, {"batch_size": 5, "num_threads": 3}, {"num_threads": 1}])
def test_batches_and_threads_do_not_change_notes(rendered_clip, transcription, settings):
    _, waveform = rendered_clip
    assert MDPianoTranscriber(**settings)(waveform, SR) == transcription


def test_model_is_loaded_once(transcriber):
    assert MDPianoTranscriber().session is transcriber.session


@pytest.mark.parametrize(
    "kwargs, field",
    [({"onset_threshold": 1.5}, "onset_threshold"), ({"frame_threshold": 0}, "frame_threshold"),
     ({"minimum_frequency": 500, "maximum_frequency": 100}, "minimum_frequency"), ({"batch_size": 0}, "batch_size"),
     ({"minimum_frequency": 20.0}, "minimum_frequency"), ({"maximum_frequency": 25.0}, "maximum_frequency"),
     ({"maximum_frequency": 8000.0}, "maximum_frequency"),
     ({"num_threads": -1}, "num_threads")],
)  # fmt: skip
def test_invalid_settings(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MDPianoTranscriber(**kwargs)


def test_notes_equal_basic_pitch_predict(transcriber, rendered_clip, tmp_path):
    """The same notes as basic-pitch's own `predict()` (ONNX model, default thresholds) on the same file: the clip
    and a second of silence, since `predict()` leaves the last 0.7 % of a recording out (see the next test)."""
    import contextlib
    import io

    from basic_pitch.inference import Model, predict

    from mdpiano.transcription_mdpiano import default_model_path

    _, waveform = rendered_clip
    path = tmp_path / "clip.wav"
    soundfile.write(path, np.concatenate([waveform, np.zeros(SR, np.float32)]), SR, subtype="FLOAT")
    with contextlib.redirect_stdout(io.StringIO()):
        _, _, events = predict(str(path), Model(default_model_path()))
    reference = sorted(
        [Note(float(start), float(end), int(pitch), int(np.round(127 * amplitude))) for start, end, pitch, amplitude, _ in events],
        key=lambda n: (n.onset, n.pitch),
    )
    assert transcriber(path) == reference


def test_notes_reach_the_end_of_the_recording(transcription, rendered_clip):
    """The clip stops while notes sound: they last to its end. basic-pitch's frame count (86 a second, where its
    windows give 86.6) cut them 0.13 s earlier in 20 s, and 24 s earlier in an hour."""
    _, waveform = rendered_clip
    end = len(waveform) / SR
    assert end - 0.05 < max(note.offset for note in transcription) <= end


def test_streaming_in_blocks_equals_whole(transcriber, rendered_clip, transcription):
    _, waveform = rendered_clip
    stream = transcriber.stream()
    for start in range(0, len(waveform), 7777):
        stream.feed(waveform[start : start + 7777])
    assert stream.finish() == transcription


def test_segmented_note_extraction_of_long_input(transcriber, rendered_clip, monkeypatch):
    """Long inputs are extracted in segments with margins: nearly every note is the one a single pass gives. Only
    they fix glibc's allocation thresholds (process-wide)."""
    from mdpiano import transcription_mdpiano
    from mdpiano.transcription_mdpiano import TranscriptionStream

    class ShortSegments(TranscriptionStream):
        SEGMENT_S, MARGIN_S = 8, 3

    calls = []
    monkeypatch.setattr(transcription_mdpiano, "_keep_large_blocks_mapped", lambda: calls.append(1))
    _, waveform = rendered_clip
    whole = transcriber(waveform, SR)
    assert not calls
    stream = ShortSegments(transcriber)
    stream.feed(waveform)
    segmented = stream.finish()
    assert calls
    assert abs(len(segmented) - len(whole)) <= 2
    assert len(set(segmented) & set(whole)) >= 0.95 * len(whole)


def test_activation_buffer_appends_drops_and_truncates():
    from mdpiano.transcription_mdpiano import _ActivationBuffer

    rng = np.random.default_rng(0)
    buffer, expected_note, expected_onset = _ActivationBuffer(), np.zeros((0, 88), np.float32), np.zeros((0, 88), np.float32)
    for step in range(40):
        note, onset = rng.random((2, int(rng.integers(1, 300)), 88), dtype=np.float32)
        buffer.append(note, onset)
        expected_note, expected_onset = np.concatenate([expected_note, note]), np.concatenate([expected_onset, onset])
        if step % 7 == 6:
            drop = int(rng.integers(0, len(expected_note) + 50))
            buffer.drop(drop)
            expected_note, expected_onset = expected_note[drop:], expected_onset[drop:]
        held_note, held_onset = buffer.held()
        assert np.array_equal(held_note, expected_note) and np.array_equal(held_onset, expected_onset)
    capacity = len(buffer.note)
    buffer.drop(len(expected_note) - 10)
    assert len(buffer.note) == capacity  # room for the next segment without growing
    buffer.truncate(5)
    assert buffer.length == 5 and np.array_equal(buffer.held()[0], expected_note[-10:-5])


ALLOCATION_SCRIPT = """
import ctypes, sys
import numpy as np
from mdpiano.transcription_mdpiano import _glibc, _keep_large_blocks_mapped

libc = _glibc()
if libc is None or not hasattr(libc, "mallinfo2"):
    sys.exit(print("no glibc 2.33"))
class MallInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = MallInfo
if sys.argv[1] == "fixed":
    _keep_large_blocks_mapped()
np.ones(20 * 2**20, np.uint8).fill(0)  # a mapped block, freed at once: glibc raises its threshold to its size unless fixed
mapped = libc.mallinfo2().hblkhd
block = np.ones(4 * 2**20, np.uint8)
print(libc.mallinfo2().hblkhd - mapped >= block.nbytes)
"""


@pytest.mark.parametrize("thresholds, mapped", [("glibc's", "False"), ("fixed", "True")])
def test_long_input_allocation_thresholds_map_large_blocks(thresholds, mapped):
    """Once a recording is long, a multi-MB block is mapped on its own (and goes back to the OS when freed), even
    after larger blocks came and went; glibc's own rule would take it from the heap (fresh processes: process-wide)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", ALLOCATION_SCRIPT, thresholds], capture_output=True, text=True, check=True)
    output = result.stdout.strip().splitlines()[-1]
    if output == "no glibc 2.33":
        pytest.skip("needs glibc 2.33 or later")
    assert output == mapped


QUIET_IMPORT_SCRIPT = """
import logging, sys
import numpy as np
from mdpiano import MDPianoTranscriber
from mdpiano.transcription_mdpiano import _quiet_basic_pitch_import

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
MDPianoTranscriber(num_threads=2)(np.zeros(22050 * 3, np.float32), 22050)  # basic-pitch imported in worker threads
logging.getLogger("mdpiano.test").warning("a later warning")
with _quiet_basic_pitch_import():  # as another thread's import of basic-pitch would be
    logging.getLogger("mdpiano.test").warning("a warning meanwhile")
print(logging.getLogger().level)
"""


def test_basic_pitch_import_is_quiet_and_leaves_logging_alone():
    """basic-pitch's import warnings (backends it lacks) are dropped, and nothing else: the root logger's level stays,
    so warnings after a transcription (from any thread) are still heard."""
    import logging
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", QUIET_IMPORT_SCRIPT], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == str(logging.WARNING)
    assert "WARNING a later warning" in result.stderr and "WARNING a warning meanwhile" in result.stderr
    assert "tflite-runtime is not installed" not in result.stderr and "Coremltools" not in result.stderr
