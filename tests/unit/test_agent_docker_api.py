"""The agent's standard-library Docker Engine API client, against a small stand-in
engine on a unix socket: version negotiation, chunked image upload, load errors,
404s, framed logs, ``DOCKER_HOST``. (The real engines: tests/integration.)"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet_node.agent import docker_api
from edgefleet_node.agent.docker_api import DockerAPI, DockerAPIError, NotFoundError


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    api_version = "1.43"
    requests: list[tuple[str, str, bytes]]
    load_answer = b'{"stream":"Loaded image ID: sha256:ab\\n"}\r\n'


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Engine

    def address_string(self) -> str:  # a unix socket has no peer address
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = bytearray()
            while size := int(self.rfile.readline().strip(), 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return bytes(data)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        self.server.requests.append((self.command, self.path, body))
        path = self.path.split("?")[0]
        if path == "/version":
            self._answer(200, json.dumps({"ApiVersion": self.server.api_version}).encode())
        elif path.endswith("/images/load"):
            self._answer(200, self.server.load_answer)
        elif path.endswith("/logs"):
            framed = b"\x01\0\0\0\0\0\0\x06hello\n" + b"\x02\0\0\0\0\0\0\x05oops\n"
            self._answer(200, framed)
        elif path.endswith("/containers/create"):
            self._answer(201, b'{"Id":"c0ffee","Warnings":[]}')
        else:
            self._answer(404, b'{"message":"No such container: nope"}')

    do_GET = do_POST = do_DELETE = _handle  # noqa: N815 (http.server's names)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[_Engine]:
    server = _Engine(str(tmp_path / "engine.sock"), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_version_is_negotiated_and_requests_carry_it(engine: _Engine) -> None:
    api = DockerAPI(engine.server_address, timeout=5)  # type: ignore[arg-type]
    assert api.create("x", {"Image": "sha256:ab"}) == "c0ffee"
    method, path, body = engine.requests[-1]
    assert (method, path) == ("POST", "/v1.41/containers/create?name=x")
    assert json.loads(body) == {"Image": "sha256:ab"}
    engine.api_version = "1.40"  # an older engine: its own version
    assert DockerAPI(engine.server_address, timeout=5)._prefix == "/v1.40"  # type: ignore[arg-type]


def test_an_image_archive_is_uploaded_in_chunks_intact(engine: _Engine) -> None:
    api = DockerAPI(engine.server_address, timeout=5)  # type: ignore[arg-type]
    parts = [b"a" * 70000, b"", b"b" * 3, b"c" * 100000]
    messages = api.load(iter(parts))
    assert messages == [{"stream": "Loaded image ID: sha256:ab\n"}]
    method, path, body = engine.requests[-1]
    assert (method, path) == ("POST", "/v1.41/images/load?quiet=1")
    assert body == b"".join(parts)


def test_a_load_the_engine_refuses_raises(engine: _Engine) -> None:
    engine.load_answer = b'{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}'
    api = DockerAPI(engine.server_address, timeout=5)  # type: ignore[arg-type]
    with pytest.raises(DockerAPIError, match="unexpected EOF"):
        api.load(iter([b"tar"]))


def test_not_found_is_its_own_error_with_the_engine_message(engine: _Engine) -> None:
    api = DockerAPI(engine.server_address, timeout=5)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="No such container: nope") as err:
        api.inspect("nope")
    assert err.value.status == 404


def test_logs_are_demultiplexed(engine: _Engine) -> None:
    api = DockerAPI(engine.server_address, timeout=5)  # type: ignore[arg-type]
    assert api.logs("c0ffee", 5) == b"hello\noops\n"
    assert engine.requests[-1][1] == "/v1.41/containers/c0ffee/logs?stdout=1&stderr=1&tail=5"


def test_docker_host_names_a_unix_socket_only() -> None:
    assert docker_api.socket_path({}) == "/var/run/docker.sock"
    assert docker_api.socket_path({"DOCKER_HOST": "unix:///run/podman/podman.sock"}) == (
        "/run/podman/podman.sock"
    )
    for bad in ("tcp://10.0.0.1:2375", "unix://relative.sock", "/var/run/docker.sock"):
        with pytest.raises(ValueError, match="only unix"):
            docker_api.socket_path({"DOCKER_HOST": bad})


def test_no_engine_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefleet_node.agent.docker_runtime import DockerRuntime
    from edgefleet_node.agent.runtime import RuntimeFailure

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    with pytest.raises(RuntimeFailure, match="no Docker engine answers") as err:
        DockerRuntime()
    assert err.value.reason == "DockerUnavailable"
