"""The state store: atomic, durable writes that survive SIGKILL at any moment."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet_node.agent import store

_WRITER = """
import sys
from pathlib import Path
from edgefleet_node.agent import store
target = Path(sys.argv[1])
n = 0
while True:
    n += 1
    store.write_json(target, {"n": n, "payload": "x" * (1_000_000 + n)})
    print(n, flush=True)
"""


def test_write_replaces_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    store.write_json(path, {"v": 1})
    store.write_json(path, {"v": 2}, 0o600)
    assert store.read_json(path) == {"v": 2}
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_missing_is_none_and_corrupt_is_an_error(tmp_path: Path) -> None:
    assert store.read_json(tmp_path / "absent.json") is None
    (tmp_path / "bad.json").write_text('{"a": 1, "a": 2}')
    with pytest.raises(store.StoreError, match="duplicate"):
        store.read_json(tmp_path / "bad.json")


def test_ensure_creates_private_dirs_and_sweep_removes_leftovers(tmp_path: Path) -> None:
    state = store.StateDir(tmp_path / "s").ensure()
    (state.root / ".tmp-abc").write_text("half")
    (state.reports / ".tmp-def").write_text("half")
    state.sweep()
    assert not (state.root / ".tmp-abc").exists()
    assert not (state.reports / ".tmp-def").exists()
    assert state.root.stat().st_mode & 0o777 == 0o700


@pytest.mark.timeout(60)
def test_sigkill_during_writes_always_leaves_a_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    rng = random.Random(7)  # noqa: S311 -- reproducible kill points
    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            stop_after = rng.randint(1, 30)
            for line in child.stdout:
                if int(line) >= stop_after:
                    break
            child.send_signal(signal.SIGKILL)  # mid-way through the next write
        finally:
            child.kill()
            child.wait(timeout=10)
            if child.stdout is not None:
                child.stdout.close()
        doc = store.read_json(target)
        assert doc is not None
        assert doc["payload"] == "x" * (1_000_000 + doc["n"])
        store.StateDir(tmp_path).ensure().sweep()  # the sweep removes a half-written temp file
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_one_agent_per_state_directory(tmp_path: Path) -> None:
    state = store.StateDir(tmp_path).ensure()
    fd = state.lock()
    try:
        with pytest.raises(store.StoreError, match="another agent"):
            state.lock()
    finally:
        os.close(fd)
    os.close(state.lock())  # free again once the holder let go
