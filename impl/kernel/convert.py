"""Turn recorded tracefs events of one file into v1 trace events.

No model reasoning happens here: every trace line stands for a kernel event, except
these inferences:
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
- ``syscall``: the read/write system call (syscalls tracepoints) whose
  requests these were, and what it returned; a request still open when it returns
  returned early;
- ``complete.ctx``: ``workqueue`` when iomap_dio_complete_work started the completion,
  ``submitter`` when the request's own submitter completes it before returning,
  ``inline`` in another task or in interrupt context (the irq-info column); none for
  a queued request completed in its submitter's task (IOMAP_DIO_CALLER_COMP?);
- ``complete.end_io`` (xfs): the work xfs_dio_write_end_io did in the completing task
  before iomap_dio_complete: ``xfs_reflink_end_cow`` is IOMAP_DIO_COW,
  ``xfs_unwritten_convert`` IOMAP_DIO_UNWRITTEN. Recorded after a successful write of
  some bytes (the only case xfs acts on the flags), and not when two requests alike
  were in flight (which one completed is not known).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .convert_around import AroundEngine
from .convert_req import (
    DIO_FLAGS,
    EAGAIN,
    EBUSY,
    EFAULT,
    ENOTBLK,
    MAP_FLAGS,
    PIN_ERRORS,
    Req,
    Sink,
    iocb_list,
    moved_to,
)
from .parse import Record, rwbs


class Converter(AroundEngine):
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
        self.open: dict[int, Req] = {}  # pid -> request being submitted
        self.queued: list[Req] = []  # async requests waiting for completion
        self.unmatched: list[Record] = []  # completions of requests not recorded
        # lines not final yet (from index _head on); final ones move to ``drained``
        self.out: list[tuple[Req, dict[str, Any]]] = []
        self._head = 0
        self.drained: Sink = sink if sink is not None else []
        self.marks: dict[int, dict[str, Any]] = {}  # pid -> last trace_marker
        self._size: dict[int, int] = {}  # req -> i_size at entry
        self.dio_iter: dict[int, bool] = {}  # pid -> its last iomap_iter was a dio's
        self._init_around(write_cache, ctx, syscalls)
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
        if self._around(rec):
            return
        if rec.f.get("ino") != self.ino:
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

    def _emit(self, r: Req, ev: dict[str, Any]) -> None:
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

    def _release_held(self, r: Req) -> None:
        self.out.extend((r, h) for h in r.held)
        r.held.clear()

    def _dio_rw_begin(self, rec: Record) -> None:
        prev = self.open.pop(rec.pid, None)
        if prev is not None:
            self._close_early(prev)
        f = rec.f
        self.nreqs += 1
        r = Req(self.nreqs, rec.pid, f["offset"], f["length"], {})
        r.begin = {
            "ev": "begin",
            "req": r.req,
            "op": self._op(rec),
            "pos": f["offset"],
            "len": f["length"],
            "done_before": f["done_before"],
            "iocb": iocb_list(f["flags"]),
            "dio": [DIO_FLAGS[d] for d in sorted(f["dio_flags"]) if d in DIO_FLAGS],
            "sync": not f["aio"],
        }
        self._began(r)
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
        if status in PIN_ERRORS:
            if r.fault_ev is None:
                self._fault(r, pos)
            if status != EFAULT:  # -EINTR: a fatal signal was pending while pinning
                r.fault_ev["errno"] = status  # (also on a stop inferred before it)
        left = r.pos + r.len - pos
        # iomap_iter: the first call maps; later calls map only after progress
        final = bool(r.iters) and (status < 0 or left <= 0 or pos == r.iters[-1][0])
        if final and status == 0 and left > 0 and r.begin["op"] == "write":
            # a write iteration that mapped and made no progress without an error: the
            # buffer could not be pinned there, and the -EFAULT was swallowed (dropped
            # after progress by iomap_dio_bio_iter, then replaced by its tail-zeroing
            # return): a fault at that buffer offset, as for a traced -EFAULT
            self._fault(r, pos)
        stopped = bool(r.iters) and r.iters[-1][0] < pos < min(r.map_end, r.pos + r.len)
        if stopped and status == 0 and not r.held:
            # the bio loop stopped inside the mapping, with progress and no failed bio:
            # pinning failed there and iomap_dio_bio_iter dropped the -EFAULT after
            # progress (L567-569); the next ->iomap_begin may fail first (btrfs NOWAIT:
            # -EAGAIN), so no traced -EFAULT says it (DIVERGENCES 37)
            self._fault(r, pos)
        r.iters.append((pos, status))
        r.asked = not final

    def _fault(self, r: Req, pos: int) -> None:
        """The request's first fault: pinning failed at file offset ``pos``, i.e. at that
        buffer offset rounded down to the page (a later one changes nothing)."""
        if r.fault_ev is None:
            at = pos - r.pos
            r.fault_ev = {"ev": "fault", "req": r.req, "at": at - at % self.page_size}
            self._insert_after_begin(r, r.fault_ev)

    def _iomap_begin_failed(self, r: Req) -> None:
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
        r.map_end = f["offset"] + f["length"]
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

    def _bio(self, rec: Record) -> None:
        f = rec.f
        if f["dev"] != self.loop_dev:
            return
        b = rwbs(f["rwbs"])
        self._count_flush(b)
        r = self.open.get(rec.pid)
        if r is None or not r.mapped or not f["sectors"]:
            return
        if b["meta"] or b["op"] not in ("read", "write"):
            return  # the filesystem's own metadata I/O during the request
        addr, length = f["sector"] * 512, f["sectors"] * 512
        if not r.extent[0] <= addr < addr + length <= r.extent[1]:
            return  # outside the mapping: e.g. a page fault's read while pinning the buffer
        self._emit(r, {"ev": "bio", "req": r.req, "op": b["op"], "addr": addr, "len": length,
                       "fua": b["fua"]})  # fmt: skip
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
        self._note_failure(f["error"])
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
            self._data_ended(r)
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
        ctx: str | None = None  # not known
        if r is not None and r.pos <= f["offset"] <= r.pos + r.len:
            del self.open[rec.pid]  # completed by its submitter (sync, or not queued)
            ctx = "submitter"
        else:
            # an async completion runs in any context (an interrupted task's pid, a
            # kworker): the queued request whose new ki_pos it shows, or else (an error,
            # a failed sync) the oldest whose range holds it
            cands = [q for q in self.queued if moved_to(q, f["ret"], f["offset"])]
            cands = cands or [q for q in self.queued if q.pos <= f["offset"] <= q.pos + q.len]
            if not cands:
                self.unmatched.append(rec)
                return
            r = cands[0]
            ctx = self._queued_ctx(rec, r)
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
        self._complete(r, rec, ctx)

    def _close_early(self, r: Req) -> None:
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
        if self._writeback_failed(r, size):
            return
        if r.iters or r.invalidated or "NOWAIT" not in b["iocb"] or b["op"] == "?":
            return
        if b["op"] == "read" and b["pos"] < size:
            self._insert_after_begin(r, {"ev": "writeback", "req": r.req, "ret": EAGAIN})
        overwrite_only = "OVERWRITE_ONLY" in b["dio"] and b["pos"] + b["len"] > size
        if b["op"] == "write" and not overwrite_only:
            self._insert_after_begin(r, {"ev": "invalidate", "req": r.req, "ret": EAGAIN})

    def _insert_after_begin(self, r: Req, ev: dict[str, Any]) -> None:
        # from the end: the request began recently (and is not final: not drained,
        # unless it is unchecked, which leaves the trace anyway)
        i = next((i for i in range(len(self.out) - 1, self._head - 1, -1)
                  if self.out[i][1] is r.begin), None)  # fmt: skip
        if i is not None:
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
