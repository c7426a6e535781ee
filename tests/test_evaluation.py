import json
import os

import numpy as np
import pytest
from datasets import Dataset

from mdpiano.evaluation import metrics_table, replace_section, write_report, write_resampled_copies, write_scaled_copies


@pytest.fixture
def predictions():
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.2, 0.2, 0.5, 0.1], [0.1, 0.1, 0.6, 0.2]])
    return {"probabilities": probabilities, "arousal": np.array([0.9, 0.8, 0.3, 0.6]), "valence": np.array([0.8, 0.2, 0.1, 0.3])}


@pytest.fixture
def dataset():
    return Dataset.from_dict({"clip_id": ["a", "b", "c", "d"], "label": [0, 1, 2, 3]})


def test_write_report(tmp_path, predictions, dataset):
    metrics = write_report(predictions, dataset, tmp_path, "test report")
    assert metrics["accuracy"] == 0.75  # d (Q4) is predicted Q3
    assert metrics["arousal_accuracy"] == 1.0 and metrics["valence_accuracy"] == 0.75
    assert metrics["arousal_head_accuracy"] == 0.75 and metrics["valence_head_accuracy"] == 0.75
    assert metrics["confusion_matrix"][3] == [0, 0, 1, 0]
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["clips"][3] == {"clip_id": "d", "label": "Q4", "prediction": "Q3",
                                  "probabilities": {"Q1": 0.1, "Q2": 0.1, "Q3": 0.6, "Q4": 0.2},
                                  "arousal_head": 0.6, "valence_head": 0.3}  # fmt: skip
    write_report({"probabilities": predictions["probabilities"]}, dataset, tmp_path / "no heads", "test report")
    assert "arousal_head" not in json.loads((tmp_path / "no heads" / "results.json").read_text())["clips"][0]
    for figure in ("confusion_matrix.png", "valence_arousal.png"):
        assert (tmp_path / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = metrics_table(metrics)
    assert "| accuracy | 0.750 |" in table and "| Q4 | 0.000 | 0.000 | 0.000 | 1 |" in table


def test_replace_section(tmp_path):
    document = tmp_path / "README.md"
    document.write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\noutro\n---\n# card:begin\n# card:end\n")
    replace_section(document, "results", "new table")
    replace_section(document, "card", "key: 1", yaml=True)
    assert document.read_text() == (
        "intro\n<!-- results:begin -->\nnew table\n<!-- results:end -->\noutro\n---\n# card:begin\nkey: 1\n# card:end\n"
    )
    with pytest.raises(ValueError, match="no <!-- other:begin -->"):
        replace_section(document, "other", "x")


@pytest.mark.parametrize("seed", range(3))
def test_quadrant_metrics_agree_with_scikit_learn(seed):
    """Accuracy and macro-F1 as scikit-learn computes them, also on sets where a quadrant never occurs."""
    import evaluate
    from sklearn.metrics import accuracy_score, f1_score

    from mdpiano.training import METRICS_DIR

    rng = np.random.default_rng(seed)
    references = rng.integers(0, 3, 40)  # no Q4 in the truth
    predictions = np.where(rng.random(40) < 0.6, references, rng.integers(0, 3 + seed % 2, 40))  # Q4 predicted in some
    metrics = evaluate.load(str(METRICS_DIR)).compute(predictions=predictions.tolist(), references=references.tolist())
    assert metrics["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert metrics["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))


def test_metric_reads_arousal_and_valence_off_the_label_names():
    import evaluate

    from mdpiano.training import METRICS_DIR

    metric = evaluate.load(str(METRICS_DIR))
    # Index 1 is Q1 here: truth Q1, prediction Q4 (index 3): valence right, arousal wrong.
    metrics = metric.compute(predictions=[3], references=[1], labels=["Q2", "Q1", "Q3", "Q4"], valence_predictions=[1])
    assert metrics["valence_accuracy"] == metrics["valence_head_accuracy"] == 1.0 and metrics["arousal_accuracy"] == 0.0
    with pytest.raises(ValueError, match="quadrant indices 0-3"):
        metric.compute(predictions=[-1], references=[0])


