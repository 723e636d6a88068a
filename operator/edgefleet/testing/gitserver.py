"""A Git server on loopback: bare repositories served over smart HTTP by
``git http-backend`` (what Flux's source-controller clones from; it accepts only
http(s) and ssh URLs, not file://).

    with GitServer() as git:
        url = git.create("fleet")            # http://127.0.0.1:<port>/fleet.git
        work = git.clone("fleet", tmp_path)  # a working copy to commit and push from
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

__all__ = ["GitServer", "git"]

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "edgefleet tests",
    "GIT_AUTHOR_EMAIL": "tests@edgefleet.invalid",
    "GIT_COMMITTER_NAME": "edgefleet tests",
    "GIT_COMMITTER_EMAIL": "tests@edgefleet.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity and no user or system config."""
    env = {**os.environ, **_GIT_ENV}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


class _Handler(BaseHTTPRequestHandler):
    root: Path

    def _cgi(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "tests",
            "REMOTE_ADDR": self.client_address[0],
            "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").split("\r\n"):
            if not line:
                continue
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _cgi  # noqa: N815 - the names http.server dispatches to
    do_POST = _cgi  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        return None


class GitServer:
    """Bare repositories in a temporary directory, served on ``127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="edgefleet-git-"))
        handler = type("Handler", (_Handler,), {"root": self.dir})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GitServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def create(self, name: str) -> str:
        """A new empty bare repository (default branch ``main``); its URL."""
        bare = self.dir / f"{name}.git"
        git(self.dir, "init", "--bare", "--initial-branch=main", str(bare))
        git(bare, "config", "http.receivepack", "true")
        return f"{self.base_url}/{name}.git"

    def clone(self, name: str, into: Path) -> Path:
        """A working copy of ``name`` at ``into`` (pushes go back over HTTP)."""
        git(into.parent, "clone", "--quiet", f"{self.base_url}/{name}.git", str(into))
        git(into, "checkout", "--quiet", "-B", "main")
        return into
