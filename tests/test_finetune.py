import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mdpiano import MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.emopia import EmopiaFormatError
from mdpiano.labelled_audio import load_labelled_audio

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def user_folder(quadrant_clips, tmp_path_factory):
    """A user's labelled audio: sub-folders named by quadrant or emotion word, two clips each."""
    root = tmp_path_factory.mktemp("user_audio")
    for (quadrant, path, _), folder in zip(quadrant_clips, ["Q1", "tense", "sad", "Q4"]):
        (root / folder).mkdir()
        for copy in range(2):
            (root / folder / f"{path.stem}_{copy}.wav").write_bytes(path.read_bytes())
    return root


def test_folder_and_csv(user_folder, tmp_path, caplog):
    dataset = load_labelled_audio(user_folder)
    assert len(dataset) == 8 and dataset.features["label"].names == ["Q1", "Q2", "Q3", "Q4"]
    assert sorted(dataset["label"]) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all("/" not in clip_id for clip_id in dataset["clip_id"])
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(user_folder.rglob("*.wav"))] + ["nowhere.wav,Q2"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING):
        from_csv = load_labelled_audio(tmp_path / "labels.csv")
    assert len(from_csv) == 8 and "1 listed files are missing" in caplog.text and "nowhere.wav" in caplog.text
    (tmp_path / "bad.csv").write_text("path,label\nx.wav,joyful\n")
    (tmp_path / "x.wav").write_bytes((user_folder / "Q1").iterdir().__next__().read_bytes())
    with pytest.raises(EmopiaFormatError, match="unknown label 'joyful'"):
        load_labelled_audio(tmp_path / "bad.csv")


def test_fine_tune_from_a_hub_folder(user_folder, tiny_config, tmp_path):
    torch.manual_seed(0)
    hub = tmp_path / "hub"
    model = MDPianoForAudioClassification(tiny_config)
    model.save_pretrained(hub)
    MDPianoProcessor.from_config(tiny_config).save_pretrained(hub)
    output = tmp_path / "finetuned"
    command = [sys.executable, str(REPOSITORY / "scripts" / "train.py"), "--init-from", str(hub), "--train-data",
               str(user_folder), "--validation-fraction", "0.5", "--cache-dir", str(tmp_path / "cache"),
               "--output-dir", str(output), "--epochs", "2", "--batch-size", "4", "--num-proc", "1"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 training clips" in result.stdout
    log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2
    tuned = MDPianoForAudioClassification.from_pretrained(output / "best")
    assert tuned.config.d_model == tiny_config.d_model
    changed = [name for name, p in tuned.state_dict().items() if not torch.equal(p, model.state_dict()[name])]
    assert changed  # the weights moved from the Hub folder's
