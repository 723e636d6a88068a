"""Building the probe request and judging the answer against expected ± tolerance."""

from __future__ import annotations

import json

import pytest

from edgefleet_node.agent.workload_http import Answer, judge, nest, probe_body
from edgefleet_node.protocol.desired import Probe

PROBE = Probe("input", (1, 3), (0.5, 1.0, -2.0), "output", (1.0, 2.0), 0.01)


def test_nest_reshapes_row_major():
    assert nest([1, 2, 3, 4, 5, 6], [2, 3]) == [[1, 2, 3], [4, 5, 6]]
    assert nest([1, 2, 3, 4], [2, 1, 2]) == [[[1, 2]], [[3, 4]]]
    assert nest([7], [1]) == [7]
    with pytest.raises(ValueError, match="holds 6 values"):
        nest([1, 2], [2, 3])


def test_probe_body_is_the_predict_request():
    assert json.loads(probe_body(PROBE)) == {"inputs": {"input": [[0.5, 1.0, -2.0]]}}


def _answer(outputs, status=200):
    return Answer(status, json.dumps({"outputs": outputs}).encode())


@pytest.mark.parametrize(
    ("answer", "ok", "words"),
    [
        (_answer({"output": [[1.0, 2.005]]}), True, ""),
        (_answer({"output": [[1.0, 2.5]]}), False, "differs from the expected answer by up to 0.5"),
        (_answer({"output": [[1.0]]}), False, "has 1 values"),
        (_answer({"other": [[1.0, 2.0]]}), False, "no usable 'output'"),
        (_answer({"output": [[1.0, "x"]]}), False, "no usable"),
        (Answer(500, b'{"error": "boom"}'), False, "predict answered 500"),
        (Answer(200, b"not json"), False, "no usable"),
    ],
)
def test_judge(answer, ok, words):
    verdict = judge(PROBE, answer)
    assert verdict.ok is ok
    assert words in verdict.message
