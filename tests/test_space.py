"""The Space folder from scripts/export_space.py, served as a Space runs it: from its own folder, with the package
it holds and without the basic-pitch package."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import pipeline

from mdpiano import DEFAULT_MODEL_DIR
from mdpiano.transcription_mdpiano import default_model_path

REPOSITORY = Path(__file__).resolve().parents[1]
WITHOUT_BASIC_PITCH = (
    "import runpy, sys; sys.modules['basic_pitch'] = None; sys.argv = ['app.py']; runpy.run_path('app.py', run_name='__main__')"
)


def export(output, *extra, env=None):
    return subprocess.run([sys.executable, str(REPOSITORY / "scripts" / "export_space.py"), "--output", str(output), *extra],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space")
    result = export(folder)
    assert result.returncode == 0, result.stderr[-2000:]
    return folder


def test_space_layout(space):
    assert {p.name for p in space.iterdir()} == {"README.md", "LICENSE", "app.py", "mdpiano", "examples", "requirements.txt", "packages.txt"}
    front_matter = yaml.safe_load((space / "README.md").read_text().split("---")[1])
    assert front_matter["sdk"] == "gradio" and front_matter["app_file"] == "app.py"
    # The Space installs gradio from sdk_version: it must be the version the demo is tested with.
    assert front_matter["sdk_version"] == importlib.metadata.version("gradio")
    requirements = (space / "requirements.txt").read_text().splitlines()
    assert requirements[:2] == ["--extra-index-url https://download.pytorch.org/whl/cpu",
                                f"torch=={importlib.metadata.version('torch').split('+')[0]}"]  # fmt: skip
    names = {line.split("==")[0] for line in requirements[2:]}
    assert {"transformers", "onnxruntime", "pretty_midi", "pyfluidsynth"} <= names
    assert not names & {"gradio", "pytest", "hypothesis", "selenium", "basic-pitch"}
    package = space / "mdpiano"
    assert (package / "__init__.py").is_file() and not (package / "app.py").exists()
    model = package / "models" / "mdpiano-emopia"
    for name in ("model.safetensors", "config.json", "processor_config.json"):
        assert (model / name).read_bytes() == (DEFAULT_MODEL_DIR / name).read_bytes()
    assert (model / "basic-pitch" / "nmp.onnx").read_bytes() == Path(default_model_path()).read_bytes()
    assert "Apache License" in (model / "basic-pitch" / "LICENSE").read_text()
    assert sorted(p.name for p in (space / "examples").iterdir()) == sorted(p.name for p in (REPOSITORY / "examples").iterdir())


def test_space_serves_without_basic_pitch(space, serve_app, tmp_path):
    from gradio_client import Client, handle_file

    url = serve_app([sys.executable, "-c", WITHOUT_BASIC_PITCH], space, tmp_path / "space.log")
    example = sorted((space / "examples").glob("*.mp3"))[0]
    label, *_ = Client(url, verbose=False).predict(handle_file(str(example)), None, api_name="/classify")
    served = {c["label"].split()[0]: c["confidence"] for c in label["confidences"]}
    installed = {r["label"]: r["score"] for r in pipeline("audio-classification", model=str(DEFAULT_MODEL_DIR))(str(example))}
    assert served == pytest.approx(installed, abs=1e-5)


def test_export_refusals(space, tmp_path, run_script):
    status, error = run_script("export_space.py", "--output", space)
    assert status == 2 and f"--output {space} exists and is not an empty folder" in error
    status, error = run_script("export_space.py", "--model", tmp_path / "no-such-model", "--output", tmp_path / "unmade")
    assert (status, error) == (1, f"error: --model {tmp_path / 'no-such-model'}: no such folder, and as a Hub id: "
                                  f"{error.split('as a Hub id: ')[-1]}")  # fmt: skip
    assert not (tmp_path / "unmade").exists()  # nothing half-built to block the corrected command
    status, error = run_script("export_space.py", "--output", tmp_path / "space", "--push")
    assert status == 2 and "--push needs --repo-id" in error
    # A closed local port stands for the Hub: no network here.
    result = export(tmp_path / "space", "--push", "--repo-id", "someone/mdpiano-demo",
                    env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_dummy"})  # fmt: skip
    assert result.returncode == 1 and "could not upload to the Hub" in result.stderr
    assert f"hf upload someone/mdpiano-demo {tmp_path / 'space'} . --repo-type space" in result.stderr
    assert (tmp_path / "space" / "app.py").is_file() and (tmp_path / "space" / "LICENSE").is_file()
