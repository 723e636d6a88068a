"""e2e fixtures: the whole control plane — API server, registry, base images — and the
operator as its own process, the way it runs in a cluster."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.testing.procs import Service, wait_until
from tests.conftest import BASE_REPO, BASE_TAG

OPERATOR_NS = "edgefleet-system"


class OperatorProcess:
    """``edgefleet operator`` in a child process; restartable, always stopped."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.service: Service | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.service = Service(
            "operator",
            [sys.executable, "-m", "edgefleet.cli", "--json-logs", "operator"],
            self.log_dir / f"operator-{self.starts}.log",
            env=self.env,
        )
        wait_until(
            lambda: "operator starting" in self.service.log_tail(200),
            timeout=60,
            what="operator start-up",
            alive=self.service.check_alive,
        )

    def kill(self) -> None:
        """Kill without warning, as a node failure would."""
        if self.service is not None:
            self.service.process.kill()
            self.service.stop()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def log(self) -> str:
        return "\n".join(
            (self.log_dir / f"operator-{i}.log").read_text(errors="replace")
            for i in range(1, self.starts + 1)
        )


@pytest.fixture(scope="module")
def operator_env(crds, registry, base_index, tmp_path_factory) -> dict[str, str]:
    crds.kubectl("create", "namespace", OPERATOR_NS, check=False)
    cache = tmp_path_factory.mktemp("operator-cache")
    shared = Path.home() / ".cache" / "edgefleet" / "test-builder"
    # Reuse the downloaded wheels and built runtime layers; models and keys stay fresh.
    for sub in ("wheels", "runtime-layers"):
        (shared / sub).mkdir(parents=True, exist_ok=True)
        (cache / sub).symlink_to(shared / sub)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")},
        "KUBECONFIG": str(crds.kubeconfig),
        "EDGEFLEET_NAMESPACE": OPERATOR_NS,
        "EDGEFLEET_REGISTRY_URL": registry.url,
        "EDGEFLEET_REGISTRY_CA": str(registry.ca_path),
        "EDGEFLEET_BASE_REPOSITORY": BASE_REPO,
        "EDGEFLEET_BASE_REFERENCE": BASE_TAG,
        "EDGEFLEET_CACHE_DIR": str(cache),
    }


@pytest.fixture
def operator(operator_env, tmp_path) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(operator_env, tmp_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def env(crds, registry) -> dict[str, str]:
    """The environment of an operator running only the rollout controller (the rollout
    tests start it themselves, with ``rollout_helpers.operator_process``)."""
    from tests.e2e import rollout_helpers

    return rollout_helpers.rollout_env(crds, registry)


@pytest.fixture
def api(crds):
    """A ``CustomObjectsApi`` on the test API server."""
    from tests.e2e import rollout_helpers

    return rollout_helpers.objects(crds)
