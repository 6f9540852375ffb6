"""The hand-written traces under traces/hand/ and what replaying them must catch.

Every hand trace's expected outputs were worked out from the seed kernel code (the
arithmetic is in each trace's ``note``); these tests check that they replay cleanly, and
that altered copies - a wrong ``ret``, a missing flush, a FUA bit where none is allowed,
... - are reported as divergences at exactly the altered line and request. Nothing here
asks the model what the right answer is: the expected divergence position comes from
where the alteration was made.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dioconf.traces.format import dump_line, event_dict, parse_trace, read_trace
from dioconf.traces.replay import FileResult, replay_trace

from dioconf.cli import main

HAND = Path(__file__).resolve().parents[1] / "traces" / "hand"
EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "trace-examples"
HAND_TRACES = sorted(HAND.glob("*.jsonl"))  # legacy-*.jsonl files join automatically
EXAMPLE_NAMES = ("aligned-read-one-extent.jsonl", "async-write-queued.jsonl")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# --------------------------------------------------------------------------- helpers


def lines_of(name: str) -> list[str]:
    """The lines of the hand trace ``name`` (no newlines)."""
    return (HAND / name).read_text(encoding="utf-8").splitlines()


def replay_lines(lines: list[str], path: str = "altered.jsonl") -> FileResult:
    return replay_trace(parse_trace(lines, path))


def find(lines: list[str], ev: str, req: int, nth: int = 0) -> int:
    """0-based index in ``lines`` of the ``nth`` ``ev`` event of request ``req``."""
    hits = [e.line - 1 for e in parse_trace(lines).events if e.ev == ev and e.req == req]
    assert len(hits) > nth, f"no {ev} #{nth} for req {req}"
    return hits[nth]


def changed(lines: list[str], index: int, **fields: Any) -> list[str]:
    """A copy of ``lines`` whose event at ``index`` has ``fields`` changed."""
    (event,) = [e for e in parse_trace(lines).events if e.line == index + 1]
    obj = event_dict(event)
    obj.update(fields)
    out = list(lines)
    out[index] = dump_line(obj)
    return out


def removed(lines: list[str], index: int) -> list[str]:
    return lines[:index] + lines[index + 1 :]


def inserted(lines: list[str], index: int, obj: dict[str, Any]) -> list[str]:
    """A copy of ``lines`` with ``obj`` as a new line before ``lines[index]``."""
    return [*lines[:index], dump_line(obj), *lines[index:]]


def assert_diverges(result: FileResult, line: int, req: int) -> str:
    """The replay diverged at (``line``, ``req``); returns what the model predicted."""
    assert not result.ok, "the altered trace replayed without a divergence"
    d = result.divergence
    assert d is not None
    assert (d.line, d.req) == (line, req), (
        f"diverged at line {d.line} req {d.req}, expected line {line} req {req}: "
        f"trace says {d.trace_says!r}, model predicts {d.model_predicts!r} ({d.rule})"
    )
    assert d.trace_says and d.model_predicts and d.rule
    return d.model_predicts


def base(name: str) -> list[str]:
    """The hand trace ``name``, checked to replay cleanly before it is altered."""
    lines = lines_of(name)
    result = replay_lines(lines, name)
    assert result.ok, f"{name} does not replay cleanly: {result.divergence}"
    return lines


# --------------------------------------------------------------------------- the hand traces


def test_at_least_twenty_hand_traces():
    assert len(HAND_TRACES) >= 20
    assert len([p for p in HAND_TRACES if p.name.startswith("iomap-")]) >= 20


@pytest.mark.parametrize("path", HAND_TRACES, ids=_ids(HAND_TRACES))
def test_hand_trace_header(path: Path):
    header = read_trace(path).header
    assert header.source == "hand"
    assert isinstance(header.note, str) and header.note.strip(), "a hand trace needs a note"


@pytest.mark.parametrize("path", HAND_TRACES, ids=_ids(HAND_TRACES))
def test_hand_trace_replays(path: Path):
    trace = read_trace(path)
    assert trace.events, "empty trace"
    result = replay_trace(trace)
    d = result.divergence
    assert result.ok, (
        f"{path.name}:{d.line} req {d.req}: trace says {d.trace_says!r}, "
        f"model predicts {d.model_predicts!r} ({d.rule})"
    )
    begun = {e.req for e in trace.events if e.ev == "begin"}
    completed = {e.req for e in trace.events if e.ev == "complete"}
    assert begun == completed, "every request of a hand trace states its result"


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_shared_examples_replay(name: str):
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"shared trace example {path} is missing")
    result = replay_trace(read_trace(path))
    assert result.ok, result.divergence


@pytest.mark.parametrize("path", HAND_TRACES, ids=_ids(HAND_TRACES))
def test_every_complete_ret_plus_one_diverges_there(path: Path):
    lines = base(path.name)
    completes = [e for e in parse_trace(lines).events if e.ev == "complete"]
    assert completes
    for e in completes:
        altered = changed(lines, e.line - 1, ret=e.fields["ret"] + 1)
        predicts = assert_diverges(replay_lines(altered, path.name), e.line, e.req)
        assert f"ret={e.fields['ret']} " in predicts + " "


# --------------------------------------------------------------------------- altered copies


def test_wrong_ret_is_reported():
    # short read: the cap at i_size - pos gives 1808; the uncapped dio->size is 8192
    lines = base("iomap-short-read-eof.jsonl")
    i = find(lines, "complete", 1)
    predicts = assert_diverges(replay_lines(changed(lines, i, ret=8192)), i + 1, 1)
    assert "ret=1808" in predicts


def test_wrong_pos_after_is_reported():
    lines = base("iomap-short-read-eof.jsonl")
    i = find(lines, "complete", 1)
    predicts = assert_diverges(replay_lines(changed(lines, i, pos_after=16384)), i + 1, 1)
    assert "pos_after=10000" in predicts


def test_missing_flush_is_reported():
    # O_DSYNC on a cache without FUA: generic_write_sync must flush before completing
    lines = base("iomap-dsync-no-fua-device.jsonl")
    i = find(lines, "flush", 1)
    predicts = assert_diverges(replay_lines(removed(lines, i)), i + 1, 1)
    assert predicts.startswith("flush")


def test_extra_flush_is_reported():
    # O_DSYNC written through with FUA: no flush at completion
    lines = base("iomap-dsync-fua-device.jsonl")
    i = find(lines, "complete", 1)
    altered = inserted(lines, i, {"ev": "flush", "req": 1})
    predicts = assert_diverges(replay_lines(altered), i + 1, 1)
    assert predicts.startswith("complete")


def test_missing_head_zero_bio_is_reported():
    lines = base("iomap-subblock-zeroing.jsonl")
    i = find(lines, "bio", 1, 0)  # head pad of the UNWRITTEN sub-block write
    assert json.loads(lines[i])["zero"] is True
    predicts = assert_diverges(replay_lines(removed(lines, i)), i + 1, 1)
    assert "zero" in predicts


def test_missing_tail_zero_bio_is_reported():
    lines = base("iomap-subblock-zeroing.jsonl")
    i = find(lines, "bio", 4, 1)  # tail pad of the write straddling EOF
    assert json.loads(lines[i])["zero"] is True
    predicts = assert_diverges(replay_lines(removed(lines, i)), i + 1, 4)
    assert "zero" in predicts


def test_fua_where_none_is_allowed_is_reported():
    lines = base("iomap-dsync-no-fua-device.jsonl")
    i = find(lines, "bio", 1)
    assert json.loads(lines[i])["fua"] is False
    predicts = assert_diverges(replay_lines(changed(lines, i, fua=True)), i + 1, 1)
    assert "fua=false" in predicts


def test_fua_on_zero_bio_is_reported():
    # iomap_dio_zero never sets REQ_FUA, even when the data bio beside it has it
    lines = base("iomap-dsync-fua-device.jsonl")
    i = find(lines, "bio", 5, 1)
    assert json.loads(lines[i])["zero"] is True
    assert_diverges(replay_lines(changed(lines, i, fua=True)), i + 1, 5)


def test_missing_fua_where_required_is_reported():
    lines = base("iomap-dsync-fua-device.jsonl")
    i = find(lines, "bio", 1)
    assert json.loads(lines[i])["fua"] is True
    predicts = assert_diverges(replay_lines(changed(lines, i, fua=False)), i + 1, 1)
    assert "fua=true" in predicts


def test_bio_after_error_stopped_submission_is_reported():
    lines = base("iomap-error-stops-submission.jsonl")
    i = find(lines, "map", 1, 1) + 1  # right after the second extent was mapped
    extra = {"ev": "bio", "req": 1, "op": "write", "addr": 8388608, "len": 4096, "fua": False}
    predicts = assert_diverges(replay_lines(inserted(lines, i, extra)), i + 1, 1)
    assert predicts.startswith("complete") and "ret=-5" in predicts


def test_removed_queued_with_its_bio_end_is_reported():
    # nothing completes the bio before the submitter drops its reference: the model must
    # announce -EIOCBQUEUED where the trace goes straight to the completion
    lines = base("iomap-async-completion-ctx.jsonl")
    q = find(lines, "queued", 1)
    assert find(lines, "bio_end", 1) == q + 1
    altered = removed(removed(lines, q + 1), q)
    predicts = assert_diverges(replay_lines(altered), q + 1, 1)
    assert predicts.startswith("queued")


def test_removed_queued_line_is_reported():
    # without the queued line the bio_end comes before the submitter's reference drop:
    # the submitter would then complete the request itself, so ctx workqueue is wrong
    lines = base("iomap-async-completion-ctx.jsonl")
    q = find(lines, "queued", 4)
    c = find(lines, "complete", 4)
    predicts = assert_diverges(replay_lines(removed(lines, q)), c, 4)
    assert "ctx=submitter" in predicts


def test_queued_added_to_sync_trace_is_reported():
    lines = base("iomap-short-read-eof.jsonl")
    i = find(lines, "bio", 1) + 1
    altered = inserted(lines, i, {"ev": "queued", "req": 1})
    assert_diverges(replay_lines(altered), i + 1, 1)


def test_wrong_bio_addr_is_reported():
    lines = base("iomap-large-write-split.jsonl")
    i = find(lines, "bio", 1, 1)
    addr = json.loads(lines[i])["addr"]
    predicts = assert_diverges(replay_lines(changed(lines, i, addr=addr + 4096)), i + 1, 1)
    assert f"addr={addr}" in predicts


def test_unaligned_bio_len_diverges_without_crashing():
    lines = base("iomap-large-write-split.jsonl")
    i = find(lines, "bio", 1, 0)
    assert json.loads(lines[i])["len"] == 1048576
    predicts = assert_diverges(replay_lines(changed(lines, i, len=1048000)), i + 1, 1)
    assert "len=1048576" in predicts


def test_wrong_ctx_is_reported():
    # async overwrite with pages in the cache: iomap_dio_done defers to the workqueue
    lines = base("iomap-async-completion-ctx.jsonl")
    i = find(lines, "complete", 2)
    assert json.loads(lines[i])["ctx"] == "workqueue"
    predicts = assert_diverges(replay_lines(changed(lines, i, ctx="inline")), i + 1, 2)
    assert "ctx=workqueue" in predicts


def test_removed_map_is_reported():
    # the engine re-asks ->iomap_begin at 8192 after the HOLE extent; the trace never answers
    lines = base("iomap-read-hole-unwritten.jsonl")
    i = find(lines, "map", 1, 1)
    predicts = assert_diverges(replay_lines(removed(lines, i)), i + 1, 1)
    assert "mapping" in predicts and "8192" in predicts


def test_wrong_end_io_is_reported():
    lines = base("iomap-subblock-zeroing.jsonl")
    i = find(lines, "complete", 1)
    assert_diverges(replay_lines(changed(lines, i, end_io=[])), i + 1, 1)


# --------------------------------------------------------------------------- the CLI


def _altered_file(tmp_path: Path) -> tuple[Path, int]:
    lines = base("iomap-short-read-eof.jsonl")
    i = find(lines, "complete", 1)
    path = tmp_path / "altered-short-read.jsonl"
    path.write_text("\n".join(changed(lines, i, ret=8192)) + "\n", encoding="utf-8")
    return path, i + 1


def test_cli_passes_hand_traces(capsys):
    assert main(["replay", str(HAND)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{len(HAND_TRACES)} passed, 0 failed"
    for path in HAND_TRACES:
        assert any(line.startswith("PASS") and path.name in line for line in out), path.name


def test_cli_reports_divergence(tmp_path, capsys):
    path, line = _altered_file(tmp_path)
    assert main(["replay", str(path)]) == 1
    out = capsys.readouterr().out
    assert "DIVERGE" in out
    assert path.name in out
    assert f"{path}:{line}" in out
    assert "request 1" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"


def test_cli_closing_line_counts_both(tmp_path, capsys):
    path, _ = _altered_file(tmp_path)
    good = HAND / "iomap-short-read-eof.jsonl"
    assert main(["replay", str(good), str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 1 failed"


def test_cli_malformed_file_exits_2(tmp_path, capsys):
    header = lines_of("iomap-short-read-eof.jsonl")[0]
    path = tmp_path / "truncated.jsonl"
    path.write_text(header + '\n{"ev": "bio"\n', encoding="utf-8")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2" in err


def test_cli_json(tmp_path, capsys):
    path, line = _altered_file(tmp_path)
    good = HAND / "iomap-short-read-eof.jsonl"
    assert main(["replay", "--json", str(good), str(path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["passed"], doc["failed"]) == (1, 1)
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path[str(good)]["status"] == "PASS"
    bad = by_path[str(path)]
    assert bad["status"] == "DIVERGE"
    assert (bad["divergence"]["line"], bad["divergence"]["req"]) == (line, 1)


def test_cli_as_a_process(tmp_path):
    path, line = _altered_file(tmp_path)
    cmd = [sys.executable, "-m", "dioconf.cli", "replay"]
    ok = subprocess.run([*cmd, str(HAND)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == f"{len(HAND_TRACES)} passed, 0 failed"
    bad = subprocess.run([*cmd, str(path)], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f"DIVERGE {path}:{line}" in bad.stdout
