"""Uploading a folder built by `scripts/export_hub.py` (a model) or `scripts/export_space.py` (a Space) to the Hub."""

import os
import sys
from pathlib import Path


def upload_folder(folder: Path, repo_id: str, *, repo_type: str = "model", private: bool = False,
                  space_sdk: str | None = None) -> str:  # fmt: skip
    """
    Creates `repo_id` if it does not exist and uploads `folder` to it as one commit; returns the commit's URL.
    The token comes from `HF_TOKEN` or the `hf auth login` cache.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=os.environ.get("HF_TOKEN"))
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, space_sdk=space_sdk)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                             commit_message=f"Upload mdpiano {repo_type}").commit_url  # fmt: skip


def upload_or_exit(folder: Path, repo_id: str, **kwargs) -> None:
    """[`upload_folder`] for a script: prints the commit URL, or why the upload failed and exits with status 1."""
    try:
        url = upload_folder(folder, repo_id, **kwargs)
    except Exception as error:  # no network, no token, no permission: say so, keep the folder
        print(f"error: could not upload to the Hub ({type(error).__name__}: {error}). The folder {folder} is "
              "complete; upload it later with this command or `hf upload`.", file=sys.stderr)  # fmt: skip
        sys.exit(1)
    print(f"uploaded: {url}")


__all__ = ["upload_folder", "upload_or_exit"]
