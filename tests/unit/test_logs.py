"""One log stream: structlog events and stdlib records (kopf's too) rendered alike."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from edgefleet import logs


@pytest.fixture
def stream():
    out = io.StringIO()
    logs.configure(json=True, stream=out)
    try:
        yield out
    finally:
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_structlog_and_stdlib_records_are_one_json_stream(stream):
    structlog.get_logger("edgefleet.test").info("build started", namespace="ns", name="m")
    logging.getLogger("kopf.objects").info(
        "Handler %r succeeded.",
        "reconcile_model",
        extra={"k8s_ref": {"namespace": "ns", "name": "m"}},
    )
    ours, kopfs = _lines(stream)
    assert ours["event"] == "build started"
    assert kopfs["event"] == "Handler 'reconcile_model' succeeded."
    for line in (ours, kopfs):
        assert (line["namespace"], line["name"]) == ("ns", "m")
        assert line["level"] == "info"
        assert line["timestamp"].endswith("Z")
    assert (ours["logger"], kopfs["logger"]) == ("edgefleet.test", "kopf.objects")


def test_secrets_are_redacted_at_any_depth(stream):
    structlog.get_logger("t").warning(
        "request failed",
        headers={"Authorization": "Bearer abc-SECRET1", "Accept": "json"},
        items=[{"registry": {"password": "pw-SECRET2"}}],
        token="tok-SECRET3",
    )
    logging.getLogger("lib").warning("lib says", extra={"auth": {"client_secret": "s"}})
    text = stream.getvalue()
    for secret in ("SECRET1", "SECRET2", "SECRET3", "client_secret"):
        assert secret not in text
    line = _lines(stream)[0]
    assert line["headers"] == {"Authorization": "[redacted]", "Accept": "json"}
    assert line["items"] == [{"registry": {"password": "[redacted]"}}]


def test_levels_filter_and_chatty_libraries_are_quiet(stream):
    structlog.get_logger("t").debug("hidden")
    logging.getLogger("httpx").info("HTTP Request: GET …")
    logging.getLogger("httpx").warning("retrying")
    assert [line["event"] for line in _lines(stream)] == ["retrying"]


def test_exceptions_are_rendered(stream):
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("kopf").exception("handler failed")
    line = _lines(stream)[0]
    assert "ValueError: bad" in line["exception"]


def test_console_rendering_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    logs.configure(stream=out)
    try:
        structlog.get_logger("t").info("hello", name="m")
        logging.getLogger("kopf").info("kopf hello")
        text = out.getvalue()
        assert "name=m" in text
        assert "kopf hello" in text
        assert not text.lstrip().startswith("{")
    finally:
        structlog.reset_defaults()
        for handler in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(handler)
