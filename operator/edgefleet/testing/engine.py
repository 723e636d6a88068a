"""The local Docker engine for tests and the demo, and loading our images into it.

The engine is Debian's ``docker.io`` (dockerd 20.10) started by ``hack/dockerd.sh``
with host networking only, so every container runs with ``--network host`` and
local images are referred to by ID (a name the engine does not know makes it ask a
public registry). :func:`ensure_engine` reuses an engine that already answers and
otherwise starts one (as root), remembering to stop only what it started.

``docker import`` cannot set an image's architecture on this engine (20.10 takes
only the OS from ``--platform``; the image says amd64 whatever the client asks), so
:func:`load_image` writes a ``docker load`` archive from a config and layers built
by :mod:`edgefleet.domain.oci`, whose config carries the platform; the image ID is
then the config digest, the same on every run.

Fixture factory (a plain generator; raises :class:`unittest.SkipTest`, which pytest
reports as a skip, only when no engine can be had)::

    docker_engine = pytest.fixture(docker_engine_fixture, name="docker_engine", scope="session")
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import unittest
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet.domain import oci

__all__ = [
    "Engine",
    "EngineError",
    "docker_engine_fixture",
    "engine_unavailable",
    "ensure_engine",
    "find_client",
    "load_image",
]

_DEBIAN_CLIENT = "/usr/bin/docker"  # matches the engine's API version


class EngineError(RuntimeError):
    """The Docker engine is missing, did not start, or refused a command."""


def find_client() -> str | None:
    """``$EDGEFLEET_DOCKER``, Debian's ``/usr/bin/docker``, or ``docker`` on PATH."""
    configured = os.environ.get("EDGEFLEET_DOCKER")
    if configured:
        return configured
    if Path(_DEBIAN_CLIENT).is_file():
        return _DEBIAN_CLIENT
    return shutil.which("docker")


def _dockerd_script() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        script = parent / "hack" / "dockerd.sh"
        if script.is_file():
            return script
    return None


@dataclass
class Engine:
    """A Docker engine that answers, and the client to talk to it."""

    client: str
    started: bool = False  # True when ensure_engine started it (stop() will stop it)

    def docker(
        self, *args: str, timeout: float = 120.0, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one client command; raise :class:`EngineError` with its stderr on failure."""
        try:
            done = subprocess.run(
                [self.client, *args], capture_output=True, input=stdin, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"docker {' '.join(args)} took longer than {timeout:.0f}s") from exc
        if done.returncode != 0:
            raise EngineError(
                f"docker {' '.join(args)} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done

    def answers(self) -> bool:
        try:
            self.docker("version", "--format", "{{.Server.Version}}", timeout=15)
        except EngineError:
            return False
        return True

    def server_version(self) -> str:
        out = self.docker("version", "--format", "{{.Server.Version}}", timeout=15).stdout
        return out.decode().strip()

    def remove_image(self, image_id: str) -> None:
        """Remove an image by ID (missing is fine)."""
        done = subprocess.run(
            [self.client, "image", "rm", "--force", image_id],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0 and b"No such image" not in done.stderr:
            raise EngineError(f"cannot remove image {image_id}: {done.stderr.decode().strip()}")

    def stop(self) -> None:
        """Stop the engine if :func:`ensure_engine` started it; idempotent."""
        script = _dockerd_script()
        if self.started and script is not None:
            subprocess.run([str(script), "stop"], check=False, timeout=120)
            self.started = False


def engine_unavailable() -> str | None:
    """Why no engine can be used here, or ``None`` (for ``pytest.skip``)."""
    client = find_client()
    if client is None:
        return "no docker client: install docker.io (hack/system-deps.sh)"
    if Engine(client).answers():
        return None
    if shutil.which("dockerd") is None:
        return "no Docker engine answers and dockerd is not installed: run hack/system-deps.sh"
    if os.geteuid() != 0:
        return "no Docker engine answers and starting dockerd needs root (hack/dockerd.sh start)"
    if _dockerd_script() is None:
        return "no Docker engine answers and hack/dockerd.sh is not in this checkout"
    return None


def ensure_engine() -> Engine:
    """An engine that answers: the running one, or one started by ``hack/dockerd.sh``."""
    why = engine_unavailable()
    if why is not None:
        raise EngineError(why)
    client = find_client()
    assert client is not None
    engine = Engine(client)
    if engine.answers():
        return engine
    script = _dockerd_script()
    assert script is not None
    done = subprocess.run(
        [str(script), "start"], capture_output=True, text=True, timeout=180, check=False
    )
    engine.started = True
    if done.returncode != 0 or not engine.answers():
        engine.stop()
        raise EngineError(f"hack/dockerd.sh start failed:\n{done.stderr.strip()}")
    return engine


def docker_engine_fixture() -> Iterator[Engine]:
    """The engine for one fixture scope; stops it afterwards only if it started it."""
    if (why := engine_unavailable()) is not None:
        raise unittest.SkipTest(why)
    engine = ensure_engine()
    try:
        yield engine
    finally:
        engine.stop()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def load_image(engine: Engine, config: oci.Blob, layers: Sequence[oci.Layer]) -> str:
    """``docker load`` an image given as config + layers; return its ID (the config digest).

    The archive is Docker's ``docker save`` format (``manifest.json``, the config, one
    file per layer); the engine decompresses gzip layers and checks each against the
    config's diff IDs.
    """
    parsed = oci.parse_config(config.data, config.digest)
    if list(parsed.diff_ids) != [layer.diff_id for layer in layers]:
        raise EngineError("the config's diff IDs do not match the layers given")
    config_name = config.digest.removeprefix("sha256:") + ".json"
    layer_names = [layer.blob.digest.removeprefix("sha256:") + "/layer.tar" for layer in layers]
    manifest = [{"Config": config_name, "RepoTags": None, "Layers": layer_names}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, config_name, config.data)
        for name, layer in zip(layer_names, layers, strict=True):
            _add(tar, name, layer.blob.data)
    engine.docker("load", "--quiet", stdin=buf.getvalue(), timeout=600)
    image_id = config.digest
    inspect = (
        engine.docker("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image_id)
        .stdout.decode()
        .strip()
    )
    wanted = f"{parsed.platform.os}/{parsed.platform.architecture}"
    if inspect != wanted:
        raise EngineError(f"loaded image {image_id} says {inspect}, not {wanted}")
    return image_id
