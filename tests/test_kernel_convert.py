"""tracefs text -> v1 trace events, on canned lines in the format Linux 6.18 prints
(taken from recordings on this machine); no root needed."""

from __future__ import annotations

import pytest
from dioconf.impl.kernel.btrfs import parse_chunk_tree, translator
from dioconf.impl.kernel.convert import Converter, convert
from dioconf.impl.kernel.parse import TraceTextError, parse_records, rwbs

LOOP = (7, 0)
T = 100.0


def line(pid: int, event: str, body: str, comm: str = "python") -> str:
    global T
    T += 0.000001
    return f"          {comm}-{pid}   [001] .....  {T:.6f}: {event}: {body}"


def begin(pid, size, off, length, flags="DIRECT", dio="", aio=0, ino="c"):
    return line(pid, "iomap_dio_rw_begin",
                f"dev 7:0 ino 0x{ino} size {size:#x} offset {off:#x} length {length:#x} "
                f"done_before 0x0 flags {flags} dio_flags {dio} aio {aio}")  # fmt: skip


def it(pid, pos, status=0, flags="WRITE|DIRECT", caller="__iomap_dio_rw+0x1fb/0x8d0", ino="c"):
    return line(pid, "iomap_iter",
                f"dev 7:0 ino 0x{ino} pos {pos:#x} length 0x0 status {status} flags {flags} "
                f"(0x11) ops 0xffffffff8245a760 caller {caller}")  # fmt: skip


def dstmap(pid, addr, off, length, typ="MAPPED", flags="", ino="c"):
    return line(pid, "iomap_iter_dstmap",
                f"dev 7:0 ino 0x{ino} bdev 7:0 addr {addr:#x} offset {off:#x} "
                f"length {length:#x} type {typ} (0x2) flags {flags} (0x0)")  # fmt: skip


def bio(pid, rwbs_, sector, sectors, dev="7,0"):
    return line(pid, "block_bio_queue", f"{dev} {rwbs_} {sector} + {sectors} [python]")


def done(pid, size, off, ret, error=0, aio=0, ino="c"):
    return line(pid, "iomap_dio_complete",
                f"dev 7:0 ino 0x{ino} size {size:#x} offset {off:#x} flags DIRECT aio {aio} "
                f"error {error} ret {ret}")  # fmt: skip


def evs(lines, translate=None):
    return convert(parse_records(lines), 0xC, LOOP, translate)


def test_sync_write_keeps_only_the_dio_bios():
    """Metadata (M), zero-sector flushes, other tasks' and other devices' bios are not
    the request's; the direction comes from iomap_iter's WRITE flag."""
    out = evs([
        "# tracer: nop",
        begin(10, 0, 0, 0x2000, dio="DIO_FORCE_WAIT"),
        it(10, 0),
        bio(10, "RAM", 520, 8),
        dstmap(10, 0x900400, 0, 0x2000, flags="NEW|DIRTY"),
        bio(10, "WS", 18434, 16),
        bio(99, "WS", 5000, 8),  # jbd2, another task
        bio(10, "FWS", 0, 0),  # a flush
        bio(10, "WS", 18450, 8, dev="254,0"),  # another device
        it(10, 0x2000),
        done(10, 0x2000, 0x2000, 8192),
    ])  # fmt: skip
    assert [e["ev"] for e in out] == ["file", "begin", "map", "bio", "complete"]
    b = out[1]
    assert (b["op"], b["pos"], b["len"], b["dio"], b["sync"]) == (
        "write",
        0,
        8192,
        ["FORCE_WAIT"],
        True,
    )
    assert out[2] == {"ev": "map", "req": 1, "offset": 0, "length": 8192, "type": "MAPPED",
                      "flags": ["NEW", "DIRTY"], "addr": 0x900400}  # fmt: skip
    assert out[3] == {"ev": "bio", "req": 1, "op": "write", "addr": 18434 * 512, "len": 8192,
                      "fua": False}  # fmt: skip
    assert out[4] == {"ev": "complete", "req": 1, "ret": 8192, "pos_after": 8192, "i_size": 8192}


def test_early_exit_read_at_eof_is_not_observed_beyond_bios():
    """No iomap_iter and no complete: __iomap_dio_rw returned early; at/after EOF without
    NOWAIT that is a read, and its result is not observable."""
    out = evs([begin(10, 0x1000, 0x1000, 0x1000)])
    assert out[1]["op"] == "read" and out[1]["observed"] == ["bio", "queued"]


