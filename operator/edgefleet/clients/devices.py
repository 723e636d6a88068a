"""Operations on EdgeDevices for people (the CLI): revoke a device's identity.

``edgefleet device revoke NAME -n NS`` sets ``status.enrollment.revoked`` with server-side
apply under the field manager ``edgefleet-cli`` (the gateway never writes that field
except to clear it at a new enrolment). Every gateway replica sees the change through
its watch cache and refuses the certificate at once, closing the device's open
long-poll; the device needs a new bootstrap token to come back.
"""

from __future__ import annotations

from typing import Final

from edgefleet.api.meta import GROUP, VERSION
from edgefleet.clients.kube import KubeClient, KubeError

__all__ = ["CLI_FIELD_MANAGER", "DeviceError", "revoke"]

CLI_FIELD_MANAGER: Final = "edgefleet-cli"


class DeviceError(Exception):
    """The operation cannot be done; the message says why."""


async def revoke(kube: KubeClient, namespace: str, name: str) -> str:
    """Revoke the device's certificate; return the serial that was revoked."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/edgedevices/{name}"
    try:
        device = await kube.get(path)
    except KubeError as exc:
        if exc.code == 404:
            raise DeviceError(f"EdgeDevice {namespace}/{name} does not exist") from None
        raise
    enrollment = (device.get("status") or {}).get("enrollment")
    if not enrollment:
        raise DeviceError(f"EdgeDevice {namespace}/{name} is not enrolled: nothing to revoke")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EdgeDevice",
        "metadata": {"name": name, "namespace": namespace},
        "status": {"enrollment": {"revoked": True}},
    }
    await kube.apply(f"{path}/status", body, manager=CLI_FIELD_MANAGER)
    return str(enrollment.get("certificateSerial", ""))
