#!/usr/bin/env bash
# The README's demo command (`make demo`): sets up what is missing, then runs
# `edgefleet demo`, which starts a local control plane and the example fleet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hack/venv.sh
hack/tools.sh ensure
exec .venv/bin/edgefleet demo "$@"