def test_nowait_early_exit_gets_the_untraced_eagain():
    """A NOWAIT write that never reached iomap_iter and traced no invalidate_fail:
    kiocb_invalidate_pages returned -EAGAIN (the page cache holds the range)."""
    marker = line(10, "tracing_mark_write", "dioconf: pwrite f 0 4096 NOWAIT")
    out = evs([marker, begin(10, 0x10000, 0, 0x1000, flags="NOWAIT|DIRECT")])
    assert [e["ev"] for e in out] == ["file", "begin", "invalidate"]
    assert out[1]["op"] == "write" and out[1]["iocb"] == ["NOWAIT"]
    assert out[2] == {"ev": "invalidate", "req": 1, "ret": -11}


def test_iomap_begin_error_is_inferred_from_iter_without_dstmap():
    """iomap_iter called ->iomap_begin (first call) and no dstmap followed: a map error
    with the errno the request completed with."""
    out = evs([
        begin(10, 0x10000, 0x100000, 0x1000, flags="NOWAIT|DIRECT"),
        it(10, 0x100000),
        done(10, 0x10000, 0x100000, -11, error=-11),
    ])  # fmt: skip
    assert [e["ev"] for e in out] == ["file", "begin", "map", "complete"]
    assert out[2] == {"ev": "map", "req": 1, "error": -11}


def test_enotblk_from_iomap_begin_mid_request():
    """After one extent the second ->iomap_begin fails; the request completes without
    error (iomap turns -ENOTBLK into a short count), so the errno is -ENOTBLK."""
    out = evs([
        begin(10, 0x10000, 0, 0x2000),
        it(10, 0),
        dstmap(10, 0x1000, 0, 0x1000),
        bio(10, "WS", 8, 8),
        it(10, 0x1000),
        done(10, 0x10000, 0x1000, 4096),
    ])  # fmt: skip
    assert [e["ev"] for e in out][-2:] == ["map", "complete"]
    assert out[-2] == {"ev": "map", "req": 1, "error": -15}


def test_final_iter_call_is_not_a_map_error():
    """A later iomap_iter with a negative status (or nothing left, or no progress) only
    ends the loop: no ->iomap_begin, no map line."""
    out = evs([
        begin(10, 0x10000, 100, 0x200, flags="DIRECT"),
        it(10, 100, flags="DIRECT"),
        dstmap(10, 0x900400, 0, 0x400),
        it(10, 100, status=-22, flags="DIRECT"),
        done(10, 0x10000, 100, -22, error=-22),
    ])  # fmt: skip
    assert [e["ev"] for e in out] == ["file", "begin", "map", "complete"]
    assert out[1]["op"] == "read"


def test_a_completion_ending_where_an_older_request_starts_goes_to_its_own():
    """Request 1 (4 KiB at 4 KiB) is queued before request 2 (4 KiB at 0); request 2
    completes first, moving ki_pos to 4096: the start of request 1, whose range holds it
    too. ki_pos == pos + ret - done_before names request 2 (iomap_dio_complete)."""
    out = evs([
        begin(10, 0x4000, 0x1000, 0x1000, flags="WRITE|DIRECT", aio=1),
        it(10, 0x1000), dstmap(10, 0x10000, 0, 0x4000), bio(10, "WS", 136, 8),
        it(10, 0x2000),
        line(10, "iomap_dio_rw_queued", "dev 7:0 ino 0xc size 0x4000 offset 0x1000 length 0x0"),
        begin(10, 0x4000, 0, 0x1000, flags="WRITE|DIRECT", aio=1),
        it(10, 0), dstmap(10, 0x10000, 0, 0x4000), bio(10, "WS", 128, 8), it(10, 0x1000),
        line(10, "iomap_dio_rw_queued", "dev 7:0 ino 0xc size 0x4000 offset 0x0 length 0x0"),
        done(0, 0x4000, 0x1000, 4096, aio=1),  # request 2: 0 + 4096
        done(0, 0x4000, 0x2000, 4096, aio=1),  # request 1: 4096 + 4096
    ])  # fmt: skip
    done_ = [(e["req"], e["pos_after"]) for e in out if e["ev"] == "complete"]
    assert done_ == [(2, 0x1000), (1, 0x2000)]


