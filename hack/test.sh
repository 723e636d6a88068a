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

step "pinned tools (etcd, kube-apiserver, kube-controller-manager, kubectl, helm, cosign)"
hack/tools.sh ensure

step "lint: ruff, mypy --strict, import contracts"
make --no-print-directory lint

step "generated files are current"
make --no-print-directory verify

step "tests: unit, integration, e2e"
.venv/bin/pytest tests "$@"

step "done"
