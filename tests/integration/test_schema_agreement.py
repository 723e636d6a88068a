"""The pydantic models and the CRD schemas agree on what is valid.

Objects are generated from each CRD's own OpenAPI schema (tests/strategies.py), so
most satisfy the structural schema but only some satisfy the CEL rules, and a few
break the schema itself. Each goes to
the real API server (dry run, strict field validation) and through the pydantic
model: both must accept it, or both must reject it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from edgefleet.api import GROUP, KIND_MODELS, VERSION
from edgefleet.api.crd import KINDS, KindInfo, structural
from tests.cases import example as example_object
from tests.strategies import from_structural

EXAMPLES_PER_KIND = 100


@pytest.fixture(scope="module")
def server(crds):
    api_client = config.new_client_from_config(config_file=str(crds.kubeconfig))
    ns = f"agree-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", ns)
    try:
        yield client.CustomObjectsApi(api_client), ns
    finally:
        crds.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        api_client.close()


def _server_accepts(api: Any, ns: str, info: KindInfo, obj: dict[str, Any]) -> tuple[bool, str]:
    try:
        api.create_namespaced_custom_object(
            GROUP, VERSION, ns, info.plural, obj, dry_run="All", field_validation="Strict"
        )
    except ApiException as err:
        if err.status not in (400, 422):
            raise
        return False, json.loads(err.body).get("message", "")
    return True, ""


def _pydantic_accepts(info: KindInfo, obj: dict[str, Any]) -> tuple[bool, str]:
    try:
        KIND_MODELS[info.kind].model_validate(obj)
    except ValidationError as err:
        return False, str(err)
    return True, ""


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_pydantic_and_api_server_agree(server, info: KindInfo):
    api, ns = server
    spec_schema = structural(info.model)["properties"]["spec"]
    names = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")
    seen = {"accepted": 0, "rejected": 0}

    @settings(
        max_examples=EXAMPLES_PER_KIND,
        deadline=None,
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(name=names, spec=from_structural(spec_schema))
    @example(name="from-the-examples", spec=example_object(info.kind)["spec"])
    def check(name: str, spec: dict[str, Any]) -> None:
        obj = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": info.kind,
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
        by_server, server_msg = _server_accepts(api, ns, info, obj)
        by_model, model_msg = _pydantic_accepts(info, obj)
        assert by_server == by_model, (
            f"disagreement on {json.dumps(spec)}:\n server: {by_server} {server_msg}\n"
            f" pydantic: {by_model} {model_msg}"
        )
        seen["accepted" if by_server else "rejected"] += 1

    check()
    # The generator must exercise both sides, or the test proves nothing.
    assert seen["accepted"] > 0, seen
    assert seen["rejected"] > 0, seen
