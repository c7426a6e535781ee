"""Model folders: the default model shipped in the repository, and saving for use with the package installed."""

import json
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "mdpiano-emopia"
CONFIG_FILES = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


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


__all__ = ["DEFAULT_MODEL_DIR", "remote_code_files", "save_for_package", "strip_remote_code"]