def test_async_completion_in_another_context_is_matched_by_range():
    """Two queued aio requests; their completions run in interrupt/kworker context and
    are matched to the queued request whose range holds the new ki_pos."""
    out = evs([
        begin(10, 0x40000, 0, 0x4000, flags="WRITE|DIRECT", aio=1),
        it(10, 0), dstmap(10, 0x10000, 0, 0x40000), bio(10, "WS", 128, 32), it(10, 0x4000),
        line(10, "iomap_dio_rw_queued", "dev 7:0 ino 0xc size 0x40000 offset 0x4000 length 0x0"),
        begin(10, 0x40000, 0x8000, 0x4000, flags="DIRECT", aio=1),
        it(10, 0x8000, flags="DIRECT"), dstmap(10, 0x18000, 0x8000, 0x38000),
        bio(10, "RS", 192, 32), it(10, 0xC000, flags="DIRECT"),
        line(10, "iomap_dio_rw_queued", "dev 7:0 ino 0xc size 0x40000 offset 0xc000 length 0x0"),
        done(0, 0x40000, 0xC000, 16384, aio=1),  # the read completes first, in irq context
        done(77, 0x40000, 0x4000, 16384, aio=1),  # the write, in a kworker
    ])  # fmt: skip
    kinds = [(e["ev"], e.get("req")) for e in out if e["ev"] in ("queued", "complete")]
    assert kinds == [("queued", 1), ("queued", 2), ("complete", 2), ("complete", 1)]
    assert out[1]["op"] == "write" and out[1]["sync"] is False
    assert [e["op"] for e in out if e["ev"] == "begin"] == ["write", "read"]


def test_iomap_iterations_of_other_callers_are_ignored():
    """xfs zeroing / buffered I/O / fiemap iterate with iomap too; their mappings are not
    a dio's, even while a request of the same task looks open."""
    out = evs([
        begin(10, 0x40000, 0x41000, 0x1000, flags="DIRECT"),  # EOF read, early exit
        it(10, 0x40000, caller="iomap_zero_range+0x3c/0x80"),
        dstmap(10, 0, 0x40000, 0x2000, typ="HOLE"),
        bio(10, "WS", 900, 8),
    ])  # fmt: skip
    assert [e["ev"] for e in out] == ["file", "begin"]


def test_bios_outside_a_mapping_are_not_the_requests():
    """btrfs falls back to buffered I/O after a NOWAIT write's early exit; its writeback
    bio from the same task comes before any mapping and is not the dio's."""
    marker = line(10, "tracing_mark_write", "dioconf: pwrite f 0 8192 NOWAIT")
    out = evs(
        [marker, begin(10, 0x10000, 0, 0x2000, flags="NOWAIT|DIRECT"), bio(10, "WS", 26624, 8)]
    )
    assert "bio" not in [e["ev"] for e in out]


def test_btrfs_chunk_tree_translates_logical_addresses():
    text = """\
\titem 1 key (FIRST_CHUNK_TREE CHUNK_ITEM 13631488) itemoff 16105 itemsize 80
\t\tlength 8388608 owner 2 stripe_len 65536 type DATA|single
\t\t\tstripe 0 devid 1 offset 13631488
\titem 3 key (FIRST_CHUNK_TREE CHUNK_ITEM 30408704) itemoff 15881 itemsize 112
\t\tlength 33554432 owner 2 stripe_len 65536 type METADATA|DUP
\t\t\tstripe 0 devid 1 offset 38797312
\titem 4 key (FIRST_CHUNK_TREE CHUNK_ITEM 63963136) itemoff 15801 itemsize 80
\t\tlength 1073741824 owner 2 stripe_len 65536 type DATA|single
\t\t\tstripe 0 devid 1 offset 105906176
"""
    chunks = parse_chunk_tree(text)
    assert chunks == [(13631488, 8388608, 13631488), (63963136, 1073741824, 105906176)]
    to_dev = translator(chunks)
    assert to_dev(64028672) == 105971712  # the divergence seen in a random btrfs run
    with pytest.raises(ValueError, match="no DATA chunk"):
        to_dev(30408704)
    out = evs([begin(10, 0, 0, 0x1000), it(10, 0), dstmap(10, 64028672, 0, 0x1000)],
              translate=to_dev)  # fmt: skip
    assert out[2]["addr"] == 105971712


def test_unknown_format_of_a_recorded_event_is_an_error_with_its_line():
    good = begin(10, 0, 0, 0x1000)
    bad = line(10, "iomap_dio_complete", "dev 7:0 ino 0xc something new")
    with pytest.raises(TraceTextError, match="line 2: iomap_dio_complete in an unknown format"):
        list(parse_records([good, bad]))
    with pytest.raises(TraceTextError, match="line 1: unrecognised line"):
        list(parse_records(["garbage"]))


@pytest.mark.parametrize(
    ("text", "preflush", "op", "fua", "meta"),
    [("WS", False, "write", False, False), ("FWFSM", True, "write", True, True),
     ("RAM", False, "read", False, True), ("WFS", False, "write", True, False),
     ("FWS", True, "write", False, False)],
)  # fmt: skip
def test_rwbs(text, preflush, op, fua, meta):
    b = rwbs(text)
    assert (b["preflush"], b["op"], b["fua"], b["meta"]) == (preflush, op, fua, meta)


