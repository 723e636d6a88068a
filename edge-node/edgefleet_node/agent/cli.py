"""``edgefleet-node``: enrol this device, run the agent, show its status.

Exit codes (also in ``docs/agent.md``):

- 0 success;
- 1 an unexpected error (a bug: please report it with the log);
- 2 usage or configuration error (bad flag, config file, environment variable);
- 3 not enrolled, or the identity in the state directory is damaged;
- 4 enrolment refused: malformed/used/expired token, the gateway's CA does not match
  the token's pin, or the gateway said no;
- 5 the gateway could not be reached (enrol only; ``run`` keeps trying forever).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet_node.agent import config as cfg
from edgefleet_node.agent import facts, identity, log, store
from edgefleet_node.agent.client import GatewayClient, GatewayError, UnreachableError
from edgefleet_node.agent.clock import Clock
from edgefleet_node.agent.runtime import Runtime, RuntimeFailure
from edgefleet_node.protocol import enroll, wire

if TYPE_CHECKING:
    from edgefleet_node.agent.loop import LoopSettings

__all__ = ["loop_settings", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_IDENTITY, EXIT_REFUSED, EXIT_UNREACHABLE = range(6)


class _Exit(Exception):  # noqa: N818
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefleet-node", description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, help="TOML config file")
    p.add_argument("--state-dir", help="state directory (default /var/lib/edgefleet-node)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("enroll", help="enrol this device with a bootstrap token")
    e.add_argument("--gateway", required=True, help="https://host:port of the gateway")
    e.add_argument("--token", help="bootstrap token (or EDGEFLEET_NODE_TOKEN, or --token-file)")
    e.add_argument("--token-file", type=Path, help="file holding the bootstrap token")
    e.add_argument("--platform", help="override the detected platform, e.g. linux/arm64")
    r = sub.add_parser("run", help="run the agent until SIGTERM/SIGINT")
    r.add_argument("--runtime", choices=("docker", "simulated"))
    r.add_argument("--poll-wait", type=int)
    r.add_argument("--report-interval", type=float)
    s = sub.add_parser("status", help="what runs, health, last contact, queued reports")
    s.add_argument("-o", "--output", choices=("human", "json"), default="human")
    return p


def _config(args: argparse.Namespace) -> cfg.Config:
    flags = {k: getattr(args, k, None) for k in cfg.FIELDS}
    return cfg.resolve(flags, cfg.environ(), args.config)


def _token(args: argparse.Namespace) -> enroll.BootstrapToken:
    text = args.token or cfg.environ().get(cfg.ENV_PREFIX + "TOKEN")
    if text is None and args.token_file is not None:
        try:
            text = args.token_file.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise _Exit(EXIT_USAGE, f"cannot read the token file: {exc}") from exc
    if not text:
        raise _Exit(
            EXIT_USAGE, "give the bootstrap token: --token, --token-file or EDGEFLEET_NODE_TOKEN"
        )
    try:
        return enroll.BootstrapToken.parse(text)
    except wire.ProtocolError as exc:
        raise _Exit(EXIT_REFUSED, str(exc)) from exc


def enroll_device(conf: cfg.Config, gateway: str, token: enroll.BootstrapToken) -> dict[str, str]:
    """Fetch and pin the gateway CA, make the key here, enrol, store the identity."""
    state = store.StateDir(conf.state_dir).ensure()
    platform = conf.platform or facts.detect_platform()
    clock = Clock()
    try:
        bare = GatewayClient(gateway, None, None, clock)
        bundle = bare.request("GET", wire.CA_PATH, limit=wire.MAX_ENROLL_BODY).body
        pinned = enroll.pinned_cas(bundle, token.ca_hash)
        key_pem, csr = identity.make_key_and_csr(token.namespace, token.device)
        instance = identity.instance_id(state)
        request = enroll.EnrollRequest(
            token, csr, platform, instance, facts.gather(state.root, platform).to_json()
        )
        answer = GatewayClient(gateway, pinned, None, clock).request(
            "POST", wire.ENROLL_PATH, request.to_bytes(), limit=wire.MAX_ENROLL_BODY
        )
        response = enroll.EnrollResponse.from_bytes(answer.body)
    except ValueError as exc:  # a bad URL, a pin mismatch, a malformed answer
        raise _Exit(
            EXIT_REFUSED if isinstance(exc, wire.ProtocolError) else EXIT_USAGE, str(exc)
        ) from exc
    except UnreachableError as exc:
        raise _Exit(EXIT_UNREACHABLE, f"the gateway cannot be reached: {exc}") from exc
    except GatewayError as exc:
        raise _Exit(EXIT_REFUSED, f"the gateway refused the enrolment: {exc}") from exc
    if (response.namespace, response.device) != (token.namespace, token.device):
        raise _Exit(EXIT_REFUSED, "the gateway answered for another device")
    identity.save_enrolment(
        state,
        gateway=gateway,
        platform=platform,
        key_pem=key_pem,
        response=response,
        instance_id=instance,
        now=clock.time(),
    )
    return {
        "namespace": response.namespace,
        "device": response.device,
        "notAfter": response.not_after,
        "stateDir": str(state.root),
    }


def _runtime(conf: cfg.Config, state: store.StateDir) -> Runtime:
    if conf.runtime == "simulated":
        from edgefleet_node.agent.simulated import SimulatedRuntime

        return SimulatedRuntime(state_file=state.root / "simulated.json")
    from edgefleet_node.agent.docker_runtime import DockerRuntime

    return DockerRuntime(dev_root=str(conf.dev_root), scope=conf.runtime_scope)


def loop_settings(conf: cfg.Config) -> LoopSettings:
    """The agent loop's settings from the configuration."""
    from edgefleet_node.agent import activate
    from edgefleet_node.agent.loop import LoopSettings

    return LoopSettings(
        poll_wait=conf.poll_wait,
        report_interval=conf.report_interval,
        backoff_cap=conf.backoff_cap,
        queue_capacity=conf.queue_capacity,
        activation=activate.Settings(
            stall_timeout=conf.stall_timeout,
            probe_timeout=conf.probe_timeout,
            disk_reserve=conf.disk_reserve_mb * 1024 * 1024,
            dev_root=str(conf.dev_root),
        ),
    )


