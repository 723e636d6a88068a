"""The inference server that runs inside every edgefleet model image.

This package is copied into images as plain files (see
:mod:`edgefleet.domain.runtime_layer`) and runs on the device under the system
``python3`` with only numpy and onnxruntime beside it. So it imports nothing but
the standard library, numpy and onnxruntime, and those two only when a model is
loaded: ``import edgefleet.serving`` works without them. It never imports any
other part of ``edgefleet``; ``tests/unit/test_serving_imports.py`` checks that.

Run it with ``python3 -m edgefleet.serving``; :mod:`edgefleet.serving.config`
lists the environment variables it reads.
"""

from __future__ import annotations

from edgefleet.serving.config import ConfigError, ServingConfig
from edgefleet.serving.logs import JsonLog
from edgefleet.serving.model import InputError, ModelError, ModelInfo
from edgefleet.serving.server import ServingServer

__all__ = [
    "ConfigError",
    "InputError",
    "JsonLog",
    "ModelError",
    "ModelInfo",
    "ServingConfig",
    "ServingServer",
]
