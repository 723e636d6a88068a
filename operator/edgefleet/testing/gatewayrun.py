"""A real gateway replica in a thread of the test process, against a real API server.

:class:`GatewayReplica` runs :func:`edgefleet.gateway.server.serve` on its own event
loop in a background thread, with the PKI and bootstrap tokens of the control plane
(Secrets in the gateway namespace, made by :mod:`edgefleet.clients.pki` on first start)
and real TLS on a free loopback port. ``stop()`` (or leaving the ``with`` block) shuts
it down the way SIGTERM does. Tests and the rollout suite reuse it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from edgefleet.clients import pki as pki_client
from edgefleet.clients import tokens
from edgefleet.clients.kube import KubeClient
from edgefleet.gateway.config import GatewayConfig, Limits
from edgefleet.gateway.server import Gateway, serve
from edgefleet.testing.procs import free_port

__all__ = ["GatewayReplica", "loopback_config"]


def loopback_config(namespace: str, replica: str = "gw-a", **overrides: Any) -> GatewayConfig:
    """Settings for a loopback test replica (short timeouts so tests stay short; every
    replica of a test run must share the grace period, as replicas of one fleet do)."""
    limits = overrides.pop("limits", Limits(handshake_timeout=3, body_timeout=2, idle_timeout=5))
    return dataclasses.replace(
        GatewayConfig(namespace=namespace),
        host="127.0.0.1",
        port=free_port(),
        names=("localhost", "127.0.0.1"),
        replica=replica,
        lease_seconds=6,
        online_grace=datetime.timedelta(seconds=10),
        pki_reload=3600,
        limits=limits,
        **overrides,
    )


class GatewayReplica:
    def __init__(self, cfg: GatewayConfig, kubeconfig: Path) -> None:
        self.cfg = cfg
        self.kubeconfig = kubeconfig
        self.gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.cfg.port

    def api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def pki(self) -> Any:
        return pki_client.load_or_create(
            self.api(),
            self.cfg.namespace,
            self.cfg.names,
            device_cert_lifetime=self.cfg.cert_lifetime,
        )

    def _main(self) -> None:
        from kubernetes import client

        api = self.api()
        load = functools.partial(
            pki_client.load_or_create,
            api,
            self.cfg.namespace,
            self.cfg.names,
            device_cert_lifetime=self.cfg.cert_lifetime,
        )
        redeem = functools.partial(tokens.redeem, client.CoreV1Api(api), self.cfg.namespace)
        check = functools.partial(tokens.check, client.CoreV1Api(api), self.cfg.namespace)

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def started(gw: Gateway) -> None:
                self.gateway = gw
                self._started.set()

            await serve(
                self.cfg,
                kube=KubeClient.from_environment(str(self.kubeconfig)),
                load_pki=load,
                redeem=redeem,
                check_token=check,
                started=started,
                stop=self._stop,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
        finally:
            self._started.set()

    def start(self, timeout: float = 60.0) -> GatewayReplica:
        self._thread = threading.Thread(target=self._main, name=f"gateway-{self.cfg.replica}")
        self._thread.daemon = True
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the gateway did not start")
        if self._error is not None:
            raise RuntimeError("the gateway failed to start") from self._error
        return self

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the gateway's loop (to read its state safely)."""
        assert self._loop is not None
        future: Any = asyncio.run_coroutine_threadsafe(_wrap(fn), self._loop)
        return future.result(10)

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("the gateway did not stop")
        if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
            raise RuntimeError("the gateway failed") from self._error

    def __enter__(self) -> GatewayReplica:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _wrap(fn: Any) -> Any:
    return fn()
