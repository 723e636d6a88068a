#!/usr/bin/env bash
# Creates .venv with the project and its development dependencies, pinned by
# hack/constraints.txt. Re-running is cheap: it does nothing when up to date.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

py=${PYTHON:-}
if [ -z "$py" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      py=$c; break
    fi
  done
fi
[ -n "$py" ] || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

stamp=.venv/.installed
inputs=(pyproject.toml edge-node/pyproject.toml hack/constraints.txt)
if [ -f "$stamp" ] && [ -z "$(find "${inputs[@]}" -newer "$stamp" 2>/dev/null)" ]; then
  exit 0
fi
echo "[venv] creating .venv with $($py --version)" >&2
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c hack/constraints.txt -e ./edge-node -e '.[dev]'
touch "$stamp"
echo "[venv] ready" >&2
