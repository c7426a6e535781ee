"""Builds a complete Hugging Face Hub model folder from a checkpoint, and optionally uploads it.

    python scripts/export_hub.py --output hub/mdpiano-emopia                         # the default model
    python scripts/export_hub.py --model runs/full/best --output hub/my-model
    HF_TOKEN=... python scripts/export_hub.py --output hub/mdpiano-emopia --push --repo-id user/mdpiano-emopia [--private]

The folder holds the weights (safetensors), config.json with `auto_map` and the custom audio-classification
pipeline, the processor files (feature extractor, tokenizer, transcription settings), the module files with their
licence (LICENSE-code, Apache-2.0; the weights' licence is the card's), basic-pitch's ONNX transcription model with
its LICENSE and NOTICE (basic-pitch/), and model_card.md as README.md (for another checkpoint, a card without the
shipped model's results). The folder is built beside --output and moved there once complete.
It loads without mdpiano or basic-pitch installed:
`pipeline("audio-classification", model=<folder or repo id>, trust_remote_code=True)`.
"""

import filecmp
import shutil
from pathlib import Path

from mdpiano.augmentation import ACCEPTANCE_SET
from mdpiano.checkpoints import DEFAULT_MODEL_DIR, bundle_transcription_model, load_model_or_exit
from mdpiano.hub_upload import build_or_exit, export_arguments, upload_or_exit

REPOSITORY = Path(__file__).resolve().parents[1]


def is_shipped_model(folder) -> bool:
    """Whether `folder` holds the shipped model: its weights and configuration, byte for byte (the repository's
    folder, an installed package's copy, or a copy of either)."""
    return all(
        (Path(folder) / name).is_file() and filecmp.cmp(Path(folder) / name, DEFAULT_MODEL_DIR / name, shallow=False)
        for name in ("model.safetensors", "config.json")
    )


def model_card(model, is_default: bool) -> str:
    """The shipped model's card (model_card.md, with its measured results); for any other checkpoint a card that
    claims no results, since the shipped model's figures say nothing about it."""
    card = (REPOSITORY / "model_card.md").read_text()
    if is_default:
        return card
    front_matter = card.split("---\n")[1].split("# model-index:begin")[0]
    return (
        f"---\n{front_matter}---\n\n# {Path(model.name_or_path).name}\n\n"
        "An mdpiano model (piano music emotion quadrants Q1-Q4 from audio: acoustic features and a basic-pitch "
        "transcription fused by cross-domain attention). Load it with\n"
        '`pipeline("audio-classification", model=<this repo>, trust_remote_code=True)`.\n\n'
        "This card records no evaluation: measure one with mdpiano's `scripts/evaluate.py` on labelled audio. "
        f"Its configuration: domains={model.config.domains}, window {model.config.chunk_length_s:g} s, "
        f"quadrant_logit_bias={model.config.quadrant_logit_bias}.\n"
    )


def build_folder(model, processor, output, is_default: bool) -> Path:
    """The Hub folder, in `output` (new or empty); the test figures go with the shipped model's card only."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)  # Hub-ready: module files, auto_map, custom pipeline
    processor.save_pretrained(output)
    bundle_transcription_model(output)  # no basic-pitch package needed where the folder is loaded
    shutil.copy(REPOSITORY / "LICENSE", output / "LICENSE-code")  # the module files'; the weights' is the card's
    (output / "README.md").write_text(model_card(model, is_default))
    for figure in ("confusion_matrix.png", "valence_arousal.png") if is_default else ():
        source = REPOSITORY / "results" / ACCEPTANCE_SET / figure
        if source.is_file():
            shutil.copy(source, output / figure)
    return output


def main():
    args = export_arguments(__doc__, "model")
    model, processor = load_model_or_exit(args.model)
    is_default = is_shipped_model(args.model)
    folder = build_or_exit(lambda staging: build_folder(model, processor, staging, is_default), args.output)
    print(f"built {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    if args.push:
        upload_or_exit(folder, args.repo_id, repo_type="model", private=args.private)


if __name__ == "__main__":
    main()
