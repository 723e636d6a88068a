"""The registry ``Www-Authenticate`` flow: Basic, and Bearer tokens cached per scope.

A registry answers an unauthenticated request with 401 and a challenge. For
``Basic`` we send the configured credentials from then on; for ``Bearer`` we fetch a
token from the challenge's realm (with ``service`` and ``scope``, authenticating to
the realm with the credentials when we have them) and cache it per scope until it
expires. Credentials and tokens are never logged or put into error messages.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from edgefleet.clients import registry_errors

__all__ = ["Authenticator", "Challenge", "parse_challenge"]

_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')
_MAX_TOKEN_RESPONSE = 1024 * 1024
_DEFAULT_TOKEN_LIFETIME = 60.0
_EXPIRY_SLACK = 10.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class Challenge:
    """A parsed ``Www-Authenticate`` header."""

    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """Parse ``Bearer realm="…",service="…",scope="…"`` (or ``Basic realm="…"``)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): re.sub(r"\\(.)", r"\1", m.group(2))
        if m.group(2) is not None
        else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


class Authenticator:
    """Turns 401 challenges into ``Authorization`` headers; thread-safe."""

    def __init__(self, http: httpx.Client, username: str | None, password: str | None) -> None:
        self._http = http
        self._basic = (
            "Basic " + base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            if username is not None
            else None
        )
        self._use_basic = False
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator(basic={'yes' if self._basic else 'no'}, tokens={len(self._tokens)})"

    def header(self, scopes: Sequence[str]) -> str | None:
        """The ``Authorization`` value to send up front for ``scopes``, if known."""
        with self._lock:
            if self._use_basic:
                return self._basic
            cached = self._tokens.get(" ".join(scopes))
        if cached is not None and cached[1] > time.monotonic():
            return "Bearer " + cached[0]
        return None

    def handle(self, response: httpx.Response, scopes: Sequence[str], operation: str) -> str:
        """The ``Authorization`` value to retry with after a 401 ``response``."""
        header = response.headers.get("www-authenticate")
        if not header:
            raise registry_errors.RegistryAuthError(
                "registry demands authentication but sent no challenge",
                status=401,
                operation=operation,
            )
        challenge = parse_challenge(header)
        if challenge.scheme == "basic":
            if self._basic is None:
                raise registry_errors.RegistryAuthError(
                    "registry requires credentials (Basic) and none were configured",
                    status=401,
                    operation=operation,
                )
            with self._lock:
                self._use_basic = True
            return self._basic
        if challenge.scheme != "bearer":
            raise registry_errors.RegistryAuthError(
                f"unsupported authentication scheme {challenge.scheme!r}",
                status=401,
                operation=operation,
            )
        wanted = list(scopes)
        wanted += [s for s in challenge.params.get("scope", "").split() if s not in wanted]
        token, lifetime = self._fetch_token(challenge, wanted, operation)
        with self._lock:
            self._tokens[" ".join(scopes)] = (token, time.monotonic() + lifetime - _EXPIRY_SLACK)
        return "Bearer " + token

    def _fetch_token(
        self, challenge: Challenge, scopes: list[str], operation: str
    ) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise registry_errors.RegistryAuthError(
                "Bearer challenge has no realm", status=401, operation=operation
            )
        url = httpx.URL(realm)
        if url.scheme != "https" and not (url.scheme == "http" and url.host in _LOOPBACK_HOSTS):
            raise registry_errors.RegistryAuthError(
                f"token realm {realm!r} is not https; refusing to send credentials there",
                operation=operation,
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in scopes]
        headers = {"Authorization": self._basic} if self._basic else {}
        what = f"token request to {url.host}"
        try:
            with self._http.stream("GET", url, params=params, headers=headers) as resp:
                body = b""
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_TOKEN_RESPONSE:
                        raise registry_errors.RegistryAuthError(
                            "token response is too large", operation=what
                        )
        except httpx.HTTPError as exc:
            raise registry_errors.RegistryAuthError(
                f"token request failed: {type(exc).__name__}", operation=what
            ) from exc
        if resp.status_code != 200:
            raise registry_errors.RegistryAuthError(
                "token service refused the request", status=resp.status_code, operation=what
            )
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise registry_errors.RegistryAuthError(
                "token response is not JSON", operation=what
            ) from exc
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise registry_errors.RegistryAuthError("token response has no token", operation=what)
        expires = doc.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 0.0
        return token, max(lifetime, _DEFAULT_TOKEN_LIFETIME)
