"""Which digests a device may pull: everything reachable from its assigned images.

From each :class:`Assignment` (repository, index digest, platform manifest digest(s),
platform): the index, the manifest for the device's platform, their config and layers,
and the cosign signature manifests (``sha256-<hex>.sig``) of the index and the
manifest with their config and payload layers. Manifests are fetched from the
registry once and cached by digest in a bounded LRU (a manifest by digest never
changes); signature tags can change (a re-sign), so what they point at is kept for a
short time only, as is each device's computed answer.

:func:`assignments` reads an EdgeDevice: its desired workloads, the ones a rollback may
restore (``status.previous``), and what it reports running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

import structlog

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.clients.registry_errors import RegistryError
from edgefleet.clients.registry_stream import Manifest
from edgefleet_node.oci import parse
from edgefleet_node.oci import types as oci_types

__all__ = ["Allowed", "Assignment", "Reachability", "assignments"]

log = structlog.get_logger("edgefleet.gateway.oci")

#: repository -> digests the device may fetch from it
Allowed = Mapping[str, frozenset[str]]
Fetch = Callable[[str, str], Awaitable[Manifest | None]]


@dataclass(frozen=True)
class Assignment:
    """One image assigned to a device."""

    repository: str
    digests: tuple[str, ...]  # the index and/or platform manifests named for the device
    platform: str


def assignments(device: EdgeDevice) -> tuple[Assignment, ...]:
    """The images an EdgeDevice may pull: desired, rollback targets, and what it runs."""
    platform = device.spec.platform
    status = device.status
    if status is None:
        return ()
    result: list[Assignment] = []
    repos: dict[str, str] = {}
    workloads = [*status.desired, *(p.workload for p in status.previous if p.workload)]
    for w in workloads:
        result.append(Assignment(w.repository, (w.index_digest, w.image_digest), platform))
        repos.setdefault(w.model, w.repository)
    known = {d for a in result for d in a.digests}
    for current in status.current:
        repo = repos.get(current.model)
        if repo is not None and current.image_digest not in known:
            result.append(Assignment(repo, (current.image_digest,), platform))
    return tuple(sorted(set(result), key=lambda a: (a.repository, a.digests)))


class _Lru:
    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: OrderedDict[tuple[str, str], Manifest] = OrderedDict()
        self._max_items, self._max_bytes, self.size = max_items, max_bytes, 0

    def get(self, key: tuple[str, str]) -> Manifest | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, str], item: Manifest) -> None:
        if key in self._items:
            return
        self._items[key] = item
        self.size += len(item.body)
        while len(self._items) > self._max_items or self.size > self._max_bytes:
            _, old = self._items.popitem(last=False)
            self.size -= len(old.body)


class Reachability:
    """Computes :data:`Allowed` for a device's assignments; caches what it fetched."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        max_manifests: int = 4096,
        max_manifest_bytes: int = 64 * 1024 * 1024,
        ttl: float = 30.0,
        max_answers: int = 20000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._manifests = _Lru(max_manifests, max_manifest_bytes)
        self._tags: dict[tuple[str, str], tuple[float, Manifest | None]] = {}
        self._answers: OrderedDict[tuple[Assignment, ...], tuple[float, Allowed]] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future[Manifest | None]] = {}
        self._ttl, self._max_answers, self._clock = ttl, max_answers, clock

    async def allowed(self, assigned: Iterable[Assignment]) -> Allowed:
        key = tuple(assigned)
        now = self._clock()
        hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            self._answers.move_to_end(key)
            return hit[1]
        found: dict[str, set[str]] = {}
        for item in key:
            found.setdefault(item.repository, set()).update(await self._reach(item))
        answer = {repo: frozenset(d) for repo, d in found.items()}
        self._answers[key] = (now + self._ttl, answer)
        while len(self._answers) > self._max_answers:
            self._answers.popitem(last=False)
        return answer

    async def manifest(self, repo: str, digest: str) -> Manifest | None:
        """The manifest ``digest`` of ``repo``, from the cache or the registry."""
        key = (repo, digest)
        cached = self._manifests.get(key)
        if cached is not None:
            return cached
        return await self._once(key, cache=True)

    async def signature(self, repo: str, digest: str) -> Manifest | None:
        """The cosign signature manifest of ``digest`` (tag ``sha256-<hex>.sig``), if any."""
        tag = digest.replace(":", "-") + ".sig"
        key = (repo, tag)
        hit = self._tags.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        found = await self._once(key, cache=False)
        self._tags[key] = (self._clock() + self._ttl, found)
        if len(self._tags) > 4 * self._max_answers:
            self._tags.clear()
        return found

    async def _once(self, key: tuple[str, str], *, cache: bool) -> Manifest | None:
        """Run one fetch per key at a time; concurrent askers share its result. When the
        request that fetches is cancelled (its device hung up), the others fetch anew."""
        while (pending := self._inflight.get(key)) is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we were cancelled ourselves
        future: asyncio.Future[Manifest | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._fetch(*key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(result)
        if cache and result is not None:
            self._manifests.put(key, result)
        return result

    async def _reach(self, item: Assignment) -> set[str]:
        repo = item.repository
        digests: set[str] = set(item.digests)
        images: set[str] = set()
        try:
            platform = oci_types.Platform.parse(item.platform)
            for named in item.digests:
                found = await self.manifest(repo, named)
                if found is None:
                    continue
                doc = _parse(found)
                if isinstance(doc, parse.ImageIndex):
                    with contextlib.suppress(oci_types.OCIError):  # the named one still counts
                        images.add(doc.find(platform).digest)
                else:
                    images.add(named)
            for image in images:
                digests.add(image)
                found = await self.manifest(repo, image)
                if found is not None:
                    digests |= _blobs(found, image)
            for subject in {*item.digests, *images}:
                sig = await self.signature(repo, subject)
                if sig is not None:
                    digests.add(sig.digest)
                    digests |= _blobs(sig, sig.digest)
        except (RegistryError, oci_types.OCIError) as exc:
            log.warning("cannot resolve an assigned image", repository=repo, error=str(exc))
        return digests


def _parse(found: Manifest) -> parse.ImageManifest | parse.ImageIndex:
    media_type = found.media_type
    if media_type not in (*oci_types.INDEX_MEDIA_TYPES, *oci_types.MANIFEST_MEDIA_TYPES):
        try:  # served without a usable Content-Type: the document names its type
            media_type = str(json.loads(found.body).get("mediaType", ""))
        except (ValueError, AttributeError) as exc:
            raise oci_types.OCIError(f"manifest {found.digest} is not a JSON object") from exc
    return parse.parse_image_document(found.body, media_type, found.digest)


def _blobs(found: Manifest, digest: str) -> set[str]:
    doc = _parse(found)
    if not isinstance(doc, parse.ImageManifest):
        return set()
    return {doc.config.digest, *(layer.digest for layer in doc.layers)}
