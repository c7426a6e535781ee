"""The wheel that `pip install` builds: every module and the default model inside it, and it classifies on its own."""

import json
import os
import shutil
import subprocess
import sys
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
    model = {f"mdpiano/models/mdpiano-emopia/{path.name}" for path in (REPO_ROOT / "models" / "mdpiano-emopia").iterdir()}
    assert modules <= names and model <= names
    assert not any(name.startswith(("mdpiano/tests/", "mdpiano/scripts/", "mdpiano/.venv/")) for name in names)

    target = tmp_path / "installed"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    example = sorted((REPO_ROOT / "examples").glob("Q1_*"))[0]
    script = (
        "import json, mdpiano\n"
        "from transformers import pipeline\n"
        "classify = pipeline('audio-classification', model=str(mdpiano.DEFAULT_MODEL_DIR))\n"
        f"print(json.dumps({{'module': mdpiano.__file__, 'labels': classify({str(example)!r})}}))\n"
    )
    # Run away from the source tree, with the installed copy first on the path.
    environment = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, check=True)
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["module"].startswith(str(target))
    assert [label["label"] for label in output["labels"]] and abs(sum(label["score"] for label in output["labels"]) - 1) < 1e-4
