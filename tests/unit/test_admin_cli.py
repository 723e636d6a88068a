"""`edgefleet token` and `edgefleet pki` argument handling that needs no cluster: TTLs,
names and the exit code for bad input (2), checked before any API call is made."""

from __future__ import annotations

import datetime

import pytest

from edgefleet import cli
from edgefleet.clients.tokens import parse_ttl


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", datetime.timedelta(minutes=30)),
        ("24h", datetime.timedelta(hours=24)),
        ("7d", datetime.timedelta(days=7)),
        ("1d12h", datetime.timedelta(days=1, hours=12)),
        (" 90s ", datetime.timedelta(seconds=90)),
    ],
)
def test_ttls(text, expected):
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "forever", "10", "-1h", "59s", "31d", "1h30x"])
def test_bad_ttls(text):
    with pytest.raises(ValueError, match="TTL"):
        parse_ttl(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "create", "cam-1", "--ttl", "forever"], "not a duration"),
        (["token", "create", "Cam_1"], "is not a DNS label"),
        (["token", "create", "cam-1", "-n", "Bad_NS"], "is not a DNS label"),
        (["pki", "rotate", "device-ca", "--min-overlap", "soon"], "not a duration"),
    ],
)
def test_bad_input_exits_2_before_touching_the_cluster(argv, message, capsys, tmp_path):
    missing = tmp_path / "no-such-kubeconfig"  # any API call would fail differently
    code = cli.main([*argv, "--kubeconfig", str(missing)])
    out = capsys.readouterr()
    assert code == 2
    assert message in out.err
    assert out.out == ""
