"""Operator start-up: read configuration, build the clients once, run kopf.

Clients are made here and passed to the reconcilers; nothing is a module global.
Configuration comes from ``EDGEFLEET_*`` environment variables (the Helm chart sets
them); secrets come from files or Secrets, never from arguments, and are never logged.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import kopf
import structlog
from kubernetes import client, config

from edgefleet.clients.imagebuilder import BuilderSettings, ImageBuilder
from edgefleet.clients.leaderelection import ElectionSettings, LeaderElector
from edgefleet.clients.registry import RegistryClient
from edgefleet.clients.rolloutapi import RolloutApi
from edgefleet.clients.signingkey import ensure_signing_key
from edgefleet.handlers import inferencemodel, rollout, rolloutwatch

__all__ = ["ConfigError", "OperatorConfig", "run"]

log = structlog.get_logger("edgefleet.operator")


#: The controllers one operator process can run (EDGEFLEET_CONTROLLERS selects some).
CONTROLLERS = ("inferencemodels", "rollouts")


class ConfigError(ValueError):
    """An ``EDGEFLEET_*`` setting is missing or wrong."""


@dataclass(frozen=True)
class OperatorConfig:
    namespace: str
    registry_url: str
    registry_ca: str | None
    registry_username: str | None
    registry_password: str | None
    base_repository: str
    base_reference: str
    cache_dir: Path
    signing_secret: str
    watch_namespaces: tuple[str, ...]
    max_concurrent_builds: int
    leader_election: bool = True
    identity: str = ""
    controllers: tuple[str, ...] = CONTROLLERS
    drift_interval: float = inferencemodel.DRIFT_INTERVAL

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"{name} must be set")
            return value

        password = None
        if env.get("EDGEFLEET_REGISTRY_PASSWORD_FILE"):
            password = Path(env["EDGEFLEET_REGISTRY_PASSWORD_FILE"]).read_text().strip()
        url = need("EDGEFLEET_REGISTRY_URL")
        if not url.startswith("https://"):
            raise ConfigError(f"EDGEFLEET_REGISTRY_URL must be an https:// URL, not {url!r}")
        try:
            builds = int(env.get("EDGEFLEET_MAX_CONCURRENT_BUILDS", "2"))
        except ValueError as exc:
            raise ConfigError("EDGEFLEET_MAX_CONCURRENT_BUILDS must be an integer") from exc
        if not 1 <= builds <= 16:
            raise ConfigError("EDGEFLEET_MAX_CONCURRENT_BUILDS must be between 1 and 16")
        drift = _seconds(env, "EDGEFLEET_DRIFT_INTERVAL_SECONDS", inferencemodel.DRIFT_INTERVAL)
        watch = tuple(n for n in env.get("EDGEFLEET_WATCH_NAMESPACES", "").split(",") if n)
        controllers = tuple(
            n.strip() for n in env.get("EDGEFLEET_CONTROLLERS", ",".join(CONTROLLERS)).split(",")
        )
        if not controllers or not set(controllers) <= set(CONTROLLERS):
            raise ConfigError(f"EDGEFLEET_CONTROLLERS must name some of {', '.join(CONTROLLERS)}")
        return cls(
            namespace=need("EDGEFLEET_NAMESPACE"),
            registry_url=url,
            registry_ca=env.get("EDGEFLEET_REGISTRY_CA") or None,
            registry_username=env.get("EDGEFLEET_REGISTRY_USERNAME") or None,
            registry_password=password,
            base_repository=env.get("EDGEFLEET_BASE_REPOSITORY", "edgefleet/base"),
            base_reference=env.get("EDGEFLEET_BASE_REFERENCE", "bookworm"),
            cache_dir=Path(
                env.get("EDGEFLEET_CACHE_DIR") or Path.home() / ".cache" / "edgefleet" / "operator"
            ),
            signing_secret=env.get("EDGEFLEET_SIGNING_SECRET", "edgefleet-signing-key"),
            watch_namespaces=watch,
            max_concurrent_builds=builds,
            leader_election=_flag(env, "EDGEFLEET_LEADER_ELECTION", default=True),
            identity=env.get("EDGEFLEET_POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
            controllers=controllers,
            drift_interval=drift,
        )


#: Bounds of EDGEFLEET_DRIFT_INTERVAL_SECONDS: at least a second, at most a day.
DRIFT_INTERVAL_RANGE = (1.0, 86400.0)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    low, high = DRIFT_INTERVAL_RANGE
    try:
        seconds = float(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from exc
    if not low <= seconds <= high:  # also refuses nan and inf
        raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds, not {value!r}")
    return seconds


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    return value == "true"


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


def build_registry(cfg: OperatorConfig, api: client.ApiClient) -> kopf.OperatorRegistry:
    """The kopf registry with every handler, wired to freshly made clients."""
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    key = ensure_signing_key(core, cfg.namespace, cfg.signing_secret)
    registry = RegistryClient(
        cfg.registry_url,
        ca_bundle=cfg.registry_ca,
        username=cfg.registry_username,
        password=cfg.registry_password,
    )
    http = httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
    builder = ImageBuilder(
        registry,
        key,
        BuilderSettings(
            cache_dir=cfg.cache_dir,
            base_repository=cfg.base_repository,
            base_reference=cfg.base_reference,
            max_concurrent_builds=cfg.max_concurrent_builds,
        ),
        http=http,
    )
    kopf_registry = kopf.OperatorRegistry()
    if "inferencemodels" in cfg.controllers:
        inferencemodel.register(
            kopf_registry,
            inferencemodel.ModelReconciler(builder, objects),
            drift_interval=cfg.drift_interval,
        )
    if "rollouts" in cfg.controllers:
        # Its own client: a connection pool as large as its parallel device writes.
        conf = copy.copy(api.configuration)
        conf.connection_pool_maxsize = rollout.WRITERS
        writer = client.ApiClient(conf)
        rolloutwatch.register(
            kopf_registry,
            rollout.RolloutController(
                RolloutApi(client.CustomObjectsApi(writer), client.CoreV1Api(writer)),
                cfg.watch_namespaces,
            ),
        )

    @kopf.on.login(registry=kopf_registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # The same credentials as the kubernetes client: in-cluster or kubeconfig.
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.startup(registry=kopf_registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress lives in annotations: the CRD schemas are strict and have no
        # status.kopf, and users' specs are never touched.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="edgefleet.io"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="edgefleet.io", key="last-handled-spec"
        )
        settings.persistence.finalizer = "edgefleet.io/finalizer"
        settings.watching.server_timeout = 120
        settings.watching.client_timeout = 150
        settings.posting.level = logging.INFO
        settings.execution.max_workers = max(4, cfg.max_concurrent_builds * 2)

    return kopf_registry


def run(cfg: OperatorConfig) -> int:
    """Run the operator until SIGTERM/SIGINT (0), or until leadership is lost (1).

    With leader election on (the default), replicas wait on the Lease
    ``edgefleet-operator`` in the operator's namespace and only the holder reconciles;
    one that loses the Lease stops and exits non-zero, to come back as a candidate.
    """
    api = _api_client()
    log.info(
        "operator starting",
        namespace=cfg.namespace,
        registry=cfg.registry_url,
        base=f"{cfg.base_repository}:{cfg.base_reference}",
        watch=list(cfg.watch_namespaces) or "all namespaces",
        identity=cfg.identity,
        leader_election=cfg.leader_election,
        drift_interval_seconds=cfg.drift_interval,
    )
    stop = threading.Event()
    elector = None
    if cfg.leader_election:
        elector = LeaderElector(api, ElectionSettings(cfg.namespace), cfg.identity)
        if not elector.acquire(stop):
            return 0
        elector.keep(on_lost=stop)
    try:
        kopf_registry = build_registry(cfg, api)
        asyncio.run(
            kopf.operator(
                registry=kopf_registry,
                standalone=True,
                clusterwide=not cfg.watch_namespaces,
                namespaces=list(cfg.watch_namespaces),
                stop_flag=stop,
                # kopf would derive one from the user name, which a non-root uid with
                # no /etc/passwd entry (our image) does not have: found in-cluster.
                identity=cast(Any, cfg.identity),  # kopf.Identity is a NewType of str
            )
        )
    finally:
        if elector is not None:
            elector.release()
    return 1 if elector is not None and elector.lost.is_set() else 0
