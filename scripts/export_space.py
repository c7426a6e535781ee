"""Builds a Hugging Face Space folder for the Gradio demo, and optionally uploads it.

    python scripts/export_space.py --output space/                       # the shipped model
    python scripts/export_space.py --model runs/full/best --output space/
    HF_TOKEN=... python scripts/export_space.py --output space/ --push --repo-id user/mdpiano [--private]
    cd space && python app.py                                             # try it as the Space will run it

The folder is a complete Gradio Space:

    README.md         spaces/README.md (its front matter is the Space's configuration)
    LICENSE           the code's licence (Apache-2.0)
    app.py            the demo
    mdpiano/          the package's module files, with the model as its default model (mdpiano/models/mdpiano-emopia)
                      and, in the model's folder, basic-pitch's ONNX model with its LICENSE and NOTICE (basic-pitch/):
                      a requirements file cannot install the basic-pitch package without its TensorFlow dependency
    examples/         the example clips, preloaded in the demo
    requirements.txt  the runtime pins of requirements.txt and torch's CPU build; no test tools, and no gradio
                      (the Space installs the front matter's sdk_version)
    packages.txt      Debian packages: ffmpeg, FluidSynth and the FluidR3_GM SoundFont (MIDI input is rendered)
"""

import importlib.metadata
import shutil
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mdpiano.checkpoints import DEFAULT_MODEL_DIR, bundle_transcription_model, load_model_or_exit, save_for_package
from mdpiano.hub_upload import build_or_exit, export_arguments, upload_or_exit

REPOSITORY = Path(__file__).resolve().parents[1]
# Left out of the Space's requirements (canonical names): the tests' tools, and gradio, which the Space installs from
# its sdk_version.
NOT_FOR_THE_SPACE = {"pytest", "pytest-timeout", "hypothesis", "selenium", "mir-eval", "gradio"}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEBIAN_PACKAGES = ["ffmpeg", "libfluidsynth3", "fluid-soundfont-gm"]


def space_requirements() -> str:
    """requirements.txt for the Space: torch's CPU build at the version here, then the repository's runtime pins."""
    torch_version = importlib.metadata.version("torch").split("+")[0]
    lines = [f"--extra-index-url {TORCH_CPU_INDEX}", f"torch=={torch_version}"]
    for line in (REPOSITORY / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement and canonicalize_name(Requirement(requirement).name) not in NOT_FOR_THE_SPACE:
            lines.append(requirement)
    return "\n".join(lines) + "\n"


def build_space(model, processor, output) -> Path:
    """The Space folder, in `output` (new or empty), with `model` and `processor` as the demo's default model."""
    output = Path(output)
    package = output / "mdpiano"
    package.mkdir(parents=True, exist_ok=True)
    for module in sorted(REPOSITORY.glob("*.py")):
        shutil.copy(module, output if module.name == "app.py" else package)
    model_folder = package / DEFAULT_MODEL_DIR.relative_to(DEFAULT_MODEL_DIR.parents[1])
    save_for_package(model_folder, model, processor)
    bundle_transcription_model(model_folder)
    shutil.copytree(REPOSITORY / "examples", output / "examples")
    shutil.copy(REPOSITORY / "spaces" / "README.md", output / "README.md")
    shutil.copy(REPOSITORY / "LICENSE", output / "LICENSE")  # the code's; the weights' licence is in the model card
    (output / "requirements.txt").write_text(space_requirements())
    (output / "packages.txt").write_text("\n".join(DEBIAN_PACKAGES) + "\n")
    return output


def main():
    args = export_arguments(__doc__, "Space")
    model, processor = load_model_or_exit(args.model)
    folder = build_or_exit(lambda staging: build_space(model, processor, staging), args.output)
    print(f"built {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    if args.push:
        upload_or_exit(folder, args.repo_id, repo_type="space", private=args.private, space_sdk="gradio")


if __name__ == "__main__":
    main()
