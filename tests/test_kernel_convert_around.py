"""What the converter sees around the engine (impl/kernel/convert_around.py) and the
failure rules: flushes, ->end_io work, completion context, held bio failures, bios
outside the mapping, writeback errors, system calls. Canned Linux 6.18 lines."""

from __future__ import annotations

import pytest
from dioconf.impl.kernel.convert import Converter
from dioconf.impl.kernel.parse import parse_records

from tests.test_kernel_convert import LOOP, begin, bio, done, dstmap, evs, it, line, rq_done


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
    commit's PREFLUSH write) queued after the O_DSYNC write's data ended, before it
    completed, is its sync."""
    data_ended = rq_done(0x900000 // 512, 8)
    between = [data_ended, bio(99, "FWS", 0, 0) if flushed else bio(99, "WS", 5000, 8)]
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


def queued(pid: int, op: str = "write", addr: int = 0x900000, map_len: int = 0x10000,
           typ: str = "MAPPED") -> list[str]:  # fmt: skip
    """The lines of an async request of [0, 4096) that got -EIOCBQUEUED."""
    flags, rw = ("WRITE|DIRECT", "WS") if op == "write" else ("DIRECT", "R")
    return [begin(pid, 0x10000, 0, 0x1000, flags=flags, aio=1),
            it(pid, 0, flags=flags), dstmap(pid, addr, 0, map_len, typ=typ),
            bio(pid, rw, addr // 512, 8), it(pid, 0x1000, flags=flags),
            line(pid, "iomap_dio_rw_queued",
                 "dev 7:0 ino 0xc size 0x10000 offset 0x0 length 0x1000")]  # fmt: skip


def completes(*lines: str) -> list[dict]:
    """The complete lines a converter that records the completion context makes."""
    c = Converter(0xC, LOOP, ctx=True)
    for rec in parse_records(lines):
        c.add(rec)
    return [e for e in c.events() if e["ev"] == "complete"]


def _aio_writes(*completions: list[str]) -> list[dict]:
    """As many async writes of [0, 4096) as completions, in flight together, then the
    completions."""
    lines = []
    for pid, addr in list(((10, 0x900000), (11, 0x980000)))[: len(completions)]:
        lines += queued(pid, addr=addr, map_len=0x1000, typ="UNWRITTEN")
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
    (complete,) = completes(*queued(10), *lines, done(7, 0x10000, 0x1000, 4096, aio=1))
    assert complete["ctx"] == ctx


def test_a_completion_in_the_submitters_own_task_is_submitter_or_unknown():
    """Sync: the submitter completes (submitter). A queued request completed in its
    submitter's task without the work item may be IOMAP_DIO_CALLER_COMP or an interrupt
    there: no ctx. Without the workqueue event recorded, no ctx at all."""
    sync = _dsync_write("DIRECT|WRITE", [])
    assert "ctx" not in sync[-1]  # Converter(ctx=False)
    both = completes(
        begin(10, 0x10000, 0, 0x1000, flags="WRITE|DIRECT"),
        it(10, 0), dstmap(10, 0x900000, 0, 0x10000), bio(10, "WS", 0x900000 // 512, 8),
        it(10, 0x1000), done(10, 0x10000, 0x1000, 4096),
        *queued(11), done(11, 0x10000, 0x1000, 4096, aio=1),
    )  # fmt: skip
    assert both[0]["ctx"] == "submitter" and "ctx" not in both[1]


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
    """A syscalls event (they print themselves, without the "event: " prefix)."""
    stamp = line(pid, "x", "").split(": x:")[0]  # the canned prefix, time advanced
    return f"{stamp}: {text}"


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


def test_a_failed_o_dsync_write_says_nothing_about_flushes():
    """generic_write_sync runs only for ret > 0 (iomap_dio_complete L143-151): another
    task's flush in a failed write's window is not its."""
    c = Converter(0xC, LOOP)
    for rec in parse_records([
        begin(10, 0x10000, 0, 0x1000, flags="DSYNC|DIRECT|WRITE"),
        it(10, 0), dstmap(10, 0x900000, 0, 0x10000), bio(10, "WS", 0x900000 // 512, 8),
        rq_done(0x900000 // 512, 8, error=-5), bio(99, "FWS", 0, 0),
        it(10, 0x1000), done(10, 0x10000, 0, -5, error=-5),
    ]):  # fmt: skip
        c.add(rec)
    out = c.events()
    assert "flush" not in [e["ev"] for e in out]
    assert out[1]["observed"] == ["bio", "queued", "complete"]


def test_a_work_item_that_ended_leaves_no_workqueue_mark():
    """workqueue_execute_start is filtered by function only: a kworker that completed
    another filesystem's dio (its iomap_dio_complete not recorded) ends the work item,
    and a later inline completion in that task is not taken for the workqueue."""
    end = line(7, "workqueue_execute_end",
               "work struct 000000003ea93268: function iomap_dio_complete_work",
               comm="kworker/1:3")  # fmt: skip
    (complete,) = completes(*queued(10, "read"), work_start(7), end,
                            done(7, 0x10000, 0x1000, 4096, aio=1))  # fmt: skip
    assert complete["ctx"] == "inline"


def test_a_completion_in_interrupt_context_is_inline_whatever_task_it_interrupted():
    """A softirq completes a read inline while its CPU runs a kworker that is in the
    middle of another request's iomap_dio_complete_work: the trace line carries that
    kworker's pid, and its irq-info column says softirq."""
    in_softirq = done(7, 0x10000, 0x1000, 4096, aio=1).replace(".....", "..s..", 1)
    assert "..s.." in in_softirq
    # work_start: another file's completion work, still running
    (complete,) = completes(*queued(10, "read"), work_start(7), in_softirq)
    assert complete["ctx"] == "inline"
