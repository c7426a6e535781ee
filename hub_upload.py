"""
The command line of `scripts/export_hub.py` (a model folder) and `scripts/export_space.py` (a Space folder), and
uploading what they build to the Hub.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from .checkpoints import DEFAULT_MODEL_DIR


def export_arguments(description: str, repo_kind: str) -> argparse.Namespace:
    """The export scripts' command line: `--model`, `--output`, and `--push --repo-id [--private]` to upload."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--output", required=True, help="folder to build")
    parser.add_argument("--push", action="store_true", help=f"upload as a {repo_kind} (token from HF_TOKEN or the CLI login)")
    parser.add_argument("--repo-id", help=f"user/name of the {repo_kind} (with --push)")
    parser.add_argument("--private", action="store_true")
    args = parser.parse_args()
    if args.push and not args.repo_id:
        parser.error("--push needs --repo-id")
    output = Path(args.output)
    if output.exists() and not (output.is_dir() and not any(output.iterdir())):
        parser.error(f"--output {output} exists and is not an empty folder: give a new or empty one (the folder is "
                     "uploaded whole, so nothing else may be in it).")  # fmt: skip
    return args


def build_or_exit(build, output) -> Path:
    """
    Runs `build(folder)` in a fresh folder beside `output` (new or empty) and moves it there once complete; when
    something it needs is missing (basic-pitch, its licence), one `error:` line and no half-built folder.
    """
    output = Path(output).resolve()  # `.` or `dir/..` name the folder they resolve to
    staging = output.with_name(f".{output.name}.building")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    staging.mkdir(parents=True)
    try:
        build(staging)
    except (FileNotFoundError, ImportError) as error:  # ImportError: basic-pitch is not installed
        shutil.rmtree(staging)
        sys.exit(f"error: {error}")
    except BaseException:
        shutil.rmtree(staging)
        raise
    if output.exists():  # empty (export_arguments refuses any other): filled, not replaced, as it may be a shell's cwd
        for item in staging.iterdir():
            item.rename(output / item.name)
        staging.rmdir()
    else:
        staging.rename(output)
    return output


def upload_folder(folder: Path, repo_id: str, *, repo_type: str = "model", private: bool = False,
                  space_sdk: str | None = None) -> str:  # fmt: skip
    """
    Creates `repo_id` if it does not exist and uploads `folder` to it as one commit, which also deletes the files the
    repository holds and the folder does not (an earlier export's figures or modules); returns the commit's URL.
    The token comes from `HF_TOKEN` or the `hf auth login` cache.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN"))
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, space_sdk=space_sdk)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, delete_patterns="*",
                             commit_message=f"Upload mdpiano {repo_type}").commit_url  # fmt: skip


def upload_or_exit(folder: Path, repo_id: str, **kwargs) -> None:
    """[`upload_folder`] for a script: prints the commit URL, or why the upload failed and exits with status 1."""
    try:
        url = upload_folder(folder, repo_id, **kwargs)
    except Exception as error:  # no network, no token, no permission: say so, keep the folder
        command = f"hf upload {repo_id} {folder} . --repo-type {kwargs.get('repo_type', 'model')} --delete '*'"
        print(f"error: could not upload to the Hub ({type(error).__name__}: {error}). The folder {folder} is "
              f"complete; upload it later with `{command}` (which, as this upload would have, removes the files the "
              "repository holds and the folder does not).", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    print(f"uploaded: {url}")


__all__ = ["build_or_exit", "export_arguments", "upload_folder", "upload_or_exit"]
