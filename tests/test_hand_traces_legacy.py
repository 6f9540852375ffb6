"""Mutation tests on the hand-written legacy traces (traces/hand/legacy-*.jsonl).

Each trace's expected outputs were worked out by hand from fs/direct-io.c
(../shared/seeds/legacy-direct-io.c). Here every trace must replay clean, and an altered
copy (an output added, removed or changed, an input changed) must be reported as a
divergence at the altered line (or the first line the change makes wrong) and request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dioconf.traces.format import dump_line, event_dict, parse_trace, read_trace
from dioconf.traces.replay import FileResult, replay_trace

HAND = Path(__file__).resolve().parents[1] / "traces" / "hand"
LEGACY = sorted(HAND.glob("legacy-*.jsonl"))

Event = dict[str, Any]
Predicate = Callable[[Event], bool]
Mutation = Callable[[list[Event]], tuple[list[Event], int]]
"""Takes the events (header excluded) and returns the altered events and the index (into
the altered list) of the event the divergence must be reported at."""


def load(name: str) -> tuple[dict[str, Any], list[Event]]:
    trace = read_trace(HAND / name)
    return dict(trace.header.raw), [event_dict(e) for e in trace.events]


def replay_events(header: dict[str, Any], events: list[Event], name: str) -> FileResult:
    lines = [dump_line(header), *(dump_line(e) for e in events)]
    return replay_trace(parse_trace(lines, f"mutated-{name}"))


def find(events: list[Event], req: int, ev: str, nth: int = 0) -> int:
    """Index of the ``nth`` ``ev`` event of request ``req``."""
    hits = [i for i, e in enumerate(events) if e.get("req") == req and e["ev"] == ev]
    assert len(hits) > nth, f"req {req} has only {len(hits)} {ev!r} event(s)"
    return hits[nth]


def line_of(index: int) -> int:
    return index + 2  # line 1 is the header


# --------------------------------------------------------------------------- mutations


def _next(events: list[Event], start: int, req: int, ev: str, where: Predicate | None) -> int:
    """Index of the first ``ev`` event of ``req`` at or after ``start`` (matching ``where``)."""
    for k in range(start, len(events)):
        e = events[k]
        if e.get("req") == req and e["ev"] == ev and (where is None or where(e)):
            return k
    raise AssertionError(f"no {ev!r} event of req {req} after index {start}")


def insert(req: int, after_ev: str, new: Event, nth: int = 0) -> Mutation:
    """Add ``new`` after the ``nth`` ``after_ev`` of ``req``; it is the line reported."""

    def mutate(events: list[Event]) -> tuple[list[Event], int]:
        i = find(events, req, after_ev, nth) + 1
        return [*events[:i], new, *events[i:]], i

    return mutate


def remove(
    req: int, ev: str, nth: int = 0, then: str | None = None, where: Predicate | None = None
) -> Mutation:
    """Drop an event. The line reported is the event that followed it, or with ``then``
    the first ``then`` event of ``req`` after it (matching ``where``)."""

    def mutate(events: list[Event]) -> tuple[list[Event], int]:
        i = find(events, req, ev, nth)
        out = [*events[:i], *events[i + 1 :]]
        return out, (i if then is None else _next(out, i, req, then, where))

    return mutate


def change(req: int, ev: str, nth: int = 0, then: str | None = None, **fields: Any) -> Mutation:
    """Update fields of an event. The line reported is that event, or with ``then`` the
    first ``then`` event of ``req`` after it."""

    def mutate(events: list[Event]) -> tuple[list[Event], int]:
        i = find(events, req, ev, nth)
        out = [dict(e) for e in events]
        out[i].update(fields)
        return out, (i if then is None else _next(out, i + 1, req, then, None))

    return mutate


HEAD_ZERO_BIO = {"ev": "bio", "req": 2, "op": "write", "addr": 4194304, "len": 512, "fua": False}
AFTER_ENOTBLK_BIO = {"ev": "bio", "req": 1, "op": "write", "addr": 4198400, "len": 4096}
EOF_HOLE = {"ev": "map", "req": 2, "offset": 4096, "length": 4096, "type": "HOLE", "flags": []}


# (trace, mutation, req, substring of what the model predicts)
CASES: dict[str, tuple[str, Mutation, int, str]] = {
    # L1166-1169: an extending aio write is waited for, never -EIOCBQUEUED
    "queued added to the extending async write": (
        "legacy-async-completion.jsonl",
        insert(2, "bio", {"ev": "queued", "req": 2}),
        2,
        "waits for bios [0]",
    ),
    # L1290-1292: a complete aio write is queued; with the queued line gone the trace
    # lets the bio complete first and claims a workqueue completion the submitter ran
    "queued removed from the async dsync write": (
        "legacy-async-completion.jsonl",
        remove(3, "queued", then="complete"),
        3,
        "ctx=submitter",
    ),
    "async read completed inline claimed as workqueue": (
        "legacy-async-completion.jsonl",
        change(1, "complete", ctx="workqueue"),
        1,
        "ctx=inline",
    ),
    "extending async write completed by the submitter claimed inline": (
        "legacy-async-completion.jsonl",
        change(2, "complete", ctx="inline"),
        2,
        "ctx=submitter",
    ),
    "async dsync write completed on the workqueue claimed inline": (
        "legacy-async-completion.jsonl",
        change(3, "complete", ctx="inline"),
        3,
        "ctx=workqueue",
    ),
    "DEFER_COMPLETION read claimed inline": (
        "legacy-async-completion.jsonl",
        change(5, "complete", ctx="inline"),
        5,
        "ctx=workqueue",
    ),
    # L307-308: generic_write_sync after the aio dsync write
    "flush removed from the async dsync write": (
        "legacy-async-completion.jsonl",
        remove(3, "flush", then="complete"),
        3,
        "flush",
    ),
    "flush removed from the sync dsync write": (
        "legacy-dsync-write.jsonl",
        remove(1, "flush", then="complete"),
        1,
        "flush",
    ),
    "flush added to the dsync write that returned 0": (
        "legacy-dsync-write.jsonl",
        insert(3, "map", {"ev": "flush", "req": 3}),
        3,
        "complete ret=0",
    ),
    "flush added to the dsync write whose bio failed": (
        "legacy-bio-error.jsonl",
        insert(5, "bio_end", {"ev": "flush", "req": 5}),
        5,
        "complete ret=-5",
    ),
    # dio_zero_block (L863-870): the head zero bio of a sub-block write into a NEW block
    "head zero bio removed": (
        "legacy-subblock-write-zeroing.jsonl",
        remove(1, "bio", 0),
        1,
        "addr=4194304 len=512",
    ),
    "data bio len changed": (
        "legacy-subblock-write-zeroing.jsonl",
        change(1, "bio", 1, len=512),
        1,
        "len=3584",
    ),
    "head zero bio not marked zero": (
        "legacy-subblock-write-zeroing.jsonl",
        change(1, "bio", 0, zero=False),
        1,
        "zero",
    ),
    "zeroing bio added to the non-NEW sub-block write": (
        "legacy-subblock-write-zeroing.jsonl",
        insert(2, "map", {**HEAD_ZERO_BIO, "zero": True}),
        2,
        "addr=4194816 len=512",
    ),
    # get_more_blocks (L631-635): DIO_SKIP_HOLES create argument
    "create flipped to true inside i_size on SKIP_HOLES": (
        "legacy-skip-holes-create.jsonl",
        change(1, "map", create=True),
        1,
        "create=false",
    ),
    "create flipped to false on the empty SKIP_HOLES inode": (
        "legacy-skip-holes-create.jsonl",
        change(3, "map", create=False),
        3,
        "create=true",
    ),
    "create flipped to false past EOF on SKIP_HOLES": (
        "legacy-skip-holes-create.jsonl",
        change(4, "map", create=False),
        4,
        "create=true",
    ),
    # dio_complete (L257-258): EFAULT is ignored once some I/O was done
    "EFAULT-after-progress read returning -14": (
        "legacy-efault.jsonl",
        change(1, "complete", ret=-14),
        1,
        "complete ret=4096",
    ),
    # dio_refill_pages (L174-189) + dio_complete (L261-262): page_errors wins
    "write fault with mapped blocks left returning the byte count": (
        "legacy-efault.jsonl",
        change(2, "complete", ret=8192, pos_after=8192),
        2,
        "complete ret=-14",
    ),
    "ZERO_PAGE fill bio cut to the user page": (
        "legacy-efault.jsonl",
        change(2, "bio", len=4096),
        2,
        "len=8192",
    ),
    # do_holes (L971-973) + L1241-1247: nothing more is submitted after -ENOTBLK
    "bio added after -ENOTBLK": (
        "legacy-write-enotblk.jsonl",
        insert(1, "bio", {**AFTER_ENOTBLK_BIO, "fua": False}),
        1,
        "waits for bios [0]",
    ),
    "-ENOTBLK partial write reported as the full length": (
        "legacy-write-enotblk.jsonl",
        change(1, "complete", ret=8192, pos_after=8192),
        1,
        "complete ret=4096",
    ),
    "unmapped first block reported as -ENOTBLK": (
        "legacy-write-enotblk.jsonl",
        change(2, "complete", ret=-15),
        2,
        "complete ret=0",
    ),
    # dio_bio_complete (L494-499)
    "NOWAIT write EAGAIN reported as EIO": (
        "legacy-bio-error.jsonl",
        change(3, "complete", ret=-5),
        3,
        "complete ret=-11",
    ),
    "EAGAIN of a bio without REQ_NOWAIT kept as EAGAIN": (
        "legacy-bio-error.jsonl",
        change(2, "complete", ret=-11),
        2,
        "complete ret=-5",
    ),
    # get_more_blocks error: the deferred page is still submitted (L1254-1264)
    "bio removed after the get_block error": (
        "legacy-get-block-error.jsonl",
        remove(1, "bio", then="complete"),
        1,
        "bio #0 read addr=4194304 len=4096",
    ),
    "get_block error reported as the short count": (
        "legacy-get-block-error.jsonl",
        change(1, "complete", ret=4096, pos_after=4096),
        1,
        "complete ret=-5",
    ),
    # L1152-1158: writeback of a LOCKING read
    "writeback error of a LOCKING read ignored": (
        "legacy-locking-writeback.jsonl",
        change(1, "writeback", then="complete", ret=0),
        1,
        "asks for a mapping at pos=0",
    ),
    # do_holes (L965-993) with blkfactor 3: get_block asked once per 512-byte dio block
    "one of the per-dio-block hole lookups missing": (
        "legacy-read-hole.jsonl",
        remove(2, "map", nth=3, then="map", where=lambda e: e["type"] == "MAPPED"),
        2,
        "Mapping starts at 4096, not 0",
    ),
    "hole zeros not counted in ret": (
        "legacy-read-hole.jsonl",
        change(1, "complete", ret=4096, pos_after=4096),
        1,
        "complete ret=12288",
    ),
    # do_holes (L980-987) + dio_complete (L252-255)
    "short read not capped at i_size": (
        "legacy-read-hole-past-eof.jsonl",
        change(1, "complete", ret=8192, pos_after=8192),
        1,
        "complete ret=5000",
    ),
    "hole lookup past ALIGN(i_size, 512) added": (
        "legacy-read-hole-past-eof.jsonl",
        insert(2, "map", {**EOF_HOLE, "addr": None}, nth=3),
        2,
        "bio #0 read addr=4194816 len=3584",
    ),
    # do_direct_IO (L961-962): the dio_remainder skip of a 512-aligned read
    "512-aligned read at the fs block start": (
        "legacy-read-512-aligned.jsonl",
        change(1, "bio", addr=4198400),
        1,
        "addr=4198912",
    ),
    "two disk-discontiguous sections merged into one bio": (
        "legacy-read-512-aligned.jsonl",
        change(3, "bio", 0, len=8192),
        3,
        "len=3584",
    ),
    # dio_send_cur_page (L733-735)
    "discontiguous extents in one bio": (
        "legacy-discontig-extents.jsonl",
        change(1, "bio", 0, len=8192),
        1,
        "len=4096",
    ),
    # submit_page_section (L822-827): BOUNDARY submits the bio at once
    "BOUNDARY bio submitted after the next lookup": (
        "legacy-discontig-extents.jsonl",
        remove(3, "bio", then="map"),
        3,
        "bio #0 read addr=4194304 len=4096",
    ),
    # L1139-1150: EOF before alignment
    "misaligned read past EOF reported as -EINVAL": (
        "legacy-read-eof-einval.jsonl",
        change(2, "complete", ret=-22),
        2,
        "complete ret=0",
    ),
    "misaligned write accepted": (
        "legacy-read-eof-einval.jsonl",
        change(4, "complete", ret=1000, pos_after=5096),
        4,
        "complete ret=-22",
    ),
    "aligned read cut in two bios": (
        "legacy-aligned-read-one-extent.jsonl",
        change(1, "bio", len=4096),
        1,
        "len=8192",
    ),
}


# --------------------------------------------------------------------------- tests


def test_there_are_at_least_ten_legacy_hand_traces():
    assert len(LEGACY) >= 10, [p.name for p in LEGACY]


@pytest.mark.parametrize("path", LEGACY, ids=[p.name for p in LEGACY])
def test_legacy_hand_trace_header(path: Path):
    trace = read_trace(path)
    assert trace.header.engine == "legacy"
    assert trace.header.source == "hand"
    note = trace.header.note or ""
    assert "fs/direct-io.c" in note and "L" in note, "the note names the seed and its lines"
    for e in trace.events:
        if e.ev == "begin":
            assert e.fields["done_before"] == 0
        if e.ev == "bio":
            assert e.fields["fua"] is False, "legacy bios are never FUA"


@pytest.mark.parametrize("path", LEGACY, ids=[p.name for p in LEGACY])
def test_legacy_hand_trace_replays_clean(path: Path):
    result = replay_trace(read_trace(path))
    assert result.ok, result.divergence
    assert result.requests >= 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_mutation_is_reported_where_it_was_made(case: str):
    name, mutate, req, predicts = CASES[case]
    header, events = load(name)
    assert replay_events(header, events, name).ok, "the unaltered trace must replay clean"
    altered, index = mutate(events)
    result = replay_events(header, altered, name)
    assert not result.ok, f"{case}: the altered trace was accepted"
    div = result.divergence
    assert div is not None
    assert (div.line, div.req) == (line_of(index), req), div
    assert predicts in div.model_predicts, div


def test_mutation_helpers_find_what_they_are_asked_for():
    """The helpers themselves: a mutation that changes nothing would pass unnoticed."""
    _, events = load("legacy-subblock-write-zeroing.jsonl")
    altered, i = change(1, "bio", 1, len=512)(events)
    assert altered[i]["len"] == 512 and events[i]["len"] == 3584
    altered, i = remove(1, "bio", 0)(events)
    assert len(altered) == len(events) - 1 and altered[i] == events[i + 1]
    with pytest.raises(AssertionError):
        find(events, 1, "flush")


def test_create_is_only_compared_when_present():
    """Dropping the optional ``create`` keeps a trace valid and conforming."""
    header, events = load("legacy-skip-holes-create.jsonl")
    stripped = [{k: v for k, v in e.items() if k != "create"} for e in events]
    assert replay_events(header, stripped, "skip-holes").ok