def run_agent(conf: cfg.Config) -> None:
    from edgefleet_node.agent.loop import Agent

    state = store.StateDir(conf.state_dir)
    settings = loop_settings(conf)
    try:
        agent = Agent(state, _runtime(conf, state), settings)
    except identity.IdentityError as exc:
        raise _Exit(EXIT_IDENTITY, str(exc)) from exc
    except RuntimeFailure as exc:
        raise _Exit(EXIT_ERROR, f"{exc.reason}: {exc}") from exc

    def _stop(signum: int, _frame: Any) -> None:
        log.get().info("stopping", signal=signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.get().info(
        "agent started",
        device=f"{agent.identity.namespace}/{agent.identity.device}",
        gateway=agent.identity.gateway,
        runtime=conf.runtime,
    )
    agent.run()
    log.get().info("agent stopped", device=agent.identity.device)


def status(conf: cfg.Config) -> dict[str, Any]:
    state = store.StateDir(conf.state_dir)
    try:
        ident = identity.load(state)
    except identity.IdentityError as exc:
        raise _Exit(EXIT_IDENTITY, str(exc)) from exc
    doc = store.read_json(state.status) or {}
    record = store.read_json(state.runtime) or {}
    queued = len([p for p in state.reports.glob("*.json") if p.stem.isdigit()])
    out = {
        "device": f"{ident.namespace}/{ident.device}",
        "gateway": ident.gateway,
        "platform": ident.platform,
        "connection": doc.get("connection", "Unknown"),
        "lastContact": _time(doc.get("lastContact")),
        "certificateNotAfter": wire.format_time(ident.not_after),
        "heldVersion": doc.get("heldVersion"),
        "activeVersion": record.get("desiredVersion"),
        "queuedReports": queued,
        "clockOffsetSeconds": doc.get("clockOffset", 0.0),
        "conditions": doc.get("conditions", []),
        "workloads": doc.get("workloads")
        or [
            {
                "name": w["workload"]["name"],
                "version": w["workload"]["version"],
                "manifestDigest": w["instance"]["manifestDigest"],
                "health": "Unknown",
            }
            for w in record.get("workloads", [])
        ],
        "previousImages": record.get("previous", []),
    }
    if out["connection"] == "CertificateExpired" or doc.get("refused"):
        out["hint"] = (
            f"the gateway refuses this device's certificate ({out['connection']}); running "
            "workloads are kept. If it expired or was revoked: create a token with "
            "`edgefleet token create DEVICE` and run `edgefleet-node enroll --gateway URL "
            "--token TOKEN` (the agent may keep running). If the device is suspended, "
            "ask the fleet's administrator."
        )
    return out


def _time(value: Any) -> str | None:
    import datetime

    if not isinstance(value, int | float):
        return None
    return wire.format_time(datetime.datetime.fromtimestamp(value, datetime.UTC))


def _human(doc: dict[str, Any]) -> str:
    lines = [
        f"device:       {doc['device']} ({doc['platform']})",
        f"gateway:      {doc['gateway']}  [{doc['connection']}]",
        f"last contact: {doc['lastContact'] or 'never'}",
        f"certificate:  valid until {doc['certificateNotAfter']}",
        f"desired:      held v{doc['heldVersion']}, active v{doc['activeVersion']}",
        f"reports:      {doc['queuedReports']} queued",
    ]
    for w in doc["workloads"]:
        lines.append(
            f"workload:     {w['name']} {w['version']} {w['manifestDigest']} {w['health']}"
        )
    for c in doc["conditions"]:
        lines.append(f"condition:    {c['type']}={c['status']} {c['reason']} {c['message']}")
    if "hint" in doc:
        lines.append(f"hint:         {doc['hint']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        conf = _config(args)
        log.configure(conf.log_level)
        if args.command == "enroll":
            result = enroll_device(conf, args.gateway, _token(args))
            print(
                f"enrolled as {result['namespace']}/{result['device']}; certificate "
                f"valid until {result['notAfter']}; state in {result['stateDir']}"
            )
        elif args.command == "run":
            run_agent(conf)
        else:
            doc = status(conf)
            print(json.dumps(doc, indent=2) if args.output == "json" else _human(doc))
    except cfg.ConfigError as exc:
        print(f"edgefleet-node: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Exit as exc:
        print(f"edgefleet-node: {exc}", file=sys.stderr)
        return exc.code
    except store.StoreError as exc:
        print(f"edgefleet-node: a state file is damaged: {exc}", file=sys.stderr)
        return EXIT_IDENTITY
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
