"""The runtime layer's files: unpacked platform wheels plus the inference server.

Inside an image:

- ``/opt/edgefleet/site-packages/`` — the pinned wheels (numpy, onnxruntime),
  unpacked the way ``pip install --target`` would: package directories and
  ``*.dist-info`` kept, ``*.data/purelib`` and ``*.data/platlib`` merged in, other
  ``*.data`` parts (scripts, headers, data) left out since nothing runs them;
- ``/opt/edgefleet/app/edgefleet/serving/*.py`` — :mod:`edgefleet.serving` as it is
  in this checkout, under an empty ``edgefleet/__init__.py``, so the image runs
  ``python3 -m edgefleet.serving`` with the same module name as tests use;
- :data:`RUNTIME_ENV` and :data:`RUNTIME_CMD` — what the image config must say.

Every file gets mode 0644, or 0755 when the wheel marks it executable; entries
come out sorted by path, so :func:`edgefleet.domain.oci.build_layer` turns the same
wheels into the same digest.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping

from edgefleet.domain.oci_layers import FileEntry, normalise_path
from edgefleet_node.oci import types as oci_types

__all__ = [
    "APP_DIR",
    "RUNTIME_CMD",
    "RUNTIME_ENV",
    "SITE_PACKAGES",
    "WheelError",
    "runtime_entries",
    "serving_entries",
    "wheels_to_entries",
]

SITE_PACKAGES = "opt/edgefleet/site-packages"
APP_DIR = "opt/edgefleet/app"
RUNTIME_ENV: tuple[tuple[str, str], ...] = (
    ("PYTHONPATH", f"/{APP_DIR}:/{SITE_PACKAGES}"),
    ("PYTHONUNBUFFERED", "1"),
)
RUNTIME_CMD: tuple[str, ...] = ("python3", "-m", "edgefleet.serving")
_INSTALLED_DATA = ("purelib", "platlib")


class WheelError(ValueError):
    """A wheel cannot be unpacked into the runtime layer."""


def _target(filename: str, member: str) -> str | None:
    """Where a wheel member goes under site-packages, or None to leave it out."""
    try:
        path = normalise_path(member)
    except oci_types.OCIError as exc:
        raise WheelError(f"wheel {filename} has an unsafe member: {exc}") from None
    if member.startswith("/") or not path:
        raise WheelError(f"wheel {filename} has an unsafe member {member!r}")
    top, _, rest = path.partition("/")
    if top.endswith(".data"):
        kind, _, inner = rest.partition("/")
        return inner if kind in _INSTALLED_DATA and inner else None
    return path


def wheels_to_entries(wheels: Iterable[tuple[str, bytes]]) -> list[FileEntry]:
    """Unpack ``(file name, wheel bytes)`` pairs into site-packages entries, sorted by path."""
    entries: dict[str, FileEntry] = {}
    origin: dict[str, str] = {}
    for filename, data in wheels:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as exc:
            raise WheelError(f"{filename} is not a wheel (zip): {exc}") from None
        with archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                target = _target(filename, info.filename)
                if target is None:
                    continue
                path = f"{SITE_PACKAGES}/{target}"
                if path in entries:
                    raise WheelError(f"{filename} and {origin[path]} both install {target}")
                executable = (info.external_attr >> 16) & 0o111
                entries[path] = FileEntry.file(
                    path, archive.read(info), 0o755 if executable else 0o644
                )
                origin[path] = filename
    return [entries[p] for p in sorted(entries, key=str.encode)]


def serving_entries(files: Mapping[str, bytes]) -> list[FileEntry]:
    """Entries for the server's modules (``{"server.py": source, …}``), sorted by path."""
    if "__main__.py" not in files or "__init__.py" not in files:
        raise WheelError("the serving package needs __init__.py and __main__.py")
    entries = [FileEntry.file(f"{APP_DIR}/edgefleet/__init__.py", b"")]
    for name in sorted(files):
        if "/" in name or not name.endswith(".py"):
            raise WheelError(f"serving file {name!r} is not a module of the package")
        entries.append(FileEntry.file(f"{APP_DIR}/edgefleet/serving/{name}", files[name]))
    return entries


def runtime_entries(
    wheels: Iterable[tuple[str, bytes]], serving_files: Mapping[str, bytes]
) -> list[FileEntry]:
    """All entries of the runtime layer, sorted by path."""
    merged = wheels_to_entries(wheels) + serving_entries(serving_files)
    return sorted(merged, key=lambda e: e.path.encode())