def lost(cpu: int, count: int | None) -> str:
    return f"CPU:{cpu} [LOST {count} EVENTS]" if count is not None else f"CPU:{cpu} [LOST EVENTS]"


def test_a_lost_events_line_is_placed_at_the_cpus_next_event():
    """trace_pipe prints "CPU:n [LOST m EVENTS]" before that CPU's next event: the
    record spans from the CPU's previous event to that one."""
    first = begin(10, 0, 0, 0x1000)
    after = it(10, 0)
    recs = list(parse_records([first, lost(1, 7), after, lost(1, None)]))
    assert [r.event for r in recs] == ["iomap_dio_rw_begin", "lost", "iomap_iter", "lost"]
    gap = recs[1]
    assert gap.f == {"cpu": 1, "count": 7, "since": recs[0].ts}
    assert gap.ts == recs[2].ts
    assert recs[3].f["count"] == 1 and recs[3].ts == float("inf")  # lost at the very end


def test_requests_that_may_miss_lost_events_are_left_out_and_the_rest_kept():
    """Request 1 completes before the loss, request 2 is in flight across it, request 3
    begins after it: only request 2 is left out (with its i_size line)."""
    lines = [
        begin(10, 0, 0, 0x1000), it(10, 0), dstmap(10, 0x900000, 0, 0x1000),
        bio(10, "WS", 0x900000 // 512, 8), it(10, 0x1000), done(10, 0x1000, 0x1000, 4096),
        begin(11, 0x1000, 0x1000, 0x1000), it(11, 0x1000),
        lost(1, 3),
        it(11, 0x2000), done(11, 0x2000, 0x2000, 4096),
        begin(12, 0x2000, 0, 0x1000), it(12, 0), dstmap(12, 0x900000, 0, 0x1000),
        bio(12, "WS", 0x900000 // 512, 8), it(12, 0x1000), done(12, 0x2000, 0x1000, 4096),
    ]  # fmt: skip
    from dioconf.impl.kernel.convert import Converter

    c = Converter(0xC, LOOP)
    for r in parse_records(lines):
        c.add(r)
    out = c.events()
    assert (c.lost, c.unchecked) == (3, {2})
    assert sorted({e["req"] for e in out if "req" in e}) == [1, 3]
    assert [e["ev"] for e in out].count("file") == 2


def test_a_request_completed_inside_the_lost_window_is_left_out_too():
    """CPU 1 lost events after its iomap_iter; meanwhile the request completed on CPU 2
    (before the loss was reported): its bios may be among the lost."""
    from dioconf.impl.kernel.convert import Converter

    lines = [begin(10, 0, 0, 0x1000), it(10, 0)]
    lines.append(done(10, 0x1000, 0x1000, 4096).replace("[001]", "[002]"))
    lines += [lost(1, 2), it(11, 0)]
    c = Converter(0xC, LOOP)
    for r in parse_records(lines):
        c.add(r)
    assert c.unchecked == {1}
    assert c.events() == []


@pytest.mark.parametrize(("status", "fault"), [
    (-14, {"ev": "fault", "req": 1, "at": 4096}),
    (-4, {"ev": "fault", "req": 1, "at": 4096, "errno": -4}),
])  # fmt: skip
def test_a_pinning_failure_becomes_a_fault_with_its_errno(status, fault):
    """iomap_iter's status is the previous step's: -EFAULT, or -EINTR when a fatal signal
    was pending while get_user_pages pinned the buffer (bio_iov_iter_get_pages)."""
    out = evs([
        begin(10, 0x10000, 0, 0x3000, flags="DIRECT"),
        it(10, 0, flags="DIRECT"), dstmap(10, 0x900000, 0, 0x10000),
        bio(10, "RS", 0x900000 // 512, 8),
        it(10, 0x1000, flags="DIRECT"), dstmap(10, 0x901000, 0x1000, 0xF000),
        it(10, 0x1000, status=status, flags="DIRECT"),
        done(10, 0x10000, 0x1000, 4096),
    ])  # fmt: skip
    assert [e for e in out if e["ev"] == "fault"] == [fault]


def rq_done(sector: int, sectors: int, error: int = 0, dev: str = "7,0") -> str:
    return line(0, "block_rq_complete", f"{dev} WS () {sector} + {sectors} none,0,0 [{error}]",
                comm="<idle>")  # fmt: skip


def _aio_write(queued: bool, completions: list[str]) -> list[dict]:
    lines = [
        begin(10, 0x10000, 0, 0x2000, flags="WRITE|DIRECT", aio=1),
        it(10, 0), dstmap(10, 0x900000, 0, 0x10000),
        bio(10, "WS", 0x900000 // 512, 8), bio(10, "WS", 0x901000 // 512, 8),
        *completions[:1],
        it(10, 0x2000),
    ]  # fmt: skip
    rest = completions[1:]
    if queued:
        lines.append(line(10, "iomap_dio_rw_queued",
                          "dev 7:0 ino 0xc size 0x10000 offset 0x0 length 0x2000"))  # fmt: skip
        lines += [*rest, done(0, 0x10000, 0x2000, 8192, aio=1)]
    else:
        lines += [*rest, done(10, 0x10000, 0x2000, 8192, aio=1)]
    return evs(lines)


def test_block_request_completions_become_bio_end_lines():
    """One block request (merged) completes the first bio, one completes half of the
    second with an error, one the rest: the second bio ends there, with the error."""
    out = _aio_write(True, [
        rq_done(0x900000 // 512, 8),
        rq_done(0x901000 // 512, 4, error=-5), rq_done(0x901000 // 512 + 4, 4),
    ])  # fmt: skip
    ends = [(e["index"], e["status"]) for e in out if e["ev"] == "bio_end"]
    assert ends == [(0, 0), (1, -5)]
    order = [e["ev"] for e in out if e["ev"] in ("bio_end", "queued", "complete")]
    assert order == ["bio_end", "queued", "bio_end", "complete"]


def test_a_queued_request_whose_bios_all_ended_first_ends_one_after_queued():
    """Both block requests completed before the submitter's queued tracepoint, yet it
    got -EIOCBQUEUED: the last bio_endio ran after its reference drop (the block
    request's completion is traced before bio_endio)."""
    out = _aio_write(True, [rq_done(0x900000 // 512, 16)])
    order = [e["ev"] for e in out if e["ev"] in ("bio_end", "queued", "complete")]
    assert order == ["bio_end", "queued", "bio_end", "complete"]


def test_bios_that_ended_before_the_submitter_let_go_complete_inline():
    out = _aio_write(False, [rq_done(0x900000 // 512, 16)])
    order = [e["ev"] for e in out if e["ev"] in ("bio_end", "queued", "complete")]
    assert order == ["bio_end", "bio_end", "complete"]


def test_a_write_iteration_without_progress_or_error_had_a_swallowed_fault():
    """iomap_dio_bio_iter drops -EFAULT after progress, and the next iteration's tail
    zeroing returns 0 over it: iomap_iter shows status 0 and no progress at 8704. The
    buffer offset there (8192) is where pinning failed: a fault line."""
    out = evs([
        begin(10, 0, 0x200, 0x4000),
        it(10, 0x200), dstmap(10, 0x900000, 0, 0x5000, flags="NEW|DIRTY"),
        bio(10, "WS", 0x900000 // 512, 1), bio(10, "WS", 0x900200 // 512, 16),
        bio(10, "WS", 0x902200 // 512, 7),
        it(10, 0x2200), dstmap(10, 0x902000, 0x2000, 0x3000, flags="DIRTY"),
        bio(10, "WS", 0x902200 // 512, 7),
        it(10, 0x2200),
        done(10, 0x2200, 0x2200, 8192),
    ])  # fmt: skip
    assert [e for e in out if e["ev"] == "fault"] == [{"ev": "fault", "req": 1, "at": 8192}]
    assert [e["ev"] for e in out][:3] == ["file", "begin", "fault"]


def test_a_read_that_stops_without_progress_gets_no_inferred_fault():
    out = evs([
        begin(10, 0x1000, 0, 0x2000),
        it(10, 0, flags="DIRECT"), dstmap(10, 0x900000, 0, 0x1000),
        bio(10, "RS", 0x900000 // 512, 8),
        it(10, 0x1000, flags="DIRECT"), it(10, 0x1000, flags="DIRECT"),
        done(10, 0x1000, 0x1000, 4096),
    ])  # fmt: skip
    assert not [e for e in out if e["ev"] == "fault"]


def _dsync_write(flags: str, between: list[str], write_cache: bool = True) -> list[dict]:
    c = Converter(0xC, LOOP, write_cache=write_cache)
    for rec in parse_records([
        begin(10, 0x10000, 0, 0x1000, flags=flags),
        it(10, 0), dstmap(10, 0x900000, 0, 0x10000),
        bio(10, "WS", 0x900000 // 512, 8),
        *between,
        it(10, 0x1000),
        done(10, 0x10000, 0x1000, 4096),
    ]):  # fmt: skip
        c.add(rec)
    return c.events()


@pytest.mark.parametrize("flushed", [True, False])
def test_an_o_dsync_writes_flush_is_the_device_flush_in_its_window(flushed):
    """Any task's cache flush (an empty PREFLUSH bio: blkdev_issue_flush, or a journal
    commit's PREFLUSH write) queued while the O_DSYNC write is in flight is its sync."""
    between = [bio(99, "FWS", 0, 0)] if flushed else [bio(99, "WS", 5000, 8)]
    out = _dsync_write("DSYNC|DIRECT|WRITE", between)
    kinds = [e["ev"] for e in out if e["ev"] in ("bio", "flush", "complete")]
    assert kinds == (["bio", "flush", "complete"] if flushed else ["bio", "complete"])
    assert "observed" not in out[1]  # flushes are observed (the header's list)


@pytest.mark.parametrize("flags, write_cache", [("DIRECT|WRITE", True),
                                                ("DSYNC|DIRECT|WRITE", False)])  # fmt: skip
def test_flushes_are_not_observed_where_they_cannot_be_told_apart(flags, write_cache):
    """A write without O_DSYNC may share its window with another's flush; without a
    volatile cache the block layer drops flushes before block_bio_queue."""
    out = _dsync_write(flags, [bio(99, "FWS", 0, 0)], write_cache)
    assert "flush" not in [e["ev"] for e in out]
    assert out[1]["observed"] == ["bio", "queued", "complete"]


def xfs_end_io(pid: int, event: str, pos: int, count: int) -> str:
    return line(pid, event, f"dev 7:0 ino 0xc isize 0x10000 disize 0x10000 pos {pos:#x} "
                            f"bytecount {count:#x}", comm="kworker/1:0")  # fmt: skip


def _aio_writes(*completions: list[str]) -> list[dict]:
    """As many async writes of [0, 4096) as completions, in flight together, then the
    completions."""
    lines = []
    for pid, addr in list(((10, 0x900000), (11, 0x980000)))[: len(completions)]:
        lines += [begin(pid, 0x10000, 0, 0x1000, flags="WRITE|DIRECT", aio=1),
                  it(pid, 0), dstmap(pid, addr, 0, 0x1000, typ="UNWRITTEN"),
                  bio(pid, "WS", addr // 512, 8), it(pid, 0x1000),
                  line(pid, "iomap_dio_rw_queued",
                       "dev 7:0 ino 0xc size 0x10000 offset 0x0 length 0x1000")]  # fmt: skip
    for work in completions:
        lines += [*work, done(0, 0x10000, 0x1000, 4096, aio=1)]
    return evs(lines)


def test_xfs_end_io_work_is_the_completions_end_io_flags():
    """xfs_dio_write_end_io traces itself, then xfs_iomap_write_unwritten for
    IOMAP_DIO_UNWRITTEN (xfs_reflink_end_cow for _COW), in the completing task."""
    out = _aio_writes([xfs_end_io(0, "xfs_end_io_direct_write", 0, 4096),
                       xfs_end_io(0, "xfs_unwritten_convert", 0, 4096)])  # fmt: skip
    completes = [e for e in out if e["ev"] == "complete"]
    assert completes[0]["req"] == 1 and completes[0]["end_io"] == ["UNWRITTEN"]


def test_end_io_is_left_out_when_two_requests_alike_could_own_the_completion():
    """Two writes of one range in flight: a completion is given to the first, which is
    right for its result but maybe not for the work its mapping asked for."""
    out = _aio_writes([xfs_end_io(0, "xfs_end_io_direct_write", 0, 4096)],
                      [xfs_end_io(0, "xfs_end_io_direct_write", 0, 4096),
                       xfs_end_io(0, "xfs_unwritten_convert", 0, 4096)])  # fmt: skip
    completes = [e for e in out if e["ev"] == "complete"]
    assert len(completes) == 2 and not any("end_io" in e for e in completes)


def test_a_flush_queued_before_the_writes_data_ended_does_not_cover_it():
    """Only a flush queued after the write's last bio ended makes its data durable."""
    out = _dsync_write("DSYNC|DIRECT|WRITE", [bio(99, "FWS", 0, 0), rq_done(0x900000 // 512, 8)])
    assert "flush" not in [e["ev"] for e in out]
    out = _dsync_write("DSYNC|DIRECT|WRITE", [rq_done(0x900000 // 512, 8), bio(99, "FWS", 0, 0)])
    assert [e["ev"] for e in out].count("flush") == 1


def work_start(pid: int) -> str:
    return line(pid, "workqueue_execute_start",
                "work struct 000000003ea93268: function iomap_dio_complete_work",
                comm="kworker/1:3")  # fmt: skip


@pytest.mark.parametrize("lines, ctx", [
    ([work_start(7)], "workqueue"),  # iomap_dio_complete_work, then the completion
    ([], "inline"),  # in the last bio's completion, another task (softirq, loop worker)
    ([work_start(8)], "inline"),  # another task's work item is not this completion's
])  # fmt: skip
def test_the_completion_context_of_a_queued_request(lines, ctx):
    c = Converter(0xC, LOOP, ctx=True)
    for rec in parse_records([
        begin(10, 0x10000, 0, 0x1000, flags="WRITE|DIRECT", aio=1),
        it(10, 0), dstmap(10, 0x900000, 0, 0x10000), bio(10, "WS", 0x900000 // 512, 8),
        it(10, 0x1000),
        line(10, "iomap_dio_rw_queued", "dev 7:0 ino 0xc size 0x10000 offset 0x0 length 0x1000"),
        *lines,
        done(7, 0x10000, 0x1000, 4096, aio=1),
    ]):  # fmt: skip
        c.add(rec)
    (complete,) = [e for e in c.events() if e["ev"] == "complete"]
    assert complete["ctx"] == ctx


def test_a_completion_in_the_submitters_own_task_is_submitter_or_unknown():
    """Sync: the submitter completes (submitter). A queued request completed in its
    submitter's task without the work item may be IOMAP_DIO_CALLER_COMP or an interrupt
    there: no ctx. Without the workqueue event recorded, no ctx at all."""
    sync = _dsync_write("DIRECT|WRITE", [])
    assert "ctx" not in sync[-1]  # Converter(ctx=False)
    c = Converter(0xC, LOOP, ctx=True)
    for rec in parse_records([
        begin(10, 0x10000, 0, 0x1000, flags="WRITE|DIRECT"),
        it(10, 0), dstmap(10, 0x900000, 0, 0x10000), bio(10, "WS", 0x900000 // 512, 8),
        it(10, 0x1000), done(10, 0x10000, 0x1000, 4096),
        begin(11, 0x10000, 0, 0x1000, flags="WRITE|DIRECT", aio=1),
        it(11, 0), dstmap(11, 0x900000, 0, 0x10000), bio(11, "WS", 0x900000 // 512, 8),
        it(11, 0x1000),
        line(11, "iomap_dio_rw_queued", "dev 7:0 ino 0xc size 0x10000 offset 0x0 length 0x1000"),
        done(11, 0x10000, 0x1000, 4096, aio=1),
    ]):  # fmt: skip
        c.add(rec)
    completes = [e for e in c.events() if e["ev"] == "complete"]
    assert completes[0]["ctx"] == "submitter" and "ctx" not in completes[1]


def _read_with_failed_first_bio(after_failure: list[str]) -> list[dict]:
    return evs([
        begin(10, 0x1000000, 0, 0x300000, flags="DIRECT"),
        it(10, 0, flags="DIRECT"), dstmap(10, 0x900000, 0, 0x300000),
        bio(10, "R", 0x900000 // 512, 2048), bio(10, "R", 0xa00000 // 512, 2048),
        rq_done(0x900000 // 512, 2048, error=-5),
        *after_failure,
        done(10, 0x1000000, 0, -5, error=-5),
    ])  # fmt: skip


def test_a_failure_during_the_next_bios_build_is_placed_after_the_bios_built_meanwhile():
    """iomap_dio_bio_iter checked dio->error before building bios 2 and 3 (the error is
    set after block_rq_complete, by bio_endio): the failure of bio 0, traced before
    they were queued, goes after them, before the request's next iomap_iter."""
    out = _read_with_failed_first_bio([bio(10, "R", 0xb00000 // 512, 1024),
                                       bio(10, "R", 0xb80000 // 512, 1024),
                                       it(10, 0x300000)])  # fmt: skip
    order = [(e["ev"], e.get("index")) for e in out if e["ev"] in ("bio", "bio_end")]
    assert order == [("bio", None)] * 4 + [("bio_end", 0)]


def test_a_failure_before_the_next_mapping_stays_before_it():
    out = _read_with_failed_first_bio([it(10, 0x200000, flags="DIRECT"),
                                       dstmap(10, 0xd00000, 0x200000, 0x100000)])  # fmt: skip
    kinds = [e["ev"] for e in out if e["ev"] in ("bio", "bio_end", "map")]
    assert kinds == ["map", "bio", "bio", "bio_end", "map"]


def test_a_bio_outside_the_mapping_is_not_the_requests():
    """Pinning the buffer may fault in pages of a mapped file: the task reads them from
    the same device, between the dio's bios."""
    out = _read_with_failed_first_bio([bio(10, "R", 0x5000000 // 512, 8)])
    assert [e["addr"] for e in out if e["ev"] == "bio"] == [0x900000, 0xA00000]


@pytest.mark.parametrize("failure, ret", [(-5, -5), (-28, -28), (-61, -5)])
def test_a_read_that_returns_early_after_a_writeback_error_gets_its_writeback_line(
    failure, ret
):
    """kiocb_write_and_wait failed: the file had a writeback error (filemap_set_wb_err)
    and the read, inside i_size, returned before iomap_iter. filemap_check_errors
    reports ENOSPC as ENOSPC and every other error as EIO."""
    out = evs([
        line(0, "block_rq_complete", f"7,0 WS () 4096 + 8 none,0,0 [{failure}]", comm="<idle>"),
        line(0, "filemap_set_wb_err", "dev=7:0 ino=0xc errseq=0x0", comm="kworker/0:1"),
        line(10, "tracing_mark_write", "dioconf: pread f 0 16384 "),
        begin(10, 0x10000, 0, 0x4000),
        line(10, "tracing_mark_write", "dioconf: pread f 0 16384 "),
        begin(10, 0x10000, 0, 0x4000),
    ])  # fmt: skip
    wb = [e for e in out if e["ev"] == "writeback"]
    assert wb == [{"ev": "writeback", "req": 1, "ret": ret}]  # reported once
    assert out[1]["observed"] == ["bio", "queued"]


def sys_line(pid: int, text: str) -> str:
    global T
    T += 0.000001
    return f"         python3-{pid}   [001] ..... {T:.6f}: {text}"


def test_syscall_lines_parse_with_signed_results():
    recs = list(parse_records([
        sys_line(10, "sys_pwrite64(fd: 3, buf: 0x7f22bfb7c7a0, count: 0x64, pos: 5)"),
        sys_line(10, "sys_pwrite64 -> 0xfffffffffffffff2"),
        sys_line(10, "sys_preadv2 -> 0xa"),
    ]))  # fmt: skip
    assert [(r.event, r.f) for r in recs] == [
        ("sys_enter", {"call": "pwrite64"}),
        ("sys_exit", {"call": "pwrite64", "ret": -14}),
        ("sys_exit", {"call": "preadv2", "ret": 10}),
    ]


def _in_syscall(*lines: str, ret: str = "0x0", syscalls: bool = True) -> list[dict]:
    c = Converter(0xC, LOOP, syscalls=syscalls)
    for rec in parse_records([
        sys_line(10, "sys_pwritev2(fd: 3, vec: 0x1, vlen: 1, pos_l: 0, pos_h: 0, flags: 0)"),
        *lines,
        sys_line(10, f"sys_pwritev2 -> {ret}"),
        sys_line(11, "sys_pwrite64(fd: 4, buf: 0x1, count: 0x10, pos: 0)"),  # another file
        sys_line(11, "sys_pwrite64 -> 0x10"),
    ]):  # fmt: skip
        c.add(rec)
    return c.events()


def test_a_system_call_gets_a_line_with_its_requests_and_result():
    """xfs's OVERWRITE_ONLY try returned early (-EAGAIN, untraced), its retry wrote."""
    out = _in_syscall(
        begin(10, 0x10000, 0x200, 0x400, flags="WRITE|DIRECT", dio="DIO_OVERWRITE_ONLY"),
        begin(10, 0x10000, 0x200, 0x400, flags="WRITE|DIRECT", dio="DIO_FORCE_WAIT"),
        it(10, 0x200), dstmap(10, 0x900000, 0, 0x1000), bio(10, "WS", 0x900000 // 512, 8),
        it(10, 0x600), done(10, 0x10000, 0x600, 1024),
        ret="0x400",
    )  # fmt: skip
    assert out[-1] == {"ev": "syscall", "req": 2, "ret": 1024, "len": 1024, "reqs": [1, 2]}
    assert [e["ev"] for e in out].count("syscall") == 1


def test_a_request_that_returned_early_is_closed_when_its_system_call_returns():
    out = _in_syscall(line(10, "tracing_mark_write", "dioconf: pread f 65536 4096 "),
                      begin(10, 0x10000, 0x10000, 0x1000), ret="0x0")  # fmt: skip
    assert out[1]["observed"] == ["bio", "queued"] and out[1]["op"] == "read"
    assert out[-1] == {"ev": "syscall", "req": 1, "ret": 0, "len": 4096, "reqs": [1]}


def test_no_syscall_lines_where_the_glue_is_not_modelled():
    out = _in_syscall(begin(10, 0x10000, 0, 0x1000, flags="WRITE|DIRECT"),
                      it(10, 0), dstmap(10, 0x900000, 0, 0x1000),
                      it(10, 0x1000), done(10, 0x10000, 0x1000, 4096),
                      ret="0x1000", syscalls=False)  # fmt: skip
    assert "syscall" not in [e["ev"] for e in out] and out[-1]["ev"] == "complete"
