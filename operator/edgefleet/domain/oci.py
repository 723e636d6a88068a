"""Daemonless OCI image assembly: the public face of the ``oci_*`` modules.

Everything needed to build and read images without a Docker daemon, as pure
functions over bytes: media types, :class:`Platform`, :class:`Descriptor`,
:class:`Blob`, byte-reproducible layers (:func:`build_layer`, :func:`layer_from_tar`),
deterministic configs, manifests and indexes, and validating parsers. Nothing here
performs I/O except reading a tarball the caller names.
"""

from __future__ import annotations

from edgefleet.domain.oci_images import EPOCH, image_config, image_index, image_manifest
from edgefleet.domain.oci_layers import (
    DEFAULT_COMPRESSLEVEL,
    FileEntry,
    Layer,
    build_layer,
    layer_from_tar,
)
from edgefleet_node.oci.parse import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    parse_config,
    parse_image_document,
    parse_index,
    parse_manifest,
)
from edgefleet_node.oci.types import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    INDEX_MEDIA_TYPES,
    LAYER_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Blob,
    Descriptor,
    OCIError,
    Platform,
    canonical_json,
    check_digest,
    sha256_digest,
)

__all__ = [
    "DEFAULT_COMPRESSLEVEL",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EPOCH",
    "INDEX_MEDIA_TYPES",
    "LAYER_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_CONFIG_SIZE",
    "MAX_MANIFEST_SIZE",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_MANIFEST",
    "Blob",
    "Descriptor",
    "FileEntry",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "Layer",
    "OCIError",
    "Platform",
    "build_layer",
    "canonical_json",
    "check_digest",
    "image_config",
    "image_index",
    "image_manifest",
    "layer_from_tar",
    "parse_config",
    "parse_image_document",
    "parse_index",
    "parse_manifest",
    "sha256_digest",
]
