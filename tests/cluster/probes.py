"""Clients run inside the node's namespaces (``python -m tests.cluster.probes …``),
where Service addresses exist: a simulated device that enrols with the in-cluster
gateway and keeps its identity in a file, or polls again with it; and a registry
client that pushes and pulls a blob. Each prints one JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["main"]


async def _device(phase: str, host: str, port: int, ns: str, name: str, state: Path,
                  token: str | None) -> dict[str, Any]:  # fmt: skip
    from edgefleet.testing.simdevice import SimDevice

    sim = SimDevice(host, port, ns, name, "linux/arm64", workdir=state.parent)
    out: dict[str, Any] = {}
    try:
        if phase == "enroll":
            assert token is not None
            enrolled = await sim.enroll(token)
            out["enroll"] = enrolled.status
            if enrolled.status != 200:
                out["error"] = enrolled.body.decode(errors="replace")[:500]
                return out
            key = sim.key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())  # fmt: skip
            assert sim.cert_pem is not None
            assert sim.gateway_ca is not None
            saved = {
                "key": key.decode(), "cert": sim.cert_pem.decode(), "ca": sim.gateway_ca.decode(),
                "signing": [k.decode() for k in sim.signing_keys], "instance": sim.instance_id,
            }  # fmt: skip
            fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(saved, f)
        else:
            saved = json.loads(state.read_text())
            loaded = serialization.load_pem_private_key(saved["key"].encode(), None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            sim.key, sim.cert_pem = loaded, saved["cert"].encode()
            sim.gateway_ca, sim.instance_id = saved["ca"].encode(), saved["instance"]
            sim.signing_keys = tuple(k.encode() for k in saved["signing"])
        try:  # a document, verified with the saved keys
            polled = await sim.poll(wait=0, have=None)
        except OSError as exc:  # e.g. just after a rollout, before the Service's rules follow
            return {**out, "poll": "unreachable", "error": str(exc)[:500]}
        out["poll"] = polled.status
        if polled.status != 200:
            out["error"] = polled.body.decode(errors="replace")[:500]
        return out
    finally:
        sim.close()


def _registry(url: str, ca: str, username: str, password_file: str) -> dict[str, Any]:
    import httpx

    from edgefleet.clients.registry import RegistryClient
    from edgefleet.domain import oci

    try:
        anonymous = httpx.get(f"{url}/v2/", verify=ca, timeout=30).status_code
    except httpx.ConnectError as exc:  # before the Service's rules follow the ready pod
        return {"anonymous": "unreachable", "error": str(exc)[:500]}
    blob = oci.Blob(os.urandom(4096), "application/octet-stream")
    password = Path(password_file).read_text().strip()
    with RegistryClient(url, ca_bundle=ca, username=username, password=password) as client:
        client.push_blob("probe/blob", blob)
        back = client.get_blob("probe/blob", blob.digest)
    return {"anonymous": anonymous, "pushed": blob.digest, "pulled": oci.sha256_digest(back)}


def main(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "device":
        phase, host, port, ns, name, state = argv[1:7]
        token = argv[7] if len(argv) > 7 else None
        result = asyncio.run(_device(phase, host, int(port), ns, name, Path(state), token))
    elif kind == "registry":
        result = _registry(*argv[1:5])
    else:
        raise SystemExit(f"unknown probe {kind!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
