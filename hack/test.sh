#!/usr/bin/env bash
# The README's test command (`make test`): installs what is missing on a fresh
# machine, then runs lint, the generated-files check and every test tier.
# Extra arguments go to pytest, e.g. `hack/test.sh -k crds`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$SECONDS
step() { printf '\n==> [%4ss] %s\n' "$((SECONDS - start))" "$*"; }

step "system packages and services (Docker engine, OCI registry server, qemu binfmt)"
hack/system-deps.sh
hack/dockerd.sh start

step "Python environment (.venv)"
hack/venv.sh

# The Debian base root filesystems (amd64, and arm64 under qemu) and the pinned tools
# are both slow the first time and cached afterwards; build them side by side.
step "base root filesystems (amd64, arm64) and pinned tools, in parallel (cached after the first run)"
rootfs_log=$(mktemp)
.venv/bin/python -m edgefleet.clients.rootfs_cli build --arch amd64 --arch arm64 >"$rootfs_log" 2>&1 &
rootfs_pid=$!
hack/tools.sh ensure all   # the node and flux sets too: some tests run pods and Flux
if ! wait "$rootfs_pid"; then
  cat "$rootfs_log" >&2; echo "error: building the base root filesystems failed" >&2; exit 1
fi
sed 's/^/  [rootfs] /' "$rootfs_log"; rm -f "$rootfs_log"

step "lint: ruff, mypy --strict, import contracts"
make --no-print-directory lint

step "generated files are current"
make --no-print-directory verify

step "tests: unit, integration, e2e"
.venv/bin/pytest tests "$@"

step "done"
