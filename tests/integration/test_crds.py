"""The generated CRDs, the examples and validation, against a real API server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from edgefleet.api import GROUP, VERSION
from edgefleet.api.crd import KINDS
from tests.cases import CASES, EXAMPLES, Case

PLURALS = {k.kind: k.plural for k in KINDS}


@pytest.fixture(scope="module")
def api(crds) -> Any:
    api_client = config.new_client_from_config(config_file=str(crds.kubeconfig))
    try:
        yield client.CustomObjectsApi(api_client)
    finally:
        api_client.close()


def test_crds_are_established_with_names_and_categories(crds):
    out = json.loads(
        crds.kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=edgefleet", "-o", "json").stdout
    )
    by_kind = {c["spec"]["names"]["kind"]: c for c in out["items"]}
    assert set(by_kind) == {"InferenceModel", "EdgeDevice", "Rollout"}
    for crd in by_kind.values():
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert "edgefleet" in crd["spec"]["names"]["categories"]
    assert "ro" not in by_kind["Rollout"]["spec"]["names"]["shortNames"]  # Argo Rollouts owns it


def test_examples_apply_and_print_columns(crds):
    applied = crds.kubectl("apply", "-f", str(EXAMPLES))
    try:
        assert "edgedevice.edgefleet.io/berlin-line1-pi-01 created" in applied.stdout
        table = crds.kubectl("get", "edgefleet", "-A").stdout
        headers = [set(line.split()) for line in table.splitlines() if line.startswith("NAMESPACE")]
        assert len(headers) == 3, table
        # One table per kind, each with its printer columns.
        assert any({"PLATFORM", "SITE", "ONLINE", "READY"} <= h for h in headers)
        assert any({"VERSION", "PLATFORMS", "READY", "REASON"} <= h for h in headers)
        assert any({"MODEL", "VERSION", "PHASE", "STEP", "UPDATED"} <= h for h in headers)
        for text in ("berlin-line1-x86", "linux/amd64", "berlin"):
            assert text in table
        assert "defect-detector-berlin" in table
        # Short names resolve.
        assert "munich-gate-jetson" in crds.kubectl("get", "efdev", "-n", "edgefleet-demo").stdout
        # Defaults from the schema are applied by the server.
        ro = json.loads(
            crds.kubectl(
                "get",
                "rollouts.edgefleet.io",
                "defect-detector-berlin",
                "-n",
                "edgefleet-demo",
                "-o",
                "json",
            ).stdout
        )
        assert ro["spec"]["priority"] == 0
        assert ro["spec"]["healthGate"]["minHealthyDuration"] == "1m"
    finally:
        crds.kubectl("delete", "-f", str(EXAMPLES), "--wait=false", check=False)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_api_server_rejects_invalid_object(api, namespace, case: Case):
    body = case.build()
    body["metadata"]["namespace"] = namespace
    with pytest.raises(ApiException) as err:
        api.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURALS[case.kind],
            body,
            dry_run="All",
            field_validation="Strict",
        )
    assert err.value.status in (400, 422), err.value.body
    message = json.loads(err.value.body)["message"]
    assert case.mentions in message, message


def test_valid_examples_pass_dry_run(api, namespace):
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj["kind"] not in PLURALS:
                continue
            obj["metadata"]["namespace"] = namespace
            created = api.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURALS[obj["kind"]],
                obj,
                dry_run="All",
                field_validation="Strict",
            )
            assert created["metadata"]["name"] == obj["metadata"]["name"]
