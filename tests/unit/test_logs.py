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
    line = _lines(stream)[0]
    assert line["headers"] == {"Authorization": "[redacted]", "Accept": "json"}
    assert line["items"] == [{"registry": {"password": "[redacted]"}}]
    assert line["token"] == "[redacted]"
    for secret in ("SECRET1", "SECRET2", "SECRET3"):
        assert secret not in stream.getvalue()


def test_a_stdlib_records_arguments_are_redacted_before_formatting(stream):
    lib = logging.getLogger("lib")
    lib.warning("login %(user)s with %(password)s", {"user": "ada", "password": "pw-SECRET4"})
    lib.warning("config %s", {"registry": {"url": "r.test", "apiKey": "k-SECRET5"}})
    lib.warning("pair %s %s", "x", {"passphrase": "p-SECRET6"})
    lib.warning("%d%% done", 50)
    events = [line["event"] for line in _lines(stream)]
    assert events == [
        "login ada with [redacted]",
        "config {'registry': {'url': 'r.test', 'apiKey': '[redacted]'}}",
        "pair x {'passphrase': '[redacted]'}",
        "50% done",
    ]
    for secret in ("SECRET4", "SECRET5", "SECRET6"):
        assert secret not in stream.getvalue()


def test_a_stdlib_records_extras_are_dropped_but_kopfs_object(stream):
    # Extras may be any object, and redaction by key cannot see into a repr: only
    # kopf's k8s_ref passes, reduced to the object's namespace and name.
    logging.getLogger("lib").warning(
        "lib says",
        extra={
            "auth": {"client_secret": "s-SECRET7"},
            "client": "Client(password='SECRET8')",
            "k8s_ref": {"namespace": "ns", "name": "m", "uid": "u-1", "token": "SECRET9"},
        },
    )
    line = _lines(stream)[0]
    assert set(line) == {"event", "level", "logger", "timestamp", "namespace", "name"}
    assert (line["namespace"], line["name"]) == ("ns", "m")
    for secret in ("SECRET7", "SECRET8", "SECRET9", "client_secret"):
        assert secret not in stream.getvalue()


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_passwd",
        "passphrase",
        "KEY_PASSPHRASE",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "registry_token",
        "client_secret",
        "private_key_pem",
        "Authorization",
        "Proxy-Authorization",
        "credentials",
        "Cookie",
        "Set-Cookie",
    ],
)
def test_secret_looking_keys_are_redacted(stream, key):
    structlog.get_logger("t").info("event", **{key: "v-SECRET"}, nested={"a": [{key: "v-SECRET"}]})
    line = _lines(stream)[0]
    assert line[key] == "[redacted]"
    assert line["nested"] == {"a": [{key: "[redacted]"}]}


@pytest.mark.parametrize("key", ["name", "namespace", "digest", "keyId", "monkey", "cookbook"])
def test_ordinary_keys_are_kept(stream, key):
    structlog.get_logger("t").info("event", **{key: "v"})
    assert _lines(stream)[0][key] == "v"


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
