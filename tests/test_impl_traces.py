"""The shipped implementation traces (traces/impl) replay with no divergence, and the
implementation still produces exactly them."""

from __future__ import annotations

from pathlib import Path

import pytest
from dioconf.impl.examples import EXAMPLES, write_examples
from dioconf.traces.format import read_trace
from dioconf.traces.replay import replay_trace

IMPL = Path(__file__).resolve().parents[1] / "traces" / "impl"
SHIPPED = sorted(IMPL.glob("*.jsonl"))


def test_every_example_and_filesystem_is_shipped():
    expected = {f"{fs}-{name}" for name, (_, fss) in EXAMPLES.items() for fs in fss}
    assert {p.stem for p in SHIPPED} == expected
    assert len(SHIPPED) >= 25


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_impl_trace_replays(path):
    trace = read_trace(path)
    assert trace.header.raw["source"] == "impl"
    result = replay_trace(trace)
    assert result.ok, result.divergence


def test_the_implementation_reproduces_the_shipped_traces(tmp_path):
    """Deterministic mode: the same examples give byte-identical traces."""
    fresh = write_examples(tmp_path / "out", tmp_path)
    for path in fresh:
        shipped = IMPL / path.name
        assert path.read_text() == shipped.read_text(), f"{shipped} differs; regenerate it"
