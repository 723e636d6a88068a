"""A shard of the fake fleet in its own process, so the fleet's watch and report
writers do not share a GIL with the benchmark (or with each other).

``python -m edgefleet.testing.fleetshard --kubeconfig K --namespace NS --shard I/N
--devices M`` creates its share of M EdgeDevices (``dev-00000`` …, every N-th from I,
labelled ``edgefleet.io/bench-shard=I`` plus ``--label`` ones), reports them online,
watches only them (a label selector, so the API server filters), and follows their
desired state like :class:`~edgefleet.testing.fakefleet.FakeFleet`. It speaks lines
on stdin/stdout: it prints ``{"ready": …}`` once its devices exist and it watches;
``count`` prints ``{"reports": n}`` (reports since ready); ``stop`` (or end of input)
stops it and prints ``{"devices": {name: {"notified": {rev: t}, "ready": {rev: t}}},
"reports": n}`` with ``time.monotonic()`` instants (one clock for all processes of
the machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, config

from edgefleet.testing.fakefleet import FakeFleet

__all__ = ["SHARD_LABEL", "main", "names"]

SHARD_LABEL = "edgefleet.io/bench-shard"


def names(devices: int, shard: int, shards: int) -> list[str]:
    """The device names of one shard."""
    return [f"dev-{i:05d}" for i in range(shard, devices, shards)]


def _say(doc: object) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--shard", required=True, help="I/N: this is shard I of N")
    parser.add_argument("--devices", type=int, required=True, help="devices of all shards")
    parser.add_argument("--label", action="append", default=[], help="key=value")
    parser.add_argument("--platform", default="linux/amd64")
    parser.add_argument("--workers", type=int, default=8, help="report writers")
    args = parser.parse_args(argv)
    index, _, total = args.shard.partition("/")
    shard, shards = int(index), int(total)
    if not 0 <= shard < shards:
        parser.error("--shard must be I/N with 0 <= I < N")
    labels = dict(item.split("=", 1) for item in args.label)
    labels[SHARD_LABEL] = str(shard)

    conf = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=args.kubeconfig, client_configuration=conf
    )
    conf.connection_pool_maxsize = max(args.workers, 4)
    fleet = FakeFleet(
        client.ApiClient(conf),
        args.namespace,
        workers=args.workers,
        label_selector=f"{SHARD_LABEL}={shard}",
    )
    mine = names(args.devices, shard, shards)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda part: fleet.create(part, labels, args.platform),
                      [mine[i::4] for i in range(4)]))  # fmt: skip
    fleet.start()
    base = fleet.reports
    _say({"ready": len(mine)})
    try:
        for line in sys.stdin:
            if line.strip() == "count":
                _say({"reports": fleet.reports - base})
            elif line.strip() == "stop":
                break
    finally:
        fleet.stop()
    _say(
        {
            "devices": {
                d.name: {"notified": d.notified_at, "ready": d.ready_at}
                for d in fleet.devices.values()
            },
            "reports": fleet.reports - base,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
