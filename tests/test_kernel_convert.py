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



def test_a_bio_loop_stopped_inside_its_mapping_had_a_dropped_fault():
    """btrfs, RWF_NOWAIT (DIVERGENCES 37): the mapping covers 8 KiB, one 4 KiB bio goes
    out, pinning the next page fails and the -EFAULT is dropped after progress; the next
    ->iomap_begin answers -EAGAIN before any -EFAULT could be traced. The iteration that
    stopped inside the mapping is the evidence: a fault at buffer offset 4096."""
    out = evs([
        begin(10, 0x40000, 0x40000, 0x2000),
        it(10, 0x40000), dstmap(10, 0x900000, 0x40000, 0x2000),
        bio(10, "WS", 0x900000 // 512, 8),
        it(10, 0x41000),  # (its ->iomap_begin fails: not traced)
        done(10, 0x40000, 0x40000, -11, error=-11),
    ])  # fmt: skip
    assert [e for e in out if e["ev"] == "fault"] == [{"ev": "fault", "req": 1, "at": 4096}]


def test_an_iteration_that_used_its_whole_mapping_is_no_fault():
    out = evs([
        begin(10, 0x40000, 0x40000, 0x2000),
        it(10, 0x40000), dstmap(10, 0x900000, 0x40000, 0x1000),
        bio(10, "WS", 0x900000 // 512, 8),
        it(10, 0x41000), dstmap(10, 0x901000, 0x41000, 0x1000),
        bio(10, "WS", 0x901000 // 512, 8),
        it(10, 0x42000),
        done(10, 0x40000, 0x40000, 8192),
    ])  # fmt: skip
    assert not [e for e in out if e["ev"] == "fault"]
