import numpy as np
import pytest
from scipy import signal

from mdpiano import load_audio
from mdpiano.augmentation import (
    FIXED_CONDITIONS,
    TRAIN_SOUNDFONTS,
    _biquad,
    add_noise,
    condition_for,
    encode,
    render_condition,
    render_folder,
)


def test_conditions_are_reproducible_per_clip_and_variant():
    assert condition_for("train", "Q1_a_0", 0) == condition_for("train", "Q1_a_0", 0)
    draws = {condition_for("train", f"Q1_a_{i}", v) for i in range(5) for v in range(2)}
    assert len(draws) == 10
    with pytest.raises(ValueError, match="Unknown condition set"):
        condition_for("test-other", "Q1_a_0")


@pytest.mark.parametrize("name", ["test-new-piano", "test-unseen"])
def test_training_never_sees_the_unseen_recording_chain(name):
    unseen = FIXED_CONDITIONS[name]
    draws = [condition_for("train", f"clip{i}", v) for i in range(300) for v in range(2)]
    assert all(d.codec != unseen.codec for d in draws)
    assert all(d.noise_color != unseen.noise_color for d in draws)
    assert all(d.rt60_s < unseen.rt60_s for d in draws)
    assert all(d.peak_db == 0 for d in draws) and unseen.peak_db != 0
    assert all(d.sampling_rate != unseen.sampling_rate for d in draws)
    assert {d.soundfont for d in draws} == set(TRAIN_SOUNDFONTS) and {d.codec for d in draws} == {"flac", "ogg"}


def test_the_new_piano_sets_play_pianos_outside_training():
    """Whether their samples differ from the training pianos' too is tested in test_rendering."""
    pianos = {FIXED_CONDITIONS[name].soundfont for name in ("test-new-piano", "test-new-piano-clean")}
    validation_piano = FIXED_CONDITIONS["validation-new-piano"].soundfont
    assert len(pianos) == 1 and not pianos & set(TRAIN_SOUNDFONTS)
    assert validation_piano not in pianos | set(TRAIN_SOUNDFONTS)
    assert FIXED_CONDITIONS["validation-new-piano"].codec == FIXED_CONDITIONS["validation-unseen"].codec


def test_unseen_validation_chain_is_outside_training_and_unlike_the_test():
    held_out, test = FIXED_CONDITIONS["validation-unseen"], FIXED_CONDITIONS["test-unseen"]
    draws = [condition_for("train", f"clip{i}", v) for i in range(300) for v in range(2)]
    assert all(d.rt60_s < held_out.rt60_s and d.peak_db == 0 and d.sampling_rate != held_out.sampling_rate for d in draws)
    assert all(d.noise_snr_db is None or d.noise_snr_db > held_out.noise_snr_db for d in draws)
    assert all(d.codec_quality < held_out.codec_quality for d in draws if d.codec == "ogg")
    assert held_out.soundfont != test.soundfont and held_out.codec != test.codec
    assert held_out.noise_color != test.noise_color and np.sign(held_out.peak_db) != np.sign(test.peak_db)


@pytest.mark.parametrize("kind, frequency, q", [("low", 200.0, 0.707), ("high", 4000.0, 0.707), ("peak", 1500.0, 1.41)])
def test_eq_bands_have_their_gain(kind, frequency, q):
    b, a = _biquad(kind, frequency, 6.0, 22050, q)
    probe = {"low": [30.0, 10000.0], "high": [10000.0, 30.0], "peak": [1500.0, 30.0]}[kind]
    _, response = signal.freqz(b, a, worN=probe, fs=22050)
    boosted, untouched = 20 * np.log10(np.abs(response))
    assert boosted == pytest.approx(6.0, abs=0.3) and untouched == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_noise_has_the_requested_level(color):
    rng = np.random.default_rng(0)
    clean = np.sin(np.linspace(0, 2000, 44100))
    noise = add_noise(clean, 20.0, color, rng) - clean
    snr = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
    assert snr == pytest.approx(20.0, abs=0.01)


@pytest.mark.parametrize("name", ["test-clean", "test-unseen", "test-new-piano", "train"])
def test_render_and_encode(clip_midi, name):
    condition = condition_for(name, clip_midi.stem)
    audio = render_condition(clip_midi, condition, seed=0)
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert np.abs(audio).max() == pytest.approx(condition.peak, rel=1e-5)
    decoded = load_audio(encode(audio, condition), target_sampling_rate=condition.sampling_rate)
    assert abs(len(decoded) - len(audio)) < 0.05 * condition.sampling_rate  # codecs may pad a frame


def test_render_folder_resumes(emopia_dir, tmp_path):
    clips = {name: emopia_dir / "midis" / f"{name}.mid" for name in ("Q1_0vLPYiPN7qY_0", "Q3_ii1Jw1-7Ka4_1")}
    assert render_folder(clips, "test-clean", 0, tmp_path, workers=1) == {}
    files = sorted(tmp_path.glob("*.flac"))
    assert [f.stem for f in files] == sorted(clips)
    stamps = [f.stat().st_mtime_ns for f in files]
    assert render_folder(clips, "test-clean", 0, tmp_path, workers=1) == {}
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert len((tmp_path / "conditions.jsonl").read_text().splitlines()) == 2


def test_renderings_do_not_depend_on_what_was_rendered_before(emopia_dir, tmp_path):
    """A clip's audio is the same whichever clips a worker rendered before it (a reused synthesizer kept its event
    timing phase), so parallel, resumed and sequential renders of a set are the same files."""
    clips = {name: emopia_dir / "midis" / f"{name}.mid" for name in ("Q1_0vLPYiPN7qY_0", "Q3_ii1Jw1-7Ka4_1", "Q2_0v2N1ROvEI0_1")}
    condition = FIXED_CONDITIONS["test-unseen"]
    alone = render_condition(clips["Q2_0v2N1ROvEI0_1"], condition, seed=7, max_duration_s=8.0)
    render_condition(clips["Q1_0vLPYiPN7qY_0"], condition, seed=7, max_duration_s=5.0)
    np.testing.assert_array_equal(render_condition(clips["Q2_0v2N1ROvEI0_1"], condition, seed=7, max_duration_s=8.0), alone)
    for workers, folder in ((2, "parallel"), (1, "sequential")):  # workers=1 renders all three in this process
        assert render_folder(clips, "test-clean", 0, tmp_path / folder, workers=workers, max_duration_s=6.0) == {}
    for name in clips:
        assert (tmp_path / "parallel" / f"{name}.flac").read_bytes() == (tmp_path / "sequential" / f"{name}.flac").read_bytes()
