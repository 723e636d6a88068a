"""The edgefleet API (group ``edgefleet.io``, version ``v1alpha1``) as pydantic models.

These models are the single source of the CRD schemas in ``crds/`` (see
:mod:`edgefleet.api.crd`), and the operator parses every object through them.
"""

from __future__ import annotations

from edgefleet.api.edgedevice import EdgeDevice
from edgefleet.api.inferencemodel import InferenceModel
from edgefleet.api.meta import API_VERSION, GROUP, VERSION, ApiModel
from edgefleet.api.rollout import Rollout

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND_MODELS",
    "VERSION",
    "ApiModel",
    "EdgeDevice",
    "InferenceModel",
    "Rollout",
]

#: Kind name → model.
KIND_MODELS: dict[str, type[ApiModel]] = {
    "EdgeDevice": EdgeDevice,
    "InferenceModel": InferenceModel,
    "Rollout": Rollout,
}
