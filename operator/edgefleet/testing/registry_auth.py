"""Authentication of the local registry: basic-auth :class:`Credentials`, the bcrypt
htpasswd line the distribution server accepts, and the ``auth`` section of its
``config.yml`` (bearer tokens from a :class:`~edgefleet.testing.tokenserver.TokenServer`,
or htpasswd). Used by :class:`~edgefleet.testing.registry.LocalRegistry`.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgefleet.testing import tokenserver
from edgefleet.testing.procs import ServiceError
from edgefleet.testing.registry_prereqs import registry_unavailable
from edgefleet.testing.tokenserver import TokenServer

__all__ = ["Credentials", "auth_config", "bcrypt_htpasswd_line"]

_BCRYPT_COST = 5  # test-only secrets; the registry checks the hash on every request


@dataclass(frozen=True)
class Credentials:
    """Basic-auth user name and password."""

    username: str
    password: str

    @property
    def authorization(self) -> str:
        """The value of an ``Authorization: Basic …`` header."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def bcrypt_htpasswd_line(creds: Credentials, cost: int = _BCRYPT_COST) -> str:
    """``user:$2y$…`` for an htpasswd file (the registry accepts bcrypt only).

    Made by ``htpasswd`` from apache2-utils (``hack/system-deps.sh`` installs it);
    the password goes through stdin, never the command line.
    """
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise ServiceError(registry_unavailable(auth=True) or "htpasswd not found")
    done = subprocess.run(
        [htpasswd, "-n", "-i", "-B", "-C", str(cost), creds.username],
        input=creds.password,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith(f"{creds.username}:$2"):
        raise ServiceError(f"htpasswd failed: {done.stderr.strip()}")
    return done.stdout.strip()


def auth_config(
    directory: Path, credentials: Credentials | None, token_server: TokenServer | None
) -> dict[str, object] | None:
    """The ``auth`` section of ``config.yml``: token auth when there is a token
    server, else htpasswd (written to ``directory/htpasswd``) when there are
    credentials, else ``None`` (no auth)."""
    if token_server is not None:
        return {
            "token": {
                "realm": token_server.realm,
                "service": tokenserver.SERVICE,
                "issuer": tokenserver.ISSUER,
                "rootcertbundle": str(token_server.rootcertbundle),
            }
        }
    if credentials is not None:
        htpasswd = directory / "htpasswd"
        htpasswd.write_text(bcrypt_htpasswd_line(credentials) + "\n")
        return {"htpasswd": {"realm": "edgefleet", "path": str(htpasswd)}}
    return None
