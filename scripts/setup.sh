#!/usr/bin/env bash
# Create the virtual environment and install egom2p with its pinned dependencies.
# Idempotent: re-running only installs what changed. Used by `make setup` (and so `make demo` / `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

# Video is encoded and decoded in process (PyAV and decord wheels carry FFmpeg). The one system library
# needed is libusb-1.0, which open3d's native module links against (the renderer's meshes): a bare
# Debian machine lacks it, and `import open3d` then fails with "libusb-1.0.so.0: cannot open shared object".
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing libusb-1.0-0 (Debian) for open3d"
    apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "[setup] warning: libusb-1.0.so.0 not found; install libusb-1.0-0 (open3d needs it)" >&2
  fi
fi

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
# The tests' S3-compatible server (moto's standalone server) lives in its own folder: moto[server]
# pulls antlr4-python3-runtime 4.13, which breaks hydra-core/omegaconf (antlr 4.9) in the project venv.
S3_DIR=${S3_DIR:-.venv-s3}
if [ ! -f "$S3_DIR/.moto-5.2.5" ]; then
  echo "[setup] installing the test S3 server (moto[server]==5.2.5) into $S3_DIR"
  "$VENV/bin/python" -m pip install -q --target "$S3_DIR" 'moto[server]==5.2.5' 2>&1 | grep -v "dependency resolver\|antlr4-python3-runtime" || true
  "$VENV/bin/python" -c "import sys; sys.path.insert(0, '$S3_DIR'); import moto.server" && touch "$S3_DIR/.moto-5.2.5"
fi
echo "[setup] ready: $VENV ($("$VENV/bin/python" -c 'import egom2p; print("egom2p", egom2p.__version__)'))"
