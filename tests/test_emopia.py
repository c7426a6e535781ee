import csv
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from mdpiano.emopia import AUDIO_EXTENSIONS, EmopiaFormatError, find_audio, load_emopia, read_split, song_id


def test_benchmark_split(emopia_dir, caplog):
    with caplog.at_level(logging.WARNING):
        dataset, report = load_emopia(emopia_dir, return_report=True)
    assert not caplog.records  # the real labels and splits agree, and every MIDI file is readable
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


def test_second_split_scheme(emopia_dir, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = load_emopia(emopia_dir, "emopia_1.0")
    assert not caplog.records
    assert {name: len(split) for name, split in dataset.items()} == {"train": 876, "validation": 114, "test": 88}
    with pytest.raises(ValueError, match="Unknown split scheme"):
        read_split(emopia_dir, "random")


def test_song_id_keeps_underscores():
    assert song_id("Q4__BK2o77sTc0_2") == "_BK2o77sTc0"
    assert song_id("Q1_0vLPYiPN7qY_10") == "0vLPYiPN7qY"


def read_rows(path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def write_rows(path, rows: list[dict], encoding: str = "utf-8") -> None:
    with open(path, "w", newline="", encoding=encoding) as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def small_emopia(emopia_dir, tmp_path):
    """
    A copy of EMOPIA's labels and emopia_cls split files listing one real clip in train and validation, three in test
    and a test clip whose MIDI file is absent (the real MIDI files are linked).
    """
    root = tmp_path / "emopia"
    (root / "midis").mkdir(parents=True)
    (root / "split" / "emopia_cls").mkdir(parents=True)
    shutil.copy(emopia_dir / "label.csv", root / "label.csv")
    splits = {name: read_rows(emopia_dir / "split" / "emopia_cls" / name)[:count]
              for name, count in (("train.csv", 1), ("val.csv", 1), ("test.csv", 3))}  # fmt: skip
    for row in sum(splits.values(), []):
        (root / "midis" / f"{row['fname']}.mid").symlink_to(emopia_dir / "midis" / f"{row['fname']}.mid")
    splits["test.csv"].append({"fname": "Q1_notAClip_0", "label": "Q1"})
    for name, rows in splits.items():
        write_rows(root / "split" / "emopia_cls" / name, rows)
    return root, [row["fname"] for row in splits["test.csv"][:3]]


def test_missing_clips_are_reported(small_emopia, caplog):
    root, present = small_emopia
    with caplog.at_level(logging.WARNING):
        dataset, report = load_emopia(root, return_report=True)
    assert list(dataset["test"]["clip_id"]) == present
    assert report.missing_midi["test"] == ["Q1_notAClip_0"]
    assert "1 clip skipped, no MIDI file: Q1_notAClip_0" in caplog.text


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


def relabel(path, key: str, clip_id: str, column: str, value: str) -> int:
    """Sets `column` in the row of `clip_id` (in column `key`) of a CSV file; returns that row's line."""
    rows = read_rows(path)
    index = next(i for i, row in enumerate(rows) if row[key] == clip_id)
    rows[index][column] = value
    write_rows(path, rows)
    return index + 2


@pytest.mark.parametrize("file", ["label.csv", "split/emopia_cls/test.csv"])
def test_contradicting_labels_are_errors(small_emopia, file):
    root, present = small_emopia
    clip, named = present[0], present[0][:2]
    wrong = "Q1" if named != "Q1" else "Q2"
    if file == "label.csv":
        line = relabel(root / file, "ID", clip, "4Q", wrong[1])
        message = f"label.csv, line {line}: {clip} has 4Q {wrong[1]} ({wrong}), but its name says {named}"
    else:
        line = relabel(root / file, "fname", clip, "label", wrong)
        message = f"test.csv, line {line}: {clip} is labelled '{wrong}', but its name says {named}"
    with pytest.raises(EmopiaFormatError, match=re.escape(message)):
        load_emopia(root)


@pytest.mark.parametrize(
    "file, message",
    [
        ("label.csv", r"label.csv lists 1 clip more than once: {clip} \(lines \d+, 1080\)"),
        ("split/emopia_cls/test.csv", r"test.csv lists 1 clip more than once: {clip} \(lines 2, 6\)"),
        ("split/emopia_cls/train.csv", r"1 clip in more than one split file: {clip} \(train.csv and test.csv\)"),
    ],
)
def test_duplicates_and_leaks_are_errors(small_emopia, file, message):
    root, present = small_emopia
    source = read_rows(root / ("label.csv" if file == "label.csv" else "split/emopia_cls/test.csv"))
    row = next(row for row in source if present[0] in (row.get("ID"), row.get("fname")))
    write_rows(root / file, read_rows(root / file) + [row])
    with pytest.raises(EmopiaFormatError, match=message.format(clip=re.escape(present[0]))):
        load_emopia(root)


def test_song_in_two_splits_is_a_warning(small_emopia, caplog):
    root, present = small_emopia
    song, train = song_id(present[0]), root / "split" / "emopia_cls" / "train.csv"
    write_rows(train, read_rows(train) + [{"fname": f"Q1_{song}_99", "label": "Q1"}])
    with caplog.at_level(logging.WARNING):
        load_emopia(root)
    assert f"clips of 1 song are in more than one split ({song}: train, test)" in caplog.text


def test_only_the_split_files_asked_for_are_read(small_emopia):
    root, present = small_emopia
    split_dir = root / "split" / "emopia_cls"
    (split_dir / "val.csv").unlink()
    leak = {"fname": present[0], "label": present[0][:2]}
    write_rows(split_dir / "train.csv", read_rows(split_dir / "train.csv") + [leak])
    dataset = load_emopia(root, splits="test")  # a split's name works as a list of one; train.csv (a leak) is not read
    assert list(dataset) == ["test"] and list(dataset["test"]["clip_id"]) == present
    missing = r"The validation split file of EMOPIA's 'emopia_cls' scheme is missing: .*val\.csv"
    with pytest.raises(FileNotFoundError, match=missing):
        load_emopia(root)
    with pytest.raises(EmopiaFormatError, match="train.csv and test.csv"):
        load_emopia(root, splits=["train", "test"])


def test_unreadable_midi_is_reported(small_emopia, caplog):
    root, present = small_emopia
    for clip_id, content in zip(present[1:], (b"", b"not a MIDI file")):
        (root / "midis" / f"{clip_id}.mid").unlink()  # a link to the real file
        (root / "midis" / f"{clip_id}.mid").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        dataset, report = load_emopia(root, splits="test", return_report=True)
    assert list(dataset["test"]["clip_id"]) == present[:1]
    assert report.unreadable_midi["test"] == present[1:] and report.skipped == 3
    assert "3 listed clips left out" in caplog.text
    unreadable = f"2 clips skipped, unreadable MIDI file (empty, or no MThd header): {present[1]}, {present[2]}"
    assert unreadable in caplog.text


def test_csv_files_with_a_byte_order_mark(small_emopia):
    root, present = small_emopia
    for path in (root / "label.csv", root / "split" / "emopia_cls" / "test.csv"):
        write_rows(path, read_rows(path), encoding="utf-8-sig")  # as spreadsheets save CSV
    assert list(load_emopia(root, splits="test")["test"]["clip_id"]) == present


def test_audio_extensions_in_any_case_and_one_file_per_clip(small_emopia, tmp_path):
    root, present = small_emopia
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    for name in (f"{present[0]}.Flac", f"{present[1]}.WAV", f"{present[2]}.txt"):
        (audio_dir / name).touch()  # only the paths are read here
    assert find_audio(audio_dir, present[0]) == str(audio_dir / f"{present[0]}.Flac")
    dataset, report = load_emopia(root, audio_dir=audio_dir, splits="test", return_report=True)
    assert list(dataset["test"]["clip_id"]) == present[:2] and report.missing_audio["test"] == present[2:]
    (audio_dir / f"{present[0]}.mp3").touch()
    message = re.escape(f"holds several audio files for 1 clip: {present[0]} ({present[0]}.Flac, {present[0]}.mp3)")
    with pytest.raises(EmopiaFormatError, match=message):
        find_audio(audio_dir, present[0])
    with pytest.raises(EmopiaFormatError, match=message):
        load_emopia(root, audio_dir=audio_dir, splits="test")
    assert ", ".join(extension[1:] for extension in AUDIO_EXTENSIONS) in " ".join(find_audio.__doc__.split())


def test_midi_extensions_in_any_case(small_emopia):
    root, present = small_emopia
    for clip_id, extension in zip(present[:2], (".MID", ".midi")):
        (root / "midis" / f"{clip_id}.mid").rename(root / "midis" / f"{clip_id}{extension}")
    dataset = load_emopia(root, splits="test")["test"]
    assert list(dataset["clip_id"]) == present
    assert [Path(path).name for path in dataset["midi_path"][:2]] == [f"{present[0]}.MID", f"{present[1]}.midi"]


def test_missing_folder_is_a_clear_error(small_emopia, tmp_path):
    with pytest.raises(FileNotFoundError, match="midis"):
        load_emopia(tmp_path)
    root, _ = small_emopia  # a script's --data given the EMOPIA folder, which it reads as <data>/emopia
    with pytest.raises(FileNotFoundError, match=f"but {re.escape(str(root))} holds one: the scripts' --data names the folder"):
        load_emopia(root / "emopia")


def test_audio_sets_name_their_split():
    from mdpiano.emopia import split_of_audio_set

    names = ["train", "train-0", "train-1", "validation", "validation-unseen", "test-clean", "test-new-piano"]
    assert [split_of_audio_set(n) for n in names] == ["train"] * 3 + ["validation"] * 2 + ["test"] * 2
    with pytest.raises(ValueError, match="Cannot tell the EMOPIA split of audio set 'trainee'"):
        split_of_audio_set("trainee")
