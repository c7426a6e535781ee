"""Clip archives: what goes in comes out (features up to float16 rounding of recomputed MFCCs), and clear errors."""

import json

import numpy as np
import pytest

from mdpiano import MDPianoFeatureExtractor
from mdpiano.clip_archive import read_clip_archive, read_npz_xz, write_clip_archive, write_npz_xz
from mdpiano.training import Clip


@pytest.fixture
def clips_and_extractor(rendered_clip):
    _, waveform = rendered_clip
    extractor = MDPianoFeatureExtractor()
    sampling_rate = extractor.sampling_rate
    clips = []
    for index, length in enumerate((len(waveform), len(waveform) // 3, len(waveform) // 2)):
        features = extractor.extract(waveform[:length], normalize=False).astype(np.float16)
        notes = np.array([[0.1 * index, 0.5, 60 + index, 80]] * (index + 1), dtype=np.float32)
        rate = (None, 16000.0, 44100.0)[index]  # the audio file's own rate, where known
        clips.append(Clip(f"Q{index + 1}_clip_{index}", index, notes, features, length / sampling_rate, rate))
    return clips, extractor


def test_round_trip(clips_and_extractor, tmp_path):
    clips, extractor = clips_and_extractor
    files = write_clip_archive(tmp_path, {"train-0": clips, "test": clips[:1]}, extractor, clips_per_file=2)
    assert [f.name for f in files] == ["archive.json", "train-0-000.npz.xz", "train-0-001.npz.xz", "test-000.npz.xz"]
    restored = read_clip_archive(tmp_path, "train-0", extractor)
    assert [c.clip_id for c in restored] == [c.clip_id for c in clips]
    for original, copy in zip(clips, restored):
        assert copy.label == original.label and copy.duration == pytest.approx(original.duration)
        assert copy.source_sampling_rate == original.source_sampling_rate
        np.testing.assert_array_equal(copy.notes, original.notes)
        assert copy.features.shape == original.features.shape and copy.features.dtype == np.float16
        n_mels, n_mfcc = extractor.n_mels, extractor.n_mfcc
        # log-mel, centroid and RMS are stored as they are; the MFCCs are recomputed from the float16 log-mel
        np.testing.assert_array_equal(copy.features[:, :n_mels], original.features[:, :n_mels])
        np.testing.assert_array_equal(copy.features[:, n_mels + n_mfcc :], original.features[:, n_mels + n_mfcc :])
        mfcc, expected = copy.features[:, n_mels : n_mels + n_mfcc].astype(np.float32), original.features[:, n_mels : n_mels + n_mfcc].astype(np.float32)
        np.testing.assert_allclose(mfcc, expected, rtol=2e-3, atol=0.05)
    assert len(read_clip_archive(tmp_path, "test", extractor)) == 1
    # an archive written before archives held the rates: not known
    older = read_npz_xz(tmp_path / "test-000.npz.xz")
    del older["source_sampling_rate"]
    write_npz_xz(tmp_path / "test-000.npz.xz", older)
    assert read_clip_archive(tmp_path, "test", extractor)[0].source_sampling_rate is None
    write_clip_archive(tmp_path, {"validation": clips[1:]}, extractor)  # added: the other sets stay
    assert len(read_clip_archive(tmp_path, "validation", extractor)) == 2 and len(read_clip_archive(tmp_path, "train-0", extractor)) == 3
    with pytest.raises(ValueError, match="other feature settings"):
        write_clip_archive(tmp_path, {"other": clips}, MDPianoFeatureExtractor(n_mels=32))


def test_symbolic_only_clips_have_no_features(clips_and_extractor, tmp_path):
    clips, extractor = clips_and_extractor
    bare = [Clip(c.clip_id, c.label, c.notes, None, c.duration) for c in clips]
    write_clip_archive(tmp_path, {"validation": bare}, extractor)
    assert all(c.features is None for c in read_clip_archive(tmp_path, "validation", extractor))


def test_errors_say_what_is_wrong(clips_and_extractor, tmp_path):
    clips, extractor = clips_and_extractor
    with pytest.raises(ValueError, match="not a clip archive"):
        read_clip_archive(tmp_path, "train-0", extractor)
    write_clip_archive(tmp_path, {"train-0": clips}, extractor, clips_per_file=2)
    with pytest.raises(ValueError, match="has no set 'validation'"):
        read_clip_archive(tmp_path, "validation", extractor)
    with pytest.raises(ValueError, match="export the archive again"):
        read_clip_archive(tmp_path, "train-0", MDPianoFeatureExtractor(n_mels=32))
    (tmp_path / "train-0-001.npz.xz").unlink()
    with pytest.raises(ValueError, match=r"misses 1 file\(s\) of set 'train-0': \['train-0-001.npz.xz'\]"):
        read_clip_archive(tmp_path, "train-0", extractor)
    with pytest.raises(ValueError, match="no clips"):
        write_clip_archive(tmp_path, {"empty": []}, extractor)
    assert json.loads((tmp_path / "archive.json").read_text())["format_version"] == 1


def test_clips_made_otherwise_are_refused(clips_and_extractor, tmp_path, monkeypatch):
    """The notes' transcription settings, the level floor and the sets' split scheme are recorded; a run that would
    read them as made otherwise (another --split-scheme, a processor with other thresholds or floor) is refused, and
    so is adding such clips."""
    from mdpiano import MDPianoConfig, MDPianoProcessor
    from mdpiano.clip_archive import clip_source

    clips, extractor = clips_and_extractor
    processor = MDPianoProcessor.from_config(MDPianoConfig())
    source = clip_source(processor, "emopia_cls")
    write_clip_archive(tmp_path, {"train-0": clips}, extractor, source=source)
    manifest = json.loads((tmp_path / "archive.json").read_text())
    assert manifest["split_scheme"] == "emopia_cls" and manifest["transcription_settings"]["onset_threshold"] == 0.5
    assert len(read_clip_archive(tmp_path, "train-0", extractor, source)) == 3
    assert len(read_clip_archive(tmp_path, "train-0", extractor, clip_source(processor))) == 3  # scheme unchecked
    with pytest.raises(ValueError, match="made with split_scheme emopia_cls, but this run uses emopia_1.0"):
        read_clip_archive(tmp_path, "train-0", extractor, clip_source(processor, "emopia_1.0"))
    processor.min_peak = None  # recordings read at their own level, not raised to the floor
    with pytest.raises(ValueError, match="made with min_peak 0.25, but this run uses None"):
        read_clip_archive(tmp_path, "train-0", extractor, clip_source(processor, "emopia_cls"))
    processor.min_peak, processor.onset_threshold = 0.25, 0.6
    with pytest.raises(ValueError, match="made with transcription_settings"):
        read_clip_archive(tmp_path, "train-0", extractor, clip_source(processor, "emopia_cls"))
    with pytest.raises(ValueError, match="made with transcription_settings"):
        write_clip_archive(tmp_path, {"validation": clips}, extractor, source=clip_source(processor, "emopia_cls"))
    # Notes of an older transcription (the same settings) are refused too.
    processor.onset_threshold = 0.5
    monkeypatch.setattr("mdpiano.clip_archive.TRANSCRIPTION_VERSION", 1)
    with pytest.raises(ValueError, match="made with transcription_settings"):
        read_clip_archive(tmp_path, "train-0", extractor, clip_source(processor, "emopia_cls"))


def test_an_interrupted_rewrite_leaves_no_mix_of_old_and_new(clips_and_extractor, tmp_path, monkeypatch):
    """Rewriting a set that stops halfway leaves it out of the archive (named as missing), never old files read as
    new; a damaged file is named, not an lzma traceback."""
    from mdpiano import clip_archive

    clips, extractor = clips_and_extractor
    write_clip_archive(tmp_path, {"train-0": clips, "test": clips[:1]}, extractor, clips_per_file=2)
    write_file = clip_archive.write_npz_xz
    calls = []

    def interrupted(path, arrays):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write_file(path, arrays)

    monkeypatch.setattr(clip_archive, "write_npz_xz", interrupted)
    relabelled = [Clip(c.clip_id, 3 - c.label, c.notes, c.features, c.duration) for c in clips]
    with pytest.raises(KeyboardInterrupt):
        write_clip_archive(tmp_path, {"train-0": relabelled}, extractor, clips_per_file=2)
    with pytest.raises(ValueError, match="has no set 'train-0'"):
        read_clip_archive(tmp_path, "train-0", extractor)
    assert len(read_clip_archive(tmp_path, "test", extractor)) == 1  # the sets not rewritten stay
    assert not list(tmp_path.glob("*.partial"))
    monkeypatch.setattr(clip_archive, "write_npz_xz", write_file)
    write_clip_archive(tmp_path, {"train-0": relabelled}, extractor, clips_per_file=2)
    assert [c.label for c in read_clip_archive(tmp_path, "train-0", extractor)] == [3, 2, 1]
    damaged = tmp_path / "train-0-001.npz.xz"
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(ValueError, match="train-0-001.npz.xz is damaged"):
        read_clip_archive(tmp_path, "train-0", extractor)
