#!/usr/bin/env bash
# The README's demo command (`make demo`): sets up what is missing, then runs
# `edgefleet demo` — a local control plane with the example fleet, a TLS registry,
# the operator, and the example model built and signed for amd64 and arm64.
# Extra arguments go to `edgefleet demo` (e.g. --keep, --no-builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
  hack/system-deps.sh          # registry server, mmdebstrap + qemu for the base images
else
  echo "[demo] not root: skipping system packages; image builds run only if they are installed" >&2
fi
hack/venv.sh
hack/tools.sh ensure
exec .venv/bin/edgefleet demo "$@"
