#!/usr/bin/env bash
# Installs mdpiano and everything it needs on a fresh Debian machine (run as root, Python 3.11).
# Idempotent: a second run with unchanged requirements only checks and returns in seconds.
#
#   bash scripts/install.sh            # venv in ./.venv
#   MDPIANO_VENV=/opt/mdpiano bash scripts/install.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MDPIANO_VENV:-$repo/.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

# ffmpeg decodes audio; FluidSynth and the SoundFonts render MIDI, and so do TiMidity++ and FreePats' piano (the test
# piano, not a SoundFont); Chromium drives the demo's browser test.
apt_packages=(ffmpeg libfluidsynth3 fluid-soundfont-gm musescore-general-soundfont-small fluidr3mono-gm-soundfont
  timidity freepats chromium chromium-driver)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[install] apt packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "[install] need root to install ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "[install] creating venv at $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

# Everything below is skipped when the inputs that shape the venv have not changed.
stamp="$venv/.mdpiano-install-stamp"
digest=$(cat "$repo/requirements.txt" "$repo/pyproject.toml" "$repo/scripts/install.sh" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
  echo "[install] up to date ($venv)"
  exit 0
fi

# torch first and pinned, from PyTorch's CPU index: PyPI's Linux torch wheels pull in CUDA (several GB), and so
# would an unpinned torch pulled in by another package. MDPIANO_TORCH_INDEX= (empty) uses pip's own indexes.
torch_index=${MDPIANO_TORCH_INDEX-https://download.pytorch.org/whl/cpu}
torch_source=()
if [ -n "$torch_index" ] && "$venv/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" \
    "$torch_index/torch/" >/dev/null 2>&1; then
  torch_source=(--index-url "$torch_index")
elif [ -n "$torch_index" ]; then
  echo "[install] $torch_index cannot be reached: torch from pip's configured indexes (on PyPI, a CUDA build)"
fi
echo "[install] torch"
"${pip[@]}" install "${torch_source[@]}" torch==2.13.0
echo "[install] pinned requirements"
"${pip[@]}" install -r "$repo/requirements.txt" torch==2.13.0
# basic-pitch's own requirements force TensorFlow and numpy<2; mdpiano uses only its bundled ONNX model.
echo "[install] basic-pitch (no deps)"
"${pip[@]}" install --no-deps basic-pitch==0.4.0
echo "[install] mdpiano (editable)"
"${pip[@]}" install --no-deps -e "$repo"

echo "$digest" > "$stamp"
echo "[install] done: source $venv/bin/activate"
