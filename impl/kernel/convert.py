"""Turn recorded tracefs events of one file into v1 trace events.

No model reasoning happens here: every trace line stands for a kernel event, except
two inferences that only read the iomap_iter events:
- ``map`` with ``error``: ``iomap_iter`` called ``->iomap_begin`` (it was not the final
  call: the previous status was 0, the request had bytes left and the position had
  advanced) and no ``iomap_iter_dstmap`` followed. The errno is the one the request
  completed with, or -ENOTBLK when it completed without error (iomap turns -ENOTBLK
  into a short count);
- a request with no ``iomap_dio_complete`` and no ``iomap_dio_rw_queued`` returned early
  from ``__iomap_dio_rw`` (nothing is traced there): its ``begin`` gets an
  ``observed`` list without ``complete``. If it is a NOWAIT request that never reached
  ``iomap_iter``, no ``invalidate_fail`` was traced and OVERWRITE_ONLY does not explain
  it, the untraced cause is the only one left: the page cache holds the range, and
  ``kiocb_invalidate_pages`` (writes) or ``kiocb_write_and_wait`` (reads) returned
  -EAGAIN; an ``invalidate``/``writeback`` line with -11 says so;
- ``fault``: ``iomap_iter`` reports the status of the previous step; -EFAULT there
  means the user buffer could not be pinned or copied at the current position (a
  no-fault iterator, as btrfs uses): a ``fault`` at that buffer offset, rounded down to
  a page; -EINTR means pinning failed because a fatal signal was pending
  (get_user_pages): a ``fault`` with ``"errno": -4``;
- the direction of a request: ``pwritev`` does not set IOCB_WRITE, so it comes from
  the ``iomap_iter`` flags (WRITE), an ``invalidate_fail`` (writes only), or the
  workload's ``trace_marker`` line before the syscall;
- ``flush``: a cache flush (a PREFLUSH bio, ``F`` first in rwbs) queued on the device
  after an O_DSYNC write's last bio ended and before it completed is that write's
  generic_write_sync (a flush queued earlier does not cover its data). Only O_DSYNC
  writes on a device with a volatile cache are said to observe flushes (their
  ``begin`` has no ``observed`` list); every other request's ``begin.observed`` leaves
  ``flush`` out, since its window may hold another's flush;
- ``syscall`` (ext4, xfs): the read/write system call (syscalls tracepoints) whose
  requests these were, and what it returned; a request still open when it returns
  returned early;
- ``complete.ctx``: ``workqueue`` when iomap_dio_complete_work started the completion,
  ``submitter`` when the submitting task completes, ``inline`` in another task;
- ``complete.end_io`` (xfs): the work xfs_dio_write_end_io did in the completing task
  before iomap_dio_complete: ``xfs_reflink_end_cow`` is IOMAP_DIO_COW,
  ``xfs_unwritten_convert`` IOMAP_DIO_UNWRITTEN. Recorded after a successful write of
  some bytes (the only case xfs acts on the flags), and not when two requests alike
  were in flight (which one completed is not known).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from attrs import define, field

from .parse import XFS_END_IO_EVENTS, Record, rwbs

EIO = -5
EAGAIN = -11
EFAULT = -14
EINTR = -4
PIN_ERRORS = (EFAULT, EINTR)  # what bio_iov_iter_get_pages fails with, as a fault
ENOTBLK = -15
OBSERVED = ["bio", "flush", "queued", "complete"]  # a trace's header
NO_FLUSH = ["bio", "queued", "complete"]  # a request whose flushes are not told apart
EBUSY = -16
ENOSPC = -28
IOCB_FLAGS = ("DSYNC", "SYNC", "NOWAIT", "ATOMIC", "HIPRI")
DIO_FLAGS = {"DIO_FORCE_WAIT": "FORCE_WAIT", "DIO_OVERWRITE_ONLY": "OVERWRITE_ONLY",
             "DIO_PARTIAL": "PARTIAL"}  # fmt: skip
MAP_FLAGS = ("NEW", "SHARED", "DIRTY", "ATOMIC_BIO")  # the others do not drive the engine


class Sink(Protocol):
    """Where final lines go: a list, or a spool file (record.py) for long recordings."""

    def append(self, item: tuple[int, dict[str, Any]], /) -> None: ...
    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]: ...


@define
class _Req:
    req: int
    pid: int
    pos: int
    len: int
    begin: dict[str, Any]
    iters: list[tuple[int, int]] = field(factory=list)  # (pos, status) of iomap_iter
    asked: bool = False  # the last iomap_iter called ->iomap_begin, no dstmap yet
    map_errors: list[dict[str, Any]] = field(factory=list)
    invalidated: bool = False  # an invalidate_fail was traced
    # bios are the dio's only between a mapping and the next iomap_iter call; others
    # from the same task are the filesystem's (e.g. a buffered fallback's writeback)
    mapped: bool = False
    extent: tuple[int, int] = (0, 0)  # device bytes of the current mapping
    faulted: bool = False
    queued: bool = False
    done: bool = False
    closed: bool = False  # returned early: nothing more can be traced for it
    end_ts: float = 0.0  # when it completed
    nbios: int = 0  # bio events so far
    held: list[dict[str, Any]] = field(factory=list)  # failed bio_end lines (see _emit)
    ended: int = 0  # bio_end events so far
    flushes: int = 0  # cache flushes on the device before its last bio ended
    alike: bool = False  # its completion may have been another's alike (same range, result)

    @property
    def final(self) -> bool:
        """Its lines can no longer change."""
        return self.done or self.closed


def _moved_to(r: _Req, ret: int, ki_pos: int) -> bool:
    """iomap_dio_complete (L143-153): a positive result moved ki_pos by the bytes done
    and then had done_before added, so ki_pos == pos + ret - done_before."""
    return ret > 0 and r.pos + ret - r.begin["done_before"] == ki_pos


def _iocb(flags: frozenset[str]) -> list[str]:
    out = [f for f in IOCB_FLAGS if f in flags]
    if "SYNC" in out and "DSYNC" not in out:
        out.insert(0, "DSYNC")
    return out


class Converter:
    """Feed records in time order with ``add``; ``events()`` gives the v1 events."""

    def __init__(
        self, ino: int, loop_dev: tuple[int, int],
        translate: Callable[[int], int] | None = None,
        page_size: int = 4096,
        sink: Sink | None = None,
        write_cache: bool = True,
        ctx: bool = False,
        syscalls: bool = False,
    ) -> None:  # fmt: skip
        self.ino = ino
        self.page_size = page_size
        self.loop_dev = loop_dev
        self.translate = translate  # filesystem address -> device address (btrfs)
        self.nreqs = 0
        self.open: dict[int, _Req] = {}  # pid -> request being submitted
        self.queued: list[_Req] = []  # async requests waiting for completion
        self.unmatched: list[Record] = []  # completions of requests not recorded
        # lines not final yet (from index _head on); final ones move to ``drained``
        self.out: list[tuple[_Req, dict[str, Any]]] = []
        self._head = 0
        self.drained: Sink = sink if sink is not None else []
        self.marks: dict[int, dict[str, Any]] = {}  # pid -> last trace_marker
        self._size: dict[int, int] = {}  # req -> i_size at entry
        self.dio_iter: dict[int, bool] = {}  # pid -> its last iomap_iter was a dio's
        self.flushes = 0  # cache flushes (PREFLUSH bios) queued on the device so far
        # without a volatile cache the block layer ends flushes before block_bio_queue
        # (submit_bio_noacct): none can be seen
        self.write_cache = write_cache
        # iomap_dio_complete_work's starts are recorded: each completion's context is
        # known (``complete.ctx``); pids running that work item now
        self.ctx = ctx
        # the read/write system calls are recorded and their glue is modelled (ext4,
        # xfs): each one that made requests gets a ``syscall`` line; pid -> its requests
        self.syscalls = syscalls
        self.calls: dict[int, list[_Req]] = {}
        self.in_work: set[int] = set()
        # the last writeback error of the file (filemap_set_wb_err), not yet reported
        # to a direct read (filemap_check_errors clears it as it reports it)
        self.wb_error = 0
        self.last_failure = 0  # the errno of the device's last failed block request
        self._work = False  # the completion being handled runs from the workqueue
        # pid -> (pos, bytes, work done) of the xfs ->end_io running in that task
        self.end_io: dict[int, tuple[int, int, set[str]]] = {}
        self.inflight: list[list[Any]] = []  # bios not ended yet (see _bio)
        # requests whose events the ring buffer may have lost: left out of the trace
        self.unchecked: set[int] = set()
        self.lost = 0  # events lost, as the LOST records said
        # (end time, request) of completed requests, in completion (time) order
        self._completed_ts: array[float] = array("d")
        self._completed_req: array[int] = array("q")

    # -- records ---------------------------------------------------------------------

    def add(self, rec: Record) -> None:
        if rec.event == "lost":
            self._lost(rec)
            return
        if rec.event == "block_bio_queue":
            self._bio(rec)
            return
        if rec.event == "block_rq_complete":
            self._rq_complete(rec)
            return
        if rec.event == "tracing_mark_write":
            self.marks[rec.pid] = rec.f
            return
        if rec.event == "sys_enter":
            self.calls[rec.pid] = []
            return
        if rec.event == "sys_exit":
            self._sys_exit(rec)
            return
        if rec.event == "workqueue_execute_start":
            self.in_work.add(rec.pid)
            return
        if rec.event == "iomap_dio_complete":  # of any file: the work item ends with it
            self._work = rec.pid in self.in_work
            self.in_work.discard(rec.pid)
        if rec.f.get("ino") != self.ino:
            return
        if rec.event in XFS_END_IO_EVENTS:
            self._xfs_end_io(rec)
            return
        if rec.event == "filemap_set_wb_err":
            # mapping_set_error records -ENOSPC as AS_ENOSPC, any other error as AS_EIO,
            # and filemap_check_errors reports that: the failed block request says which
            self.wb_error = ENOSPC if self.last_failure == ENOSPC else EIO
            return
        handler = getattr(self, "_" + rec.event.removeprefix("iomap_"))
        handler(rec)

    def _lost(self, rec: Record) -> None:
        """A CPU's ring buffer lost events between ``since`` and this record: every
        request in flight now, or completed since then, may miss some."""
        self.lost += rec.f["count"]
        since = rec.f["since"]
        for r in [*self.open.values(), *self.queued]:
            self.unchecked.add(r.req)
        i = len(self._completed_ts)
        while i and self._completed_ts[i - 1] >= since:
            i -= 1
            self.unchecked.add(self._completed_req[i])

    def _emit(self, r: _Req, ev: dict[str, Any]) -> None:
        kind = ev["ev"]
        if kind == "bio_end" and (ev["status"] or r.held) and self.open.get(r.pid) is r:
            # iomap_dio_bio_iter checks dio->error before it builds each bio (L531-532),
            # and building one (pinning the buffer) may sleep, while the error is set
            # after block_rq_complete is traced (bio_endio, maybe in ksoftirqd): when
            # the submitter saw it is not traced. Its line (and the bio_end lines after
            # it) goes after the bios submitted meanwhile, before the request's next
            # other line: the model stops at its next check, as the kernel stopped at
            # one of the checks up to there.
            r.held.append(ev)
            return
        if r.held and kind != "bio":
            self._release_held(r)
        self.out.append((r, ev))

    def _release_held(self, r: _Req) -> None:
        self.out.extend((r, h) for h in r.held)
        r.held.clear()

    def _dio_rw_begin(self, rec: Record) -> None:
        prev = self.open.pop(rec.pid, None)
        if prev is not None:
            self._close_early(prev)
        f = rec.f
        self.nreqs += 1
        r = _Req(self.nreqs, rec.pid, f["offset"], f["length"], {})
        r.begin = {
            "ev": "begin",
            "req": r.req,
            "op": self._op(rec),
            "pos": f["offset"],
            "len": f["length"],
            "done_before": f["done_before"],
            "iocb": _iocb(f["flags"]),
            "dio": [DIO_FLAGS[d] for d in sorted(f["dio_flags"]) if d in DIO_FLAGS],
            "sync": not f["aio"],
        }
        if rec.pid in self.calls:
            self.calls[rec.pid].append(r)
        r.flushes = self.flushes
        # a flush is told apart only for O_DSYNC writes (see _dio_complete)
        r.begin["observed"] = NO_FLUSH
        self.open[rec.pid] = r
        self._size[r.req] = f["size"]
        self._emit(r, {"ev": "file", "i_size": f["size"]})  # the size it began with
        self._emit(r, r.begin)
        self._drain()

    def _op(self, rec: Record) -> str:
        if rec.f["aio"] or "WRITE" in rec.f["flags"]:  # aio sets IOCB_WRITE for writes
            return "write" if "WRITE" in rec.f["flags"] else "read"
        mark = self.marks.get(rec.pid)  # in force for every dio call of the syscall
        if mark is not None:
            return "write" if "write" in mark["op"] else "read"
        return "?"  # decided by iomap_iter's flags or invalidate_fail

    def _iter(self, rec: Record) -> None:
        # buffered I/O, fiemap, zeroing... iterate with iomap too: only the iterations
        # of __iomap_dio_rw (and the mappings they produce) belong to a request
        self.dio_iter[rec.pid] = rec.f["caller"].startswith("__iomap_dio_rw")
        r = self.open.get(rec.pid)
        if r is None or not self.dio_iter[rec.pid]:
            return
        r.begin["op"] = "write" if "WRITE" in rec.f["flags"] else "read"
        r.mapped = False
        self._iomap_begin_failed(r)
        pos, status = rec.f["pos"], rec.f["status"]
        if status in PIN_ERRORS and not r.faulted:
            r.faulted = True
            at = pos - r.pos
            fault = {"ev": "fault", "req": r.req, "at": at - at % self.page_size}
            if status != EFAULT:
                fault["errno"] = status
            self._insert_after_begin(r, fault)
        left = r.pos + r.len - pos
        # iomap_iter: the first call maps; later calls map only after progress
        final = bool(r.iters) and (status < 0 or left <= 0 or pos == r.iters[-1][0])
        if final and status == 0 and left > 0 and r.begin["op"] == "write" and not r.faulted:
            # a write iteration that mapped and made no progress without an error: the
            # buffer could not be pinned there, and the -EFAULT was swallowed (dropped
            # after progress by iomap_dio_bio_iter, then replaced by its tail-zeroing
            # return): a fault at that buffer offset, as for a traced -EFAULT
            r.faulted = True
            at = pos - r.pos
            self._insert_after_begin(
                r, {"ev": "fault", "req": r.req, "at": at - at % self.page_size}
            )
        r.iters.append((pos, status))
        r.asked = not final

    def _iomap_begin_failed(self, r: _Req) -> None:
        if r.asked:  # ->iomap_begin was called and produced no mapping
            ev = {"ev": "map", "req": r.req, "error": ENOTBLK}
            r.map_errors.append(ev)
            self._emit(r, ev)
            r.asked = False

    def _iter_dstmap(self, rec: Record) -> None:
        r = self.open.get(rec.pid)
        if r is None or not self.dio_iter.get(rec.pid):
            return
        f = rec.f
        r.asked = False
        r.mapped = True
        addr = f["addr"]
        if addr is not None and self.translate is not None:
            addr = self.translate(addr)
        r.extent = (addr, addr + f["length"]) if addr is not None else (0, 0)
        self._emit(
            r,
            {
                "ev": "map",
                "req": r.req,
                "offset": f["offset"],
                "length": f["length"],
                "type": f["type"],
                "flags": [m for m in MAP_FLAGS if m in f["flags"]],
                "addr": addr,
            },
        )

    def _dio_invalidate_fail(self, rec: Record) -> None:
        r = self.open.get(rec.pid)
        if r is not None:  # the tracepoint fires for any error but -EAGAIN
            r.begin["op"] = "write"
            r.invalidated = True
            self._emit(r, {"ev": "invalidate", "req": r.req, "ret": EBUSY})

    def _sys_exit(self, rec: Record) -> None:
        """The system call returned: a request of it still open returned early; the
        call's result goes after its last request's lines."""
        reqs = self.calls.pop(rec.pid, None)
        if not reqs:
            return
        r = self.open.get(rec.pid)
        if r is not None and r is reqs[-1]:
            del self.open[rec.pid]
            self._close_early(r)
        if not self.syscalls or any(q.req in self.unchecked or not q.final for q in reqs):
            return  # (an async request still in flight is no system call's result)
        last = reqs[-1]
        length = reqs[0].len + reqs[0].begin["done_before"]
        self._emit(last, {"ev": "syscall", "req": last.req, "ret": rec.f["ret"],
                          "len": length, "reqs": [q.req for q in reqs]})  # fmt: skip
        self._drain()

    def _xfs_end_io(self, rec: Record) -> None:
        """xfs_dio_write_end_io traces its call, then each conversion its flags ask for
        (IOMAP_DIO_COW: xfs_reflink_end_cow; IOMAP_DIO_UNWRITTEN: xfs_iomap_write_unwritten),
        all in the task that then traces iomap_dio_complete."""
        f = rec.f
        if rec.event == "xfs_end_io_direct_write":
            self.end_io[rec.pid] = (f["pos"], f["count"], set())
        elif rec.pid in self.end_io:
            self.end_io[rec.pid][2].add("COW" if "cow" in rec.event else "UNWRITTEN")

    def _bio(self, rec: Record) -> None:
        f = rec.f
        if f["dev"] != self.loop_dev:
            return
        b = rwbs(f["rwbs"])
        if b["preflush"]:  # REQ_PREFLUSH, or an empty flush (blkdev_issue_flush)
            self.flushes += 1
        r = self.open.get(rec.pid)
        if r is None or not r.mapped or not f["sectors"]:
            return
        if b["meta"] or b["op"] not in ("read", "write"):
            return  # the filesystem's own metadata I/O during the request
        lo = f["sector"] * 512
        if not r.extent[0] <= lo < lo + f["sectors"] * 512 <= r.extent[1]:
            return  # outside the mapping: e.g. a page fault's read while pinning the buffer
        self._emit(
            r,
            {
                "ev": "bio",
                "req": r.req,
                "op": b["op"],
                "addr": f["sector"] * 512,
                "len": f["sectors"] * 512,
                "fua": b["fua"],
            },
        )
        # [first sector, end sector, sectors not completed yet, status, request, index]
        self.inflight.append([f["sector"], f["sector"] + f["sectors"], f["sectors"], 0, r, r.nbios])
        r.nbios += 1

    def _rq_complete(self, rec: Record) -> None:
        """block_rq_complete: the block layer completed these sectors with ``error``; a
        bio whose sectors have all completed has ended (blk_update_request -> bio_endio,
        which calls iomap_dio_bio_end_io): a ``bio_end`` line, here."""
        f = rec.f
        if f["dev"] != self.loop_dev or not f["sectors"]:
            return
        if f["error"]:
            self.last_failure = f["error"]
        lo, hi = f["sector"], f["sector"] + f["sectors"]
        left = []
        for b in self.inflight:
            overlap = min(hi, b[1]) - max(lo, b[0])
            if overlap > 0:
                b[2] -= overlap
                b[3] = b[3] or f["error"]
            if b[2] > 0:
                left.append(b)
                continue
            r = b[4]
            r.ended += 1
            r.flushes = self.flushes  # only a flush queued after its data ended covers it
            self._emit(r, {"ev": "bio_end", "req": r.req, "index": b[5], "status": b[3]})
        self.inflight = left

    def _dio_rw_queued(self, rec: Record) -> None:
        r = self.open.pop(rec.pid, None)
        if r is None:
            return
        self._iomap_begin_failed(r)
        r.queued = True
        self.queued.append(r)
        self._emit(r, {"ev": "queued", "req": r.req})
        if r.nbios and r.ended == r.nbios:
            # every bio's block request had completed when the submitter dropped its
            # reference, yet it was not the last (__iomap_dio_rw L857-860): the last
            # bio_endio ran after that drop. Its line goes after the queued one.
            i = next(i for i in range(len(self.out) - 1, -1, -1)
                     if self.out[i][0] is r and self.out[i][1]["ev"] == "bio_end")  # fmt: skip
            self.out.append(self.out.pop(i))

    def _dio_complete(self, rec: Record) -> None:
        f = rec.f
        r = self.open.get(rec.pid)
        ctx = None  # not known
        if r is not None and r.pos <= f["offset"] <= r.pos + r.len:
            del self.open[rec.pid]  # completed by its submitter (sync, or not queued)
            ctx = "submitter"
        else:
            # an async completion runs in any context (an interrupted task's pid, a
            # kworker): the queued request whose new ki_pos it shows, or else (an error,
            # a failed sync) the oldest whose range holds it
            cands = [q for q in self.queued if _moved_to(q, f["ret"], f["offset"])]
            cands = cands or [q for q in self.queued if q.pos <= f["offset"] <= q.pos + q.len]
            if not cands:
                self.unmatched.append(rec)
                return
            r = cands[0]
            if self._work:
                ctx = "workqueue"  # iomap_dio_complete_work (iomap_dio_done L221-231)
            elif rec.pid != r.pid:
                # in the last bio's completion (iomap_dio_done L233-234): an interrupt,
                # or the block driver's own worker (loop's); in the submitter's task it
                # might be the submitter's own (IOMAP_DIO_CALLER_COMP): not known
                ctx = "inline"
            if len(cands) > 1:  # which of them completed is not known: nor is the other
                for q in cands:
                    q.alike = True
            self.queued.remove(r)
        self._iomap_begin_failed(r)
        for ev in r.map_errors:  # the errno is known now
            ev["error"] = f["error"] or ENOTBLK
        r.done = True
        r.end_ts = rec.ts
        if r.ended < r.nbios:  # completions not seen (lost): no longer looked for
            self.inflight = [b for b in self.inflight if b[4] is not r]
        self._completed_ts.append(rec.ts)
        self._completed_req.append(r.req)
        self._size.pop(r.req, None)
        if self.write_cache and r.begin["op"] == "write" and "DSYNC" in r.begin["iocb"]:
            # generic_write_sync runs before this tracepoint (iomap_dio_complete
            # L147-151): a cache flush queued on the device after the request's data
            # ended is what makes it durable, whoever issued it. None there, and the
            # write completed with its data in the volatile cache. Other requests'
            # windows may hold someone else's flush: not told apart for them.
            r.begin.pop("observed")
            if self.flushes > r.flushes:
                self._emit(r, {"ev": "flush", "req": r.req})
        complete = {"ev": "complete", "req": r.req, "ret": f["ret"], "pos_after": f["offset"],
                    "i_size": f["size"]}  # fmt: skip
        if self.ctx and ctx is not None:
            complete["ctx"] = ctx
        end = self.end_io.pop(rec.pid, None)
        if end is not None and end[0] == r.pos and end[1] > 0 and not f["error"] and not r.alike:
            # xfs_dio_write_end_io acts on the dio's flags only after a successful write;
            # of two requests alike in flight (same range, same result) the first is
            # taken, which is right for everything but the mapping each one got
            complete["end_io"] = sorted(end[2])
        self._emit(r, complete)

    def _close_early(self, r: _Req) -> None:
        """__iomap_dio_rw returned before iterating: no result is traced."""
        self._iomap_begin_failed(r)
        if r.done or r.queued or r.closed:
            return
        r.closed = True
        r.begin["observed"] = ["bio", "queued"]  # (no flush: it did not complete)
        b = r.begin
        size = self._size.pop(r.req)
        plain = not ({"NOWAIT"} & set(b["iocb"]) or "OVERWRITE_ONLY" in b["dio"])
        if b["op"] == "?" and not r.iters and plain and b["pos"] >= size:
            # a write's untraced early exits need NOWAIT or OVERWRITE_ONLY (invalidation
            # failures are traced): an untraced exit at/after EOF is a read at EOF
            b["op"] = "read"
        blocking_read = b["op"] == "read" and "NOWAIT" not in b["iocb"]
        if blocking_read and not r.iters and b["pos"] < size and self.wb_error:
            # kiocb_write_and_wait failed (L716-721): the only early exit of a read
            # inside i_size that may block; it reports the writeback error
            self._insert_after_begin(r, {"ev": "writeback", "req": r.req, "ret": self.wb_error})
            self.wb_error = 0
            return
        if r.iters or r.invalidated or "NOWAIT" not in b["iocb"] or b["op"] == "?":
            return
        if b["op"] == "read" and b["pos"] < size:
            self._insert_after_begin(r, {"ev": "writeback", "req": r.req, "ret": EAGAIN})
        overwrite_only = "OVERWRITE_ONLY" in b["dio"] and b["pos"] + b["len"] > size
        if b["op"] == "write" and not overwrite_only:
            self._insert_after_begin(r, {"ev": "invalidate", "req": r.req, "ret": EAGAIN})

    def _insert_after_begin(self, r: _Req, ev: dict[str, Any]) -> None:
        # from the end: the request began recently (and is not final: not drained)
        i = next(i for i in range(len(self.out) - 1, -1, -1) if self.out[i][1] is r.begin)
        self.out.insert(i + 1, (r, ev))

    # -- result ----------------------------------------------------------------------

    def _drain(self) -> None:
        """Move the final lines at the head to ``drained``: memory holds only the lines
        of requests still in flight (and those after them)."""
        out, i = self.out, self._head
        while i < len(out) and (out[i][0].final or out[i][0].req in self.unchecked):
            r, ev = out[i]
            if ev is r.begin and r.begin["op"] == "?" and r.req not in self.unchecked:
                raise ValueError(
                    f"cannot tell whether request {r.req} (pos {r.pos}, len {r.len}) read "
                    "or wrote: it returned before iomap_iter and left no marker"
                )
            self.drained.append((r.req, ev))
            i += 1
        if i > 4096 and i * 2 > len(out):
            del out[:i]
            i = 0
        self._head = i

    def finish(self) -> None:
        """The recording ended: requests still being submitted returned early."""
        for r in list(self.open.values()):
            self._release_held(r)
            self._close_early(r)
        self.open.clear()
        for r in self.queued:  # never completed (within the recording): kept as queued
            r.closed = True
        self._drain()

    def kept(self) -> Iterator[dict[str, Any]]:
        """The v1 events, without the requests that may miss lost events (after
        ``finish``)."""
        for req, ev in self.drained:
            if req not in self.unchecked:
                yield ev

    def events(self) -> list[dict[str, Any]]:
        self.finish()
        return list(self.kept())


def convert(
    records: Iterable[Record], ino: int, loop_dev: tuple[int, int],
    translate: Callable[[int], int] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The v1 events of file ``ino`` in ``records``."""
    c = Converter(ino, loop_dev, translate)
    for rec in records:
        c.add(rec)
    return c.events()
