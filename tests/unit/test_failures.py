"""One mapping from exception to (reason, temporary|permanent)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgefleet.api.conditions import Reason
from edgefleet.api.inferencemodel_parts import Probe
from edgefleet.clients.registry_errors import (
    BlobTooLargeError,
    DigestMismatchError,
    RegistryError,
    error_from_response,
)
from edgefleet.domain.failures import FailureError, classify, retry_delay
from edgefleet.domain.oci import OCIError
from edgefleet.domain.runtime_lock import LockError
from edgefleet.domain.runtime_pins import UnsupportedPlatformError, runtime_for


def _invalid() -> ValidationError:
    try:
        Probe.model_validate({"inputName": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


CASES = [
    ("401", error_from_response(401, b"", "GET blob"), Reason.REGISTRY_ACCESS_DENIED, True),
    ("403", error_from_response(403, b"", "PUT manifest"), Reason.REGISTRY_ACCESS_DENIED, True),
    ("404", error_from_response(404, b"", "GET manifest"), Reason.REGISTRY_ERROR, False),
    ("429", error_from_response(429, b"", "GET blob"), Reason.REGISTRY_ERROR, False),
    ("500", error_from_response(500, b"", "GET blob"), Reason.REGISTRY_ERROR, False),
    ("400", error_from_response(400, b"", "PUT manifest"), Reason.REGISTRY_ERROR, True),
    ("timeout", RegistryError("ReadTimeout", code="TRANSPORT"), Reason.REGISTRY_ERROR, False),
    ("digest", DigestMismatchError("differs", operation="GET"), Reason.REGISTRY_ERROR, True),
    ("too-large", BlobTooLargeError("too big", operation="GET"), Reason.REGISTRY_ERROR, True),
    ("oci", OCIError("not a manifest"), Reason.INVALID_CONTENT, True),
    ("body", _invalid(), Reason.INVALID_SPEC, True),
    ("lock", LockError("pins differ"), Reason.BUILD_FAILED, True),
    (
        "platform",
        UnsupportedPlatformError(runtime_for("linux/arm/v7")),
        Reason.UNSUPPORTED_PLATFORM,
        True,
    ),
    (
        "typed",
        FailureError(Reason.SIGNING_FAILED, "x", permanent=True),
        Reason.SIGNING_FAILED,
        True,
    ),
    ("unexpected", ZeroDivisionError("division by zero"), Reason.INTERNAL_ERROR, False),
]


@pytest.mark.parametrize(
    ("exc", "reason", "permanent"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_classify(exc, reason, permanent):
    failure = classify(exc)
    assert (failure.reason, failure.permanent) == (reason, permanent)
    assert failure.message


def test_messages_are_bounded_and_name_the_type_of_unexpected_errors():
    failure = classify(RuntimeError("x" * 10_000))
    assert len(failure.message) < 2100
    assert failure.message.startswith("RuntimeError")


def test_retry_delay_grows_and_is_capped():
    assert [retry_delay(r) for r in range(3)] == [10.0, 20.0, 40.0]
    assert retry_delay(50) == 300.0


def test_a_name_the_registry_grammar_refuses_is_permanent():
    from edgefleet.clients.registry_model import check_repo

    with pytest.raises(RegistryError) as info:
        check_repo("Not/Valid")
    assert classify(info.value).permanent