def test_metric_refuses_empty_sets_and_malformed_head_decisions():
    import evaluate

    from mdpiano.training import METRICS_DIR

    metric = evaluate.load(str(METRICS_DIR))
    with pytest.raises(ValueError, match="No clips to score"):
        metric.compute(predictions=[], references=[])
    with pytest.raises(ValueError, match=r"one value per clip \(4\)"):  # one value would broadcast over the clips
        metric.compute(predictions=[0, 1, 2, 3], references=[0, 1, 2, 3], arousal_predictions=[1])
    with pytest.raises(ValueError, match="0/1 decisions"):  # probabilities would all count as wrong
        metric.compute(predictions=[0, 2], references=[0, 2], valence_predictions=[0.9, 0.2])


def test_scaled_copies_are_exact_float_wav_of_the_audio_files(tmp_path):
    import soundfile

    source, tone = tmp_path / "set", (0.8 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    source.mkdir()
    soundfile.write(source / "a.flac", tone, 16000)
    soundfile.write(source / "b.wav", np.stack([tone, -tone], axis=1), 22050, subtype="FLOAT")
    (source / "conditions.jsonl").write_text("{}\n")  # what render_emopia.py keeps beside the audio: no audio
    quiet = write_scaled_copies(source, tmp_path / "quiet", -20.0)
    assert sorted(path.name for path in quiet.iterdir()) == ["a.wav", "b.wav"]
    a, rate = soundfile.read(quiet / "a.wav", dtype="float32")
    flac, _ = soundfile.read(source / "a.flac", dtype="float32")
    assert rate == 16000 and soundfile.info(quiet / "a.wav").subtype == "FLOAT"
    np.testing.assert_allclose(a, flac * 0.1, rtol=1e-6)
    b, rate = soundfile.read(quiet / "b.wav", dtype="float32")
    assert rate == 22050 and b.shape == (8000, 2)
    written = (quiet / "a.wav").stat().st_mtime_ns
    assert written == (source / "a.flac").stat().st_mtime_ns  # a copy carries its source's time
    (quiet / "a.wav").write_bytes(b"kept")  # resumable: a file already written is not written again
    os.utime(quiet / "a.wav", ns=(written, written))
    write_scaled_copies(source, quiet, -20.0)
    assert (quiet / "a.wav").read_bytes() == b"kept"
    # A source replaced since its copy (here by an older file) is copied again; a copy whose source is gone goes too.
    soundfile.write(source / "a.flac", tone / 2, 16000)
    earlier = written - 10**9
    os.utime(source / "a.flac", ns=(earlier, earlier))
    (source / "b.wav").unlink()
    write_scaled_copies(source, quiet, -20.0)
    assert sorted(path.name for path in quiet.iterdir()) == ["a.wav"]
    halved, _ = soundfile.read(source / "a.flac", dtype="float32")
    np.testing.assert_allclose(soundfile.read(quiet / "a.wav", dtype="float32")[0], halved * 0.1, rtol=1e-6)


def test_resampled_copies_hold_only_the_band_below_half_their_rate(tmp_path):
    import soundfile

    source = tmp_path / "source"
    source.mkdir()
    seconds = np.arange(22050) / 22050
    low, high = np.sin(2 * np.pi * 1000 * seconds), np.sin(2 * np.pi * 9000 * seconds)
    soundfile.write(source / "a.wav", (0.4 * (low + high)).astype(np.float32), 22050, subtype="FLOAT")
    copies = write_resampled_copies(source, tmp_path / "16k", 16000)
    copy, rate = soundfile.read(copies / "a.wav", dtype="float32")
    assert rate == 16000 and len(copy) == 16000 and soundfile.info(copies / "a.wav").subtype == "FLOAT"
    spectrum = np.abs(np.fft.rfft(copy))  # 1-Hz bins: the 1-kHz tone stays, the 9-kHz one (above 8 kHz) is gone
    assert spectrum[1000] > 1000 and spectrum[1000] > 100 * spectrum[7000:].max()
    assert (copies / "a.wav").stat().st_mtime_ns == (source / "a.wav").stat().st_mtime_ns  # resumable like the scaled
