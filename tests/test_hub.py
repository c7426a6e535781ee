import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import pipeline

from mdpiano import MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.checkpoints import save_for_package
from mdpiano.transcription_mdpiano import default_model_path

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tiny_config, tmp_path_factory):
    torch.manual_seed(1)
    model = MDPianoForAudioClassification(tiny_config).eval()
    return save_for_package(tmp_path_factory.mktemp("checkpoint"), model, MDPianoProcessor.from_config(tiny_config))


def export(checkpoint, output, *extra, env=None):
    return subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "export_hub.py"), "--model", str(checkpoint),
                           "--output", str(output), *extra], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_exported_folder_loads_without_the_package_or_basic_pitch(checkpoint, tmp_path, rendered_clip):
    folder = tmp_path / "hub"
    result = export(checkpoint, folder)
    assert result.returncode == 0, result.stderr[-2000:]
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "processor_config.json", "tokenizer_config.json", "vocab.json",
            "README.md", "modeling_mdpiano.py", "pipeline_mdpiano.py", "processing_mdpiano.py"} <= names  # fmt: skip
    card = (folder / "README.md").read_text()
    # Not the shipped model: a card with its licence and metadata, but none of the shipped model's results.
    assert card.startswith("---\nlicense: cc-by-nc-sa-4.0") and "model-index" not in card and "records no evaluation" in card
    assert "confusion_matrix.png" not in names
    assert (folder / "basic-pitch" / "nmp.onnx").read_bytes() == Path(default_model_path()).read_bytes()
    assert "Apache License" in (folder / "basic-pitch" / "LICENSE").read_text()
    config = json.loads((folder / "config.json").read_text())
    assert "AutoModelForAudioClassification" in config["auto_map"] and "audio-classification" in config["custom_pipelines"]
    path, _ = rendered_clip
    installed = pipeline("audio-classification", model=str(checkpoint))(str(path))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["mdpiano"] = sys.modules["basic_pitch"] = None  # the folder carries the transcription model
        sys.path = [p for p in sys.path if p not in ("", {str(REPOSITORY)!r})]
        from transformers import AutoModel, pipeline
        base, info = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True, output_loading_info=True)
        assert type(base).__name__ == "MDPianoModel" and not info["missing_keys"], info
        print(json.dumps(pipeline("audio-classification", model={str(folder)!r}, trust_remote_code=True)({str(path)!r})))
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    remote = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert remote.returncode == 0, remote.stderr[-2000:]
    scores = json.loads(remote.stdout.strip().splitlines()[-1])
    assert [r["label"] for r in scores] == [r["label"] for r in installed]
    np.testing.assert_allclose([r["score"] for r in scores], [r["score"] for r in installed], atol=1e-6)


def test_a_processor_saved_again_keeps_the_folder_transcription_model(checkpoint, tmp_path):
    folder = tmp_path / "hub"
    assert export(checkpoint, folder).returncode == 0
    processor = MDPianoProcessor.from_pretrained(folder)
    assert processor.transcription_model_path == str(folder / "basic-pitch" / "nmp.onnx")
    processor.save_pretrained(tmp_path / "again")
    for name in ("nmp.onnx", "LICENSE", "NOTICE"):
        assert (tmp_path / "again" / "basic-pitch" / name).read_bytes() == (folder / "basic-pitch" / name).read_bytes()
    again = MDPianoProcessor.from_pretrained(tmp_path / "again")
    assert again.transcription_model_path == str(tmp_path / "again" / "basic-pitch" / "nmp.onnx")
    again.save_pretrained(tmp_path / "again")  # onto its own copy: nothing to copy, nothing lost
    assert (tmp_path / "again" / "basic-pitch" / "nmp.onnx").stat().st_size == (folder / "basic-pitch" / "nmp.onnx").stat().st_size


def test_push_without_network_fails_clearly_and_keeps_the_folder(checkpoint, tmp_path):
    folder = tmp_path / "hub"
    # A closed local port stands for the Hub: no network here.
    result = export(checkpoint, folder, "--push", "--repo-id", "someone/mdpiano-test",
                    env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_dummy"})  # fmt: skip
    assert result.returncode == 1
    assert "could not upload to the Hub" in result.stderr and "is complete" in result.stderr
    assert "--delete '*'" in result.stderr  # the later upload removes stale files as this one does
    assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()


def test_push_needs_a_repo_id(checkpoint, tmp_path, run_script):
    status, error = run_script("export_hub.py", "--model", checkpoint, "--output", tmp_path / "hub", "--push")
    assert status == 2 and "--push needs --repo-id" in error and not (tmp_path / "hub").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("not for the Hub")
    status, error = run_script("export_hub.py", "--model", checkpoint, "--output", tmp_path / "used")
    assert status == 2 and "exists and is not an empty folder" in error


def test_a_copy_of_the_shipped_model_exports_its_card_into_the_current_folder(tmp_path):
    """The shipped model is known by its weights, wherever it lies (an installed copy, the repository's folder);
    `--output .` fills the current folder (empty) instead of replacing it."""
    from mdpiano import DEFAULT_MODEL_DIR

    copy = tmp_path / "copy"
    shutil.copytree(DEFAULT_MODEL_DIR, copy, ignore=shutil.ignore_patterns("evaluation"))
    here = tmp_path / "here"
    here.mkdir()
    result = subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "export_hub.py"), "--model", str(copy),
                             "--output", "."], cwd=here, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model-index" in (here / "README.md").read_text() and (here / "confusion_matrix.png").is_file()
    assert (here / "model.safetensors").read_bytes() == (DEFAULT_MODEL_DIR / "model.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "here"]  # no staging folder left
