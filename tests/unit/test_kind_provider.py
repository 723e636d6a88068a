"""The kind provider is opt-in and says every reason it cannot run."""

from __future__ import annotations

import socket

from edgefleet.testing import kind


def test_kind_is_opt_in(monkeypatch):
    monkeypatch.delenv(kind.ENV, raising=False)
    assert not kind.selected()
    monkeypatch.setenv(kind.ENV, "kind")
    assert kind.selected()


def test_every_missing_piece_is_named(monkeypatch):
    monkeypatch.setattr(kind.shutil, "which", lambda _name: None)
    monkeypatch.delenv(kind.NODE_IMAGE_ENV, raising=False)

    def unreachable(*_args, **_kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(kind.socket, "create_connection", unreachable)
    reason = kind.kind_unavailable() or ""
    assert "no kind binary on PATH" in reason
    assert "no docker client on PATH" in reason
    assert "Docker Hub, which this network cannot reach" in reason
