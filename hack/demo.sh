#!/usr/bin/env bash
# The README's demo command (`make demo`): sets up what is missing, then runs
# `edgefleet demo` — a local control plane, a TLS registry, the operator, the gateway,
# three devices as containers running the real agent (two amd64, one arm64 under qemu),
# a live canary rollout, an inference answered by a device, and a broken version that
# aborts and rolls back by itself.
# Extra arguments go to `edgefleet demo` (e.g. --keep, --no-builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
  hack/system-deps.sh          # registry server, mmdebstrap + qemu for the base images
else
  echo "[demo] not root: skipping system packages; image builds run only if they are installed" >&2
fi
hack/venv.sh
hack/tools.sh ensure etcd kubernetes   # only what the demo runs (not helm, cosign, node, flux)
exec .venv/bin/edgefleet demo "$@"
