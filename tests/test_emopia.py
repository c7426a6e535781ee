import csv
import logging
import shutil
import subprocess
import sys

import pytest
import soundfile

from mdpiano.emopia import EmopiaFormatError, load_emopia, read_split, song_id


def test_benchmark_split(emopia_dir):
    dataset, report = load_emopia(emopia_dir, return_report=True)
    assert {name: len(split) for name, split in dataset.items()} == {"train": 767, "validation": 198, "test": 86}
    assert report.skipped == 0
    features = dataset["train"].features
    assert features["label"].names == ["Q1", "Q2", "Q3", "Q4"]
    assert set(dataset["train"].column_names) == {"clip_id", "song_id", "midi_path", "label", "arousal", "valence"}
    for row in dataset["test"]:
        quadrant = features["label"].int2str(row["label"])
        assert row["clip_id"].startswith(quadrant)  # EMOPIA names each clip by its quadrant
        assert row["arousal"] == (quadrant in ("Q1", "Q2")) and row["valence"] == (quadrant in ("Q1", "Q4"))
    songs = {name: set(split["song_id"]) for name, split in dataset.items()}
    assert not songs["train"] & songs["test"] and not songs["train"] & songs["validation"]


def test_second_split_scheme(emopia_dir):
    dataset = load_emopia(emopia_dir, "emopia_1.0")
    assert {name: len(split) for name, split in dataset.items()} == {"train": 876, "validation": 114, "test": 88}
    with pytest.raises(ValueError, match="Unknown split scheme"):
        read_split(emopia_dir, "random")


def test_song_id_keeps_underscores():
    assert song_id("Q4__BK2o77sTc0_2") == "_BK2o77sTc0"
    assert song_id("Q1_0vLPYiPN7qY_10") == "0vLPYiPN7qY"


@pytest.fixture
def small_emopia(emopia_dir, tmp_path):
    """A copy of EMOPIA with three real test clips and one listed clip whose MIDI file is absent."""
    root = tmp_path / "emopia"
    (root / "midis").mkdir(parents=True)
    (root / "split" / "emopia_cls").mkdir(parents=True)
    shutil.copy(emopia_dir / "label.csv", root / "label.csv")
    with open(emopia_dir / "split" / "emopia_cls" / "test.csv") as file:
        rows = list(csv.DictReader(file))[:3]
    for row in rows:
        (root / "midis" / f"{row['fname']}.mid").symlink_to(emopia_dir / "midis" / f"{row['fname']}.mid")
    rows.append({"fname": "Q1_notAClip_0", "label": "Q1"})
    for name in ("train.csv", "val.csv", "test.csv"):
        with open(root / "split" / "emopia_cls" / name, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=["fname", "label"])
            writer.writeheader()
            writer.writerows(rows if name == "test.csv" else rows[:1])
    return root, [row["fname"] for row in rows[:3]]


def test_missing_clips_are_reported(small_emopia, caplog):
    root, present = small_emopia
    with caplog.at_level(logging.WARNING):
        dataset, report = load_emopia(root, return_report=True)
    assert list(dataset["test"]["clip_id"]) == present
    assert report.missing_midi["test"] == ["Q1_notAClip_0"]
    assert "1 clips skipped, no MIDI file: Q1_notAClip_0" in caplog.text


def test_audio_column_and_missing_audio(small_emopia, tmp_path, rendered_clip):
    root, present = small_emopia
    _, waveform = rendered_clip
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    soundfile.write(audio_dir / f"{present[0]}.flac", waveform[:22050], 22050)
    dataset, report = load_emopia(root, audio_dir=audio_dir, return_report=True)
    assert list(dataset["test"]["clip_id"]) == [present[0]]
    assert report.missing_audio["test"] == present[1:]
    decoded = dataset["test"][0]["audio"].get_all_samples()
    assert decoded.sample_rate == 22050 and decoded.data.shape[-1] == 22050
    resampled = load_emopia(root, audio_dir=audio_dir, sampling_rate=16000)["test"][0]["audio"].get_all_samples()
    assert resampled.sample_rate == 16000


def test_audio_column_without_torchcodec(small_emopia, tmp_path, rendered_clip):
    """Listing, caching and training read audio with libsndfile: a machine without torchcodec (which `datasets`
    needs only to decode an Audio column itself) can still build EMOPIA or a user's labelled audio and read it."""
    root, present = small_emopia
    audio_dir = tmp_path / "audio"
    (tmp_path / "mine" / "calm").mkdir(parents=True)
    audio_dir.mkdir()
    soundfile.write(audio_dir / f"{present[0]}.flac", rendered_clip[1][:22050], 22050)
    soundfile.write(tmp_path / "mine" / "calm" / "take.flac", rendered_clip[1][:11025], 22050)
    script = f"""
import sys
sys.modules["torchcodec"] = None  # any import of it fails, as where it is not installed
from datasets import Audio
from mdpiano.audio_mdpiano import load_audio
from mdpiano.emopia import load_emopia
from mdpiano.labelled_audio import load_labelled_audio
for dataset in (load_emopia({str(root)!r}, audio_dir={str(audio_dir)!r}, splits=["test"])["test"],
                load_labelled_audio({str(tmp_path / "mine")!r})):
    print(list(dataset["clip_id"]), load_audio(dataset.cast_column("audio", Audio(decode=False))[0]["audio"]["path"]).shape)
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip().splitlines() == [f"['{present[0]}'] (22050,)", "['calm__take'] (11025,)"]


def test_one_split_is_built_and_reported_alone(small_emopia, tmp_path, rendered_clip):
    root, present = small_emopia
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    soundfile.write(audio_dir / f"{present[0]}.flac", rendered_clip[1][:22050], 22050)
    dataset, report = load_emopia(root, audio_dir=audio_dir, splits=["test"], return_report=True)
    assert list(dataset) == ["test"] and list(dataset["test"]["clip_id"]) == [present[0]]
    assert set(report.missing_audio) == {"test"}  # the train and validation clips are not reported as lacking audio
    with pytest.raises(ValueError, match="No split \\['dev'\\].*choose from"):
        load_emopia(root, splits=["dev"])


@pytest.mark.parametrize(
    "content, message",
    [("id,quadrant\nQ1_a_0,1\n", "lacks the column"), ("ID,4Q,annotator\nQ1_a_0,7,X\n", "line 2: 4Q must be 1-4")],
)
def test_malformed_label_file(small_emopia, content, message):
    root, _ = small_emopia
    (root / "label.csv").write_text(content)
    with pytest.raises(EmopiaFormatError, match=message):
        load_emopia(root)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="midis"):
        load_emopia(tmp_path)


def test_audio_sets_name_their_split():
    from mdpiano.emopia import split_of_audio_set

    names = ["train", "train-0", "train-1", "validation", "validation-unseen", "test-clean", "test-unseen"]
    assert [split_of_audio_set(n) for n in names] == ["train"] * 3 + ["validation"] * 2 + ["test"] * 2
    with pytest.raises(ValueError, match="Cannot tell the EMOPIA split of audio set 'trainee'"):
        split_of_audio_set("trainee")
