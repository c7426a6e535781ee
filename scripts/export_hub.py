"""Builds a complete Hugging Face Hub model folder from a checkpoint, and optionally uploads it.

    python scripts/export_hub.py --output hub/mdpiano-emopia                         # the default model
    python scripts/export_hub.py --model runs/full/best --output hub/my-model
    HF_TOKEN=... python scripts/export_hub.py --output hub/mdpiano-emopia --push --repo-id user/mdpiano-emopia [--private]

The folder holds the weights (safetensors), config.json with `auto_map` and the custom audio-classification
pipeline, the processor files (feature extractor, tokenizer, transcription settings), the module files,
basic-pitch's ONNX transcription model with its LICENSE and NOTICE (basic-pitch/), and model_card.md as README.md.
It loads without mdpiano or basic-pitch installed:
`pipeline("audio-classification", model=<folder or repo id>, trust_remote_code=True)`.
"""

import shutil
from pathlib import Path

from mdpiano import MDPianoForAudioClassification, MDPianoProcessor
from mdpiano.checkpoints import bundle_transcription_model
from mdpiano.hub_upload import export_arguments, upload_or_exit

REPOSITORY = Path(__file__).resolve().parents[1]


def build_folder(model_dir, output) -> Path:
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model = MDPianoForAudioClassification.from_pretrained(model_dir)
    model.save_pretrained(output)  # Hub-ready: module files, auto_map, custom pipeline
    MDPianoProcessor.from_pretrained(model_dir).save_pretrained(output)
    bundle_transcription_model(output)  # no basic-pitch package needed where the folder is loaded
    shutil.copy(REPOSITORY / "model_card.md", output / "README.md")
    for figure in ("confusion_matrix.png", "valence_arousal.png"):
        source = REPOSITORY / "results" / "test-unseen" / figure
        if source.is_file():
            shutil.copy(source, output / figure)
    return output


def main():
    args = export_arguments(__doc__, "model")
    folder = build_folder(args.model, args.output)
    print(f"built {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    if args.push:
        upload_or_exit(folder, args.repo_id, repo_type="model", private=args.private)


if __name__ == "__main__":
    main()
