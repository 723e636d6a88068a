"""``edgefleet image …``: build edgefleet's own images with the daemonless builder.

``edgefleet image build-node`` builds the edge-node agent's multi-arch image
(:func:`edgefleet.clients.edgefleetimages.build_node_image`) on the base index in the
registry, signs it with a cosign-format key and prints the result as JSON;
``edgefleet image build-control-plane`` does the same for the operator's and gateway's
image (``edgefleet/control-plane``, run as ``edgefleet operator`` / ``edgefleet gateway``)
and ``edgefleet image build-registry`` for the chart's bundled registry
(``edgefleet/registry``: Debian's ``docker-registry`` package on the same base).
They all start from the multi-arch Debian base index that ``edgefleet image
build-base`` makes with mmdebstrap (as root; foreign architectures through qemu-user)
and pushes (``edgefleet/base:bookworm``; byte-reproducible, so a second push uploads
nothing)::

    edgefleet image build-base --registry https://127.0.0.1:5000 --registry-ca ca.crt \\
        [--arch amd64 --arch arm64] [--repository edgefleet/base] [--tag bookworm]

    edgefleet image build-node --registry https://127.0.0.1:5000 --registry-ca ca.crt \\
        --signing-key cosign.key [--repository edgefleet/node] [--tag 0.1.0] \\
        [--platform linux/amd64 --platform linux/arm64]

Exit codes: 0 built, 1 the build failed, 2 bad arguments (unreadable key, …).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

__all__ = ["register"]

log = structlog.get_logger("edgefleet.cli.image")


def _build_node(args: argparse.Namespace) -> int:
    return _build(args, "node")


def _build_control_plane(args: argparse.Namespace) -> int:
    return _build(args, "control-plane")


def _build_registry(args: argparse.Namespace) -> int:
    return _build(args, "registry")


def _build(args: argparse.Namespace, which: str) -> int:
    from edgefleet.clients import appbuilder, edgefleetimages
    from edgefleet.clients.registry import RegistryClient
    from edgefleet.clients.registry_errors import RegistryError
    from edgefleet.domain import signing

    try:
        key = signing.load_private_key(Path(args.signing_key).read_bytes())
        password = Path(args.password_file).read_text().strip() if args.password_file else None
    except (OSError, signing.SigningKeyError) as exc:
        log.error("cannot read the signing key or password", error=str(exc))
        return 2
    with RegistryClient(
        args.registry, ca_bundle=args.registry_ca, username=args.username, password=password
    ) as registry:
        builder = appbuilder.AppImageBuilder(
            registry,
            key,
            Path(args.cache_dir),
            base_repository=args.base_repository,
            base_reference=args.base_reference,
        )
        build = (
            edgefleetimages.build_node_image
            if which == "node"
            else edgefleetimages.build_control_plane_image
        )
        repository = args.repository or f"edgefleet/{which}"
        platforms = args.platform or ("linux/amd64", "linux/arm64")
        try:
            if which == "registry":
                from edgefleet.clients import registryimage

                result = registryimage.build_registry_image(
                    registry, key, Path(args.cache_dir) / "debs", repo=repository,
                    platforms=platforms, tags=args.tag, base_repository=args.base_repository,
                    base_reference=args.base_reference,
                )  # fmt: skip
            else:
                result = build(builder, repository, platforms, tags=args.tag)
        except (appbuilder.AppBuildError, RegistryError, KeyError, ValueError) as exc:
            log.error("image build failed", image=which, error=str(exc))
            return 1
    doc: dict[str, Any] = asdict(result)
    print(json.dumps(doc, indent=2))
    return 0


def _build_base(args: argparse.Namespace) -> int:
    from edgefleet.clients import baseimage, rootfs
    from edgefleet.clients.registry import RegistryClient
    from edgefleet.clients.registry_errors import RegistryError

    try:
        password = Path(args.password_file).read_text().strip() if args.password_file else None
    except OSError as exc:
        log.error("cannot read the password file", error=str(exc))
        return 2
    arches = args.arch or ["amd64", "arm64"]
    unknown = sorted(set(arches) - set(rootfs.PLATFORMS))
    if unknown:
        log.error("unknown architecture", arch=unknown, known=sorted(rootfs.PLATFORMS))
        return 2
    with RegistryClient(
        args.registry, ca_bundle=args.registry_ca, username=args.username, password=password
    ) as registry:
        try:
            digest = baseimage.push_base_index(
                registry, args.repository, arches, tag=args.tag,
                progress=lambda message: log.info("base image", step=message),
            )  # fmt: skip
        except (rootfs.RootfsError, RegistryError, OSError) as exc:
            log.error("base image build failed", error=str(exc))
            return 1
    platforms = [rootfs.PLATFORMS[a] for a in arches]
    print(json.dumps({"repository": args.repository, "tag": args.tag, "index": digest,
                      "platforms": platforms}, indent=2))  # fmt: skip
    return 0


def register(sub: Any) -> None:
    """Add ``image`` and its subcommands to the ``edgefleet`` parser."""
    image = sub.add_parser("image", help="build edgefleet's own images")
    commands = image.add_subparsers(dest="image_command", required=True)
    node = commands.add_parser("build-node", help="build, push and sign the edge-node image")
    control = commands.add_parser(
        "build-control-plane",
        help="build, push and sign the operator and gateway image (edgefleet/control-plane)",
    )
    bundled = commands.add_parser(
        "build-registry",
        help="build, push and sign the chart's bundled registry image (edgefleet/registry)",
    )
    base = commands.add_parser(
        "build-base",
        help="build the Debian base root filesystems (mmdebstrap, as root) and push the "
        "multi-arch base index every edgefleet image starts from",
    )
    _add_registry_arguments(base)
    base.add_argument("--arch", action="append", help="Debian architecture (repeatable; "
                      "default: amd64 and arm64)")  # fmt: skip
    base.add_argument("--repository", default="edgefleet/base")
    base.add_argument("--tag", default="bookworm")
    base.set_defaults(func=_build_base)
    _add_build_arguments(node, _build_node)
    _add_build_arguments(control, _build_control_plane)
    _add_build_arguments(bundled, _build_registry)


def _add_registry_arguments(parser: Any) -> None:
    parser.add_argument("--registry", required=True, help="https://host[:port] of the registry")
    parser.add_argument("--registry-ca", help="CA bundle of the registry (default: system CAs)")
    parser.add_argument("--username", help="registry user name")
    parser.add_argument("--password-file", help="file holding the registry password")


def _add_build_arguments(node: Any, func: Any) -> None:
    _add_registry_arguments(node)
    node.add_argument("--signing-key", required=True, help="PKCS#8 PEM P-256 key (cosign.key)")
    node.add_argument("--repository", help="default: edgefleet/<node|control-plane|registry>")
    node.add_argument("--tag", action="append", help="tag (repeatable; default: the version)")
    node.add_argument("--platform", action="append", help="os/arch (repeatable)")
    node.add_argument("--base-repository", default="edgefleet/base")
    node.add_argument("--base-reference", default="bookworm")
    node.add_argument(
        "--cache-dir",
        default=os.path.expanduser("~/.cache/edgefleet/images"),
        help="wheel (and .deb) cache",
    )
    node.set_defaults(func=func)
