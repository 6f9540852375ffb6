"""What the converter sees around the engine: the system call a request belongs to,
cache flushes, the completion's context and ``->end_io`` work, writeback errors.

A mixin of ``convert.Converter`` (which owns the requests and the output lines); the
inference rules are listed in ``convert.py``'s docstring.
"""

from __future__ import annotations

from typing import Any

from .convert_req import EIO, ENOSPC, NO_FLUSH, Req
from .parse import XFS_END_IO_EVENTS, Record


class AroundEngine:
    # the converter's own (convert.Converter)
    ino: int
    open: dict[int, Req]
    unchecked: set[int]

    def _emit(self, r: Req, ev: dict[str, Any]) -> None:
        raise NotImplementedError

    def _close_early(self, r: Req) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError

    def _insert_after_begin(self, r: Req, ev: dict[str, Any]) -> None:
        raise NotImplementedError

    def _init_around(self, write_cache: bool, ctx: bool, syscalls: bool) -> None:
        self.flushes = 0  # cache flushes (PREFLUSH bios) queued on the device so far
        # without a volatile cache the block layer ends flushes before block_bio_queue
        # (submit_bio_noacct): none can be seen
        self.write_cache = write_cache
        # iomap_dio_complete_work's starts are recorded: each completion's context is
        # known (``complete.ctx``); pids running that work item now
        self.ctx = ctx
        self.in_work: set[int] = set()
        self._work = False  # the completion being handled runs from the workqueue
        # the read/write system calls are recorded and their glue is modelled
        # (model/syscall_glue.py): each one that made requests gets a ``syscall`` line;
        # pid -> its requests
        self.syscalls = syscalls
        self.calls: dict[int, list[Req]] = {}
        # the last writeback error of the file (filemap_set_wb_err), not yet reported
        # to a direct read (filemap_check_errors clears it as it reports it)
        self.wb_error = 0
        self.last_failure = 0  # the errno of the device's last failed block request
        # pid -> (pos, bytes, work done) of the xfs ->end_io running in that task
        self.end_io: dict[int, tuple[int, int, set[str]]] = {}

    def _around(self, rec: Record) -> bool:
        """Take ``rec`` if it is one of these events (True: nothing else to do)."""
        event = rec.event
        if event == "sys_enter":
            self.calls[rec.pid] = []
        elif event == "sys_exit":
            self._sys_exit(rec)
        elif event == "workqueue_execute_start":
            self.in_work.add(rec.pid)
        elif event == "workqueue_execute_end":  # (another file's work item ends here)
            self.in_work.discard(rec.pid)
        elif event == "iomap_dio_complete" and rec.irq:  # inline, in whatever task
            self._work = False
            return False
        elif event == "iomap_dio_complete":  # of any file: the work item ends with it
            self._work = rec.pid in self.in_work
            self.in_work.discard(rec.pid)
            return False
        elif rec.f.get("ino") != self.ino:
            return False
        elif event in XFS_END_IO_EVENTS:
            self._xfs_end_io(rec)
        elif event == "filemap_set_wb_err":
            # mapping_set_error records -ENOSPC as AS_ENOSPC, any other error as AS_EIO,
            # and filemap_check_errors reports that: the failed block request says which
            self.wb_error = ENOSPC if self.last_failure == ENOSPC else EIO
        else:
            return False
        return True

    # -- hooks the converter calls ------------------------------------------------------

    def _began(self, r: Req) -> None:
        if r.pid in self.calls:
            self.calls[r.pid].append(r)
        r.flushes = self.flushes
        # a flush is told apart only for O_DSYNC writes (see _complete)
        r.begin["observed"] = NO_FLUSH

    def _count_flush(self, rwbs: dict[str, Any]) -> None:
        if rwbs["preflush"]:  # REQ_PREFLUSH, or an empty flush (blkdev_issue_flush)
            self.flushes += 1

    def _note_failure(self, error: int) -> None:
        if error:
            self.last_failure = error

    def _data_ended(self, r: Req) -> None:
        r.flushes = self.flushes  # only a flush queued after its data ended covers it

    def _queued_ctx(self, rec: Record, r: Req) -> str | None:
        """Who completed a queued request."""
        if self._work:
            return "workqueue"  # iomap_dio_complete_work (iomap_dio_done L221-231)
        if rec.irq or rec.pid != r.pid:
            # in the last bio's completion (iomap_dio_done L233-234): an interrupt, or
            # the block driver's own worker (loop's)
            return "inline"
        return None  # in the submitter's task: maybe IOMAP_DIO_CALLER_COMP; not known

    def _complete(self, r: Req, rec: Record, ctx: str | None) -> None:
        """The request's flush (O_DSYNC) and complete lines."""
        f = rec.f
        dsync_write = r.begin["op"] == "write" and "DSYNC" in r.begin["iocb"]
        if self.write_cache and dsync_write and f["ret"] > 0:
            # generic_write_sync runs before this tracepoint (iomap_dio_complete
            # L147-151): a cache flush queued on the device after the request's data
            # ended is what makes it durable, whoever issued it. None there, and the
            # write completed with its data in the volatile cache. Other requests'
            # windows may hold someone else's flush: not told apart for them, nor for a
            # write that failed or wrote nothing (it syncs nothing: ret > 0, L143-151).
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

    def _writeback_failed(self, r: Req, size: int) -> bool:
        """An early exit explained by kiocb_write_and_wait's failure (its line added)."""
        b = r.begin
        blocking_read = b["op"] == "read" and "NOWAIT" not in b["iocb"]
        if not (blocking_read and not r.iters and b["pos"] < size and self.wb_error):
            return False
        # kiocb_write_and_wait failed (L716-721): the only early exit of a read inside
        # i_size that may block; it reports the writeback error
        self._insert_after_begin(r, {"ev": "writeback", "req": r.req, "ret": self.wb_error})
        self.wb_error = 0
        return True

    # -- events ----------------------------------------------------------------------

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
