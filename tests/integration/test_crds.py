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
from tests.cases import CASES, EXAMPLES, Case, example

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


def test_a_desired_probe_that_does_not_fill_its_shape_is_refused_in_status(api, namespace):
    """EdgeDevice status carries the InferenceModel's probe type, with the same rule."""
    device = example("EdgeDevice")
    device["metadata"]["namespace"] = namespace
    name = device["metadata"]["name"]
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, "edgedevices", device)
    try:
        workload = {
            "model": "det", "version": "1.0.0", "repository": "edgefleet/models/ns/det",
            "indexDigest": "sha256:" + "a" * 64, "imageDigest": "sha256:" + "b" * 64,
            "probe": {"inputName": "x", "shape": [1, 4], "values": [0.0] * 4,
                      "outputName": "y", "expected": [1.0]},
        }  # fmt: skip
        body = {"status": {"desired": [workload]}}
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "edgedevices", name, body
        )
        workload["probe"]["values"] = [0.0] * 3  # shape [1, 4] needs 4
        with pytest.raises(ApiException) as err:
            api.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, "edgedevices", name, body
            )
        assert err.value.status == 422, err.value.body
        assert "values must fill shape" in json.loads(err.value.body)["message"]
        stored = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "edgedevices", name)
        assert stored["status"]["desired"][0]["probe"]["values"] == [0.0] * 4
    finally:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, "edgedevices", name)
