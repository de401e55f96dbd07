#!/usr/bin/env bash
# Create the virtual environment and install egom2p with its pinned dependencies.
# Idempotent: re-running only installs what changed. Used by `make setup` (and so `make demo` / `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# No system packages: video is encoded and decoded in process (PyAV and decord wheels carry FFmpeg).

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.egom2p-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/lock.txt -nt "$stamp" ]; then
  echo "[setup] installing torch (CPU build) and egom2p"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.13.0
  "$VENV/bin/python" -m pip install -q -e '.[dev]' -c requirements/lock.txt
  # pyvrs (VRS images: HOT3D Quest, ADT depth) declares Python-2-era backports (typing, dataclasses)
  # that the standard library already provides: install it alone, without them.
  "$VENV/bin/python" -m pip install -q --no-deps vrs==1.2.2
  touch "$stamp"
fi
echo "[setup] ready: $VENV ($("$VENV/bin/python" -c 'import egom2p; print("egom2p", egom2p.__version__)'))"
