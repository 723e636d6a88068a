"""Shared pieces of the agent unit tests: an enrolled state dir against the stand-in
gateway, an agent running in a thread, and waiting on conditions with a deadline; the
``gw`` and ``state`` fixtures (registered for tests/unit by its conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from edgefleet_node.agent import activate, cli, store
from edgefleet_node.agent import config as cfg
from edgefleet_node.agent.clock import Clock
from edgefleet_node.agent.loop import Agent, LoopSettings
from edgefleet_node.agent.simulated import Behaviour, SimulatedRuntime
from edgefleet_node.protocol import enroll
from tests.unit.agent_gateway_fake import FakeGateway

T = TypeVar("T")

FAST = LoopSettings(
    poll_wait=2,
    report_interval=0.3,
    backoff_base=0.05,
    backoff_cap=0.3,
    failed_retry=60.0,
    activation=activate.Settings(stall_timeout=2.0, probe_timeout=2.0, disk_reserve=0),
)


def wait_for(what: str, check: Callable[[], T], timeout: float = 6.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.02)


def enrolled(gw: FakeGateway, root: Path) -> store.StateDir:
    conf = cfg.Config(state_dir=root, platform="linux/amd64")
    cli.enroll_device(conf, gw.url, enroll.BootstrapToken.parse(gw.token()))
    return store.StateDir(root)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[FakeGateway]:
    """The gateway stand-in, serving on loopback for one test."""
    with FakeGateway(tmp_path) as gateway:
        yield gateway


@pytest.fixture
def state(gw: FakeGateway, tmp_path: Path) -> store.StateDir:
    """A state dir enrolled against ``gw``."""
    return enrolled(gw, tmp_path / "state")


@contextmanager
def running_agent(
    state: store.StateDir,
    runtime: SimulatedRuntime | None = None,
    settings: LoopSettings = FAST,
    clock: Clock | None = None,
) -> Iterator[Agent]:
    agent = Agent(state, runtime or SimulatedRuntime(Behaviour()), settings, clock)
    thread = threading.Thread(target=agent.run, name="agent", daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the agent did not stop"
