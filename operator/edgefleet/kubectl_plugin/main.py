"""``kubectl edgefleet``: rollout status|promote|pause|resume|abort|retry, device list|describe.

Installed as the console script ``kubectl-edgefleet``, which kubectl runs as the
plugin ``kubectl edgefleet``. It talks to the API server with the user's kubeconfig
(``--kubeconfig``, ``--context``, ``-n``), never to the operator: ``pause``/``abort``
set ``spec.paused``/``spec.abort`` (field manager ``edgefleet-cli``; a warning names a
GitOps manager that owns the field and would revert it); ``promote`` and ``retry``
set the annotations ``edgefleet.io/promote`` (the step being released — idempotent,
so a second promote never skips a second pause) and ``edgefleet.io/retry``, which a
GitOps tool leaves alone unless they are in Git.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from typing import Any

from kubernetes import client, config

from edgefleet.kubectl_plugin.render import device_rows, rollout_lines, summary_line, table

__all__ = ["main"]

GROUP, VERSION = "edgefleet.io", "v1alpha1"
MANAGER = "edgefleet-cli"
PROMOTE, RETRY = "edgefleet.io/promote", "edgefleet.io/retry"
_FINAL = ("Completed", "Aborted", "Failed")


class PluginError(Exception):
    """A user-facing error (printed without a traceback, exit code 1)."""


def _api(args: argparse.Namespace) -> tuple[client.CustomObjectsApi, str]:
    config.load_kube_config(config_file=args.kubeconfig, context=args.context)  # type: ignore[no-untyped-call]
    namespace = args.namespace
    if not namespace:
        _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return client.CustomObjectsApi(), namespace


def _get(objects: client.CustomObjectsApi, ns: str, plural: str, name: str) -> dict[str, Any]:
    try:
        obj: dict[str, Any] = objects.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)  # type: ignore[assignment]
    except client.ApiException as exc:
        if exc.status == 404:
            raise PluginError(f"{plural}.{GROUP} {ns}/{name} not found") from exc
        raise
    return obj


def _patch(objects: client.CustomObjectsApi, ns: str, name: str, patch: dict[str, Any]) -> None:
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "rollouts", name, patch, field_manager=MANAGER
    )


def _gitops_owner(obj: dict[str, Any], field: str) -> str | None:
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        manager = entry.get("manager", "")
        spec = ((entry.get("fieldsV1") or {}).get("f:spec")) or {}
        ours = manager in (MANAGER, "kubectl-client-side-apply")
        if f"f:{field}" in spec and not ours and entry.get("operation") == "Apply":
            return str(manager)
    return None


def _set_spec(args: argparse.Namespace, field: str, value: bool) -> int:
    objects, ns = _api(args)
    obj = _get(objects, ns, "rollouts", args.name)
    owner = _gitops_owner(obj, field)
    if owner:
        print(f"warning: spec.{field} is applied by {owner!r}; its next sync may revert this"
              " — change it in Git instead", file=sys.stderr)  # fmt: skip
    _patch(objects, ns, args.name, {"spec": {field: value}})
    print(f"rollout {ns}/{args.name}: spec.{field}={str(value).lower()}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    objects, ns = _api(args)
    obj = _get(objects, ns, "rollouts", args.name)
    status = obj.get("status") or {}
    step = int(status.get("currentStep") or 0)
    _patch(objects, ns, args.name, {"metadata": {"annotations": {PROMOTE: str(step)}}})
    print(f"rollout {ns}/{args.name}: promoted past step {step}")
    return 0


def _retry(args: argparse.Namespace) -> int:
    objects, ns = _api(args)
    obj = _get(objects, ns, "rollouts", args.name)
    token = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    patch: dict[str, Any] = {"metadata": {"annotations": {RETRY: token}}}
    if (obj.get("spec") or {}).get("abort"):
        patch["spec"] = {"abort": False}
    _patch(objects, ns, args.name, patch)
    print(f"rollout {ns}/{args.name}: retry requested")
    return 0


def _status(args: argparse.Namespace) -> int:
    objects, ns = _api(args)
    live = args.watch and sys.stdout.isatty()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    drawn, last = 0, ""
    while True:
        obj = _get(objects, ns, "rollouts", args.name)
        if not args.watch:
            print("\n".join(rollout_lines(obj)))
            return 0
        if live:  # redraw the block in place
            lines = rollout_lines(obj)
            if drawn:
                sys.stdout.write(f"\x1b[{drawn}F\x1b[J")
            sys.stdout.write("\n".join(lines) + "\n")
            drawn = len(lines)
        else:  # one plain line per change
            line = summary_line(obj)
            if line != last:
                stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
                sys.stdout.write(f"{stamp} {line}\n")
                last = line
        sys.stdout.flush()
        phase = (obj.get("status") or {}).get("phase")
        if phase in _FINAL:
            return 0 if phase == "Completed" else 1
        if deadline is not None and time.monotonic() > deadline:
            print(f"timed out waiting for rollout {ns}/{args.name}", file=sys.stderr)
            return 2
        time.sleep(args.interval)


def _device_list(args: argparse.Namespace) -> int:
    objects, ns = _api(args)
    result: dict[str, Any] = objects.list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, "edgedevices", label_selector=args.selector or None
    )
    items = sorted(result.get("items", []), key=lambda o: o["metadata"]["name"])
    print("\n".join(table(device_rows(items))))
    return 0


def _device_describe(args: argparse.Namespace) -> int:
    objects, ns = _api(args)
    obj = _get(objects, ns, "edgedevices", args.name)
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    out = [f"Name:      {meta['name']}", f"Namespace: {meta['namespace']}",
           f"Labels:    {json.dumps(meta.get('labels') or {}, sort_keys=True)}",
           f"Platform:  {spec.get('platform')}   Suspended: {spec.get('suspended', False)}",
           f"Last seen: {status.get('lastSeen', '-')}", "Conditions:"]  # fmt: skip
    for c in status.get("conditions") or []:
        out.append(f"  {c['type']:<18} {c['status']:<7} {c['reason']:<24} {c.get('message', '')}")
    out.append(f"Desired (revision {status.get('desiredRevision', '-')}):")
    for w in status.get("desired") or []:
        out.append(
            f"  {w['model']} {w['version']} {w['imageDigest'][:19]} rollout={w.get('rollout')}"
        )
    out.append("Current:")
    for w in status.get("current") or []:
        p95 = w.get("p95LatencyMs")
        out.append(f"  {w['model']} {w['version']} {w['imageDigest'][:19]} {w.get('health')}"
                   + (f" p95={p95}ms" if p95 is not None else ""))  # fmt: skip
    print("\n".join(out))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl edgefleet", description=__doc__)
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)
    parser.add_argument("-n", "--namespace", default=None)
    kinds = parser.add_subparsers(dest="kind", required=True)
    ro = kinds.add_parser("rollout", help="inspect and steer Rollouts").add_subparsers(
        dest="verb", required=True
    )
    status = ro.add_parser("status", help="progress per wave")
    status.add_argument("name")
    status.add_argument("-w", "--watch", action="store_true", help="follow until it finishes")
    status.add_argument("--interval", type=float, default=1.0)
    status.add_argument("--timeout", type=float, default=0.0, help="seconds; 0 waits forever")
    status.set_defaults(func=_status)
    for verb, func, text in (
        ("promote", _promote, "release the pause the rollout waits at"),
        ("pause", lambda a: _set_spec(a, "paused", True), "set spec.paused"),
        ("resume", lambda a: _set_spec(a, "paused", False), "clear spec.paused"),
        ("abort", lambda a: _set_spec(a, "abort", True), "abort and roll back"),
        ("retry", _retry, "start an aborted rollout again"),
    ):
        sub = ro.add_parser(verb, help=text)
        sub.add_argument("name")
        sub.set_defaults(func=func)
    dev = kinds.add_parser("device", help="inspect EdgeDevices").add_subparsers(
        dest="verb", required=True
    )
    listing = dev.add_parser("list", help="devices with their desired and current versions")
    listing.add_argument("-l", "--selector", default="")
    listing.set_defaults(func=_device_list)
    describe = dev.add_parser("describe", help="one device in detail")
    describe.add_argument("name")
    describe.set_defaults(func=_device_describe)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
