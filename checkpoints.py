"""Model folders: the default model shipped in the repository, and saving for use with the package installed."""

import importlib.metadata
import json
import re
import shutil
import sys
from pathlib import Path

from .transcription_mdpiano import BUNDLED_MODEL_FILE, default_model_path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "mdpiano-emopia"
CONFIG_FILES = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def load_error_message(flag: str, location: str, error: Exception) -> str:
    """One `error:` line for a model folder (or Hub id) given with `flag` that could not be loaded: transformers'
    first line, after saying when no such local folder exists (a typo would otherwise read as a Hub failure)."""
    missing = "" if Path(location).exists() else "no such folder, and as a Hub id: "
    return f"error: {flag} {location}: {missing}{str(error).splitlines()[0]}"


def check_model_folder_or_exit(flag: str, location: str | Path) -> None:
    """One `error:` line when `location` is a local folder without a `config.json` (a Hub id passes): transformers
    would otherwise build a default config for it and fail on the weights with a message about sizes."""
    folder = Path(location)
    if folder.is_dir() and not (folder / "config.json").is_file():
        is_training_state = (folder / "trainer_state.json").is_file()
        hint = " (a run's training state, for --resume: its model is in best/ beside it)" if is_training_state else ""
        sys.exit(f"error: {flag} {location}: holds no config.json, so it is not a model folder{hint}.")


def load_model_or_exit(location: str | Path, flag: str = "--model", **model_kwargs):
    """
    The classifier and processor of a model folder (or Hub id) given with `flag`, or one `error:` line naming it and
    the loader's reason (no such folder, missing or unreadable weights, invalid config values, weights of other
    sizes) for the scripts, the command line and the demo. Loaded here rather than by `pipeline()`, which would
    bury that reason under an error of its own: pass both to `pipeline(..., model=model, processor=processor)`.
    `model_kwargs` go to the model's `from_pretrained` (e.g. `dtype`).
    """
    from .modeling_mdpiano import MDPianoForAudioClassification
    from .processing_mdpiano import MDPianoProcessor

    check_model_folder_or_exit(flag, location)
    try:
        return MDPianoForAudioClassification.from_pretrained(location, **model_kwargs), MDPianoProcessor.from_pretrained(location)
    except (OSError, ValueError, RuntimeError) as error:
        sys.exit(load_error_message(flag, str(location), error))


def remote_code_files() -> list[Path]:
    """
    The module files that `save_pretrained` copies into a folder so it loads as Hub remote code: the `*_mdpiano.py`
    modules and the package modules they import relatively, directly or not.
    """
    files, pending = set(), list(PACKAGE_DIR.glob("*_mdpiano.py"))
    while pending:
        path = pending.pop()
        if path not in files:
            files.add(path)
            pending += [PACKAGE_DIR / f"{name}.py" for name in re.findall(r"^\s*from \.(\w+) import", path.read_text(), re.M)]
    return sorted(files)


def save_for_package(folder: str | Path, *objects) -> Path:
    """
    Saves configs, processors or models with `save_pretrained` into `folder` for use with mdpiano installed: without
    the module file copies, `auto_map` and custom pipeline entries that make a folder Hub remote code (those copies
    would go stale beside the package's own files).
    """
    folder = Path(folder)
    for obj in objects:
        obj.save_pretrained(folder)
    strip_remote_code(folder)
    return folder


def strip_remote_code(folder: str | Path) -> None:
    """Removes module file copies, `auto_map` and `custom_pipelines` entries from a saved folder."""
    folder = Path(folder)
    for module in remote_code_files():
        (folder / module.name).unlink(missing_ok=True)
    for name in CONFIG_FILES:
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            if _drop_auto_map(data):
                path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _drop_auto_map(data) -> bool:
    changed = False
    if isinstance(data, dict):
        changed = data.pop("auto_map", None) is not None
        changed |= data.pop("custom_pipelines", None) is not None
        for value in data.values():
            changed |= _drop_auto_map(value)
    return changed


def bundle_transcription_model(folder: str | Path) -> Path:
    """
    Copies the installed basic-pitch's ONNX model into a model folder (`basic-pitch/nmp.onnx`, with basic-pitch's
    Apache-2.0 LICENSE and NOTICE beside it); [`MDPianoProcessor.from_pretrained`] on that folder transcribes with it.
    Returns the copy's path.
    """
    target = Path(folder) / BUNDLED_MODEL_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(default_model_path(), target)
    distribution = importlib.metadata.distribution("basic-pitch")
    licences = [f for f in distribution.files or [] if f.name in ("LICENSE", "NOTICE") and ".dist-info" in str(f)]
    if not any(f.name == "LICENSE" for f in licences):
        raise FileNotFoundError("basic-pitch's LICENSE is not in its installed metadata; reinstall basic-pitch.")
    for licence in licences:
        shutil.copy(licence.locate(), target.parent / licence.name)
    return target


__all__ = ["DEFAULT_MODEL_DIR", "bundle_transcription_model", "remote_code_files", "save_for_package", "strip_remote_code"]
