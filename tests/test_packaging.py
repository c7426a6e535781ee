"""The wheel that `pip install` builds: every module and the default model inside it, and it classifies on its own."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

from conftest import REPO_ROOT

# Build outputs and environments that a source tree may hold beside its files.
NOT_SOURCE = (".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


def test_wheel_holds_the_package_and_classifies_from_an_install(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("mdpiano-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"mdpiano/{path.name}" for path in REPO_ROOT.glob("*.py")}
    model = {f"mdpiano/models/mdpiano-emopia/{path.name}" for path in (REPO_ROOT / "models" / "mdpiano-emopia").iterdir()
             if path.is_file()}  # not an `evaluation/` folder of reports (git-ignored) beside the weights
    metric = {"mdpiano/metrics/quadrant_metrics/quadrant_metrics.py"}  # loaded by path in evaluation and training
    assert modules <= names and model <= names and metric <= names
    assert not any(name.startswith(("mdpiano/tests/", "mdpiano/scripts/", "mdpiano/.venv/")) for name in names)
    # The weights are CC BY-NC-SA 4.0, as EMOPIA and MAESTRO: the metadata and the licence files say so.
    (metadata_name,) = [name for name in names if name.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(metadata_name).decode()
    assert "License-Expression: Apache-2.0 AND CC-BY-NC-SA-4.0" in metadata
    assert {"LICENSE", "MODEL_LICENSE"} <= {name.rsplit("/", 1)[-1] for name in names if "/licenses/" in name}

    target = tmp_path / "installed"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    example = sorted((REPO_ROOT / "examples").glob("Q1_*"))[0]
    script = (
        "import json, mdpiano\n"
        "from transformers import pipeline\n"
        "classify = pipeline('audio-classification', model=str(mdpiano.DEFAULT_MODEL_DIR))\n"
        "from mdpiano.training import quadrant_metrics\n"
        "accuracy = quadrant_metrics({'probabilities': __import__('numpy').eye(4)}, [0, 1, 2, 3])['accuracy']\n"
        f"print(json.dumps({{'module': mdpiano.__file__, 'labels': classify({str(example)!r}), 'accuracy': accuracy}}))\n"
    )
    # Run away from the source tree, with the installed copy first on the path.
    environment = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, check=True)
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["module"].startswith(str(target)) and output["accuracy"] == 1.0
    assert [label["label"] for label in output["labels"]] and abs(sum(label["score"] for label in output["labels"]) - 1) < 1e-4


def test_source_distribution_holds_the_repository(tmp_path):
    """The sdist can run its own tests and the README's commands: every tracked file but the CI's is in it."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    build = "from setuptools import build_meta; print(build_meta.build_sdist(%r))" % str(tmp_path / "dist")
    name = subprocess.run([sys.executable, "-c", build], cwd=source, capture_output=True, text=True, check=True)
    with tarfile.open(tmp_path / "dist" / name.stdout.strip().splitlines()[-1]) as archive:
        names = {member.split("/", 1)[1] for member in archive.getnames() if "/" in member}
    missing = {path for path in tracked if not path.startswith((".ci/", ".gitignore"))} - names
    assert not missing, sorted(missing)
