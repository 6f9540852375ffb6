"""``replay_file`` replays a file as it reads it: memory does not grow with the file's
length (a recording of 10^6 requests replays in flat memory), and a malformed line is
still reported as such when the replay diverged before it."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from dioconf.bench.replay import generate_lines
from dioconf.traces.format import TraceFormatError
from dioconf.traces.replay import replay_file


def _peak(path: Path) -> int:
    tracemalloc.start()
    try:
        assert replay_file(str(path)).ok
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_per_event_is_a_few_bytes(tmp_path: Path) -> None:
    """What a replay keeps of a finished request is two line numbers (for the checks
    of duplicate ``begin``/``complete`` lines); before, it kept every parsed event
    (over 1 KiB each)."""
    path = tmp_path / "large.jsonl"
    events = 40_000
    path.write_text("\n".join(generate_lines(events)) + "\n")
    per_event = _peak(path) / events
    assert per_event < 100, f"{per_event:.0f} bytes per event"


def test_a_malformed_line_after_a_divergence_is_a_format_error(tmp_path: Path) -> None:
    lines = generate_lines(60)
    first = next(i for i, ln in enumerate(lines) if '"ev": "complete"' in ln)
    ev = json.loads(lines[first])
    ev["ret"] += 512  # the model predicts otherwise: a divergence at this line
    lines[first] = json.dumps(ev)
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert not replay_file(str(path)).ok  # diverges
    path.write_text("\n".join([*lines, '{"ev": "complete", "req": 1, "ret": 0}']) + "\n")
    with pytest.raises(TraceFormatError, match="duplicate \"complete\""):
        replay_file(str(path))  # the last line is malformed: that is what is reported
