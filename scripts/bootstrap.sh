#!/usr/bin/env bash
# Creates .venv with the pinned dependencies and the project installed (editable).
# Idempotent: does nothing when requirements and setup.py have not changed since last time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
if ! command -v "$PYTHON" >/dev/null; then
  echo "bootstrap: $PYTHON not found; cgrpo_ros needs Python 3.11 (the rclpy wheels are cp311)" >&2
  exit 1
fi
stamp=.venv/.bootstrap-stamp
want=$(cat requirements.txt requirements-dev.txt setup.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet -r requirements-dev.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, rclpy, mujoco, onnxruntime, sklearn, gymnasium, cgrpo_ros" \
  || { echo "bootstrap: the environment is incomplete (see pip's messages above)" >&2; exit 1; }
echo "$want" > "$stamp"
