"""Completion of the legacy engine (fs/direct-io.c): bio end_io in sync and async mode,
waiting for the bios, and dio_complete. ``LegacyDio`` (legacy_dio.py) inherits these;
they use its state (lock, refcount, bio_list, io_error, result, ...)."""

from __future__ import annotations

from typing import Any

from .api import EAGAIN, EFAULT, EIO, EIOCBQUEUED, Bio


class LegacyCompletion:
    """The completion half of ``struct dio``'s code; see LegacyDio for the state."""

    # attributes provided by LegacyDio
    env: Any
    inode: Any
    iocb: Any
    tr: Any
    lock: Any
    req: int
    write: bool
    pos: int
    i_size: int
    refcount: int
    bio_list: list[Bio]
    io_error: int
    page_errors: int
    result: int
    defer_completion: bool

    def dio_bio_complete(self, bio: Bio) -> int:
        if bio.status:
            nowait = self.write and "NOWAIT" in self.iocb.flags  # REQ_NOWAIT: writes only
            self.io_error = EAGAIN if bio.status == EAGAIN and nowait else EIO
        return bio.status

    def dio_bio_end_io(self, bio: Bio) -> None:
        """Sync mode: queue the bio on bio_list for the submitter."""
        with self.lock:
            if self.tr:
                self.tr.bio_end(self.req, bio.index, bio.status)
            self.bio_list.append(bio)
            self.refcount -= 1
        self.env.sched.notify()

    def dio_bio_end_aio(self, bio: Bio) -> None:
        """Async mode: process the bio now; the last reference completes the request."""
        with self.lock:
            if self.tr:
                self.tr.bio_end(self.req, bio.index, bio.status)
            self.dio_bio_complete(bio)
            self.refcount -= 1
            remaining = self.refcount
        self.env.sched.notify()
        if remaining:
            return
        defer = bool(self.result) and (self.defer_completion or (self.write and self._nrpages()))
        ret = self.dio_complete(0, asynchronous=True, invalidate=defer,
                                ctx="workqueue" if defer else "inline")  # fmt: skip
        assert self.iocb.complete is not None
        self.iocb.complete(ret)

    def _nrpages(self) -> bool:
        """inode->i_mapping->nrpages != 0, read at completion (and recorded so)."""
        cached = self.inode.cached_pages > 0
        record = getattr(self.tr, "cached_pages", None)
        if record is not None:
            record(self.req, cached)
        return cached

    def dio_await_completion(self) -> None:
        """dio_await_one until NULL. The waker wakes the submitter at ``refcount == 1``
        (L383); the schedule taken is the one where every bio has completed when the
        submitter gets there, which is what a trace (that cannot show when it woke) says."""
        self.env.sched.wait(lambda: self.refcount <= 1)
        while True:
            with self.lock:
                bio = self.bio_list.pop() if self.bio_list else None
            if bio is None:
                return
            self.dio_bio_complete(bio)

    def dio_complete(self, ret: int, *, asynchronous: bool, invalidate: bool, ctx: str) -> int:
        env, inode, pos = self.env, self.inode, self.pos
        if ret == EIOCBQUEUED:
            ret = 0  # a completion that raced the submitter
        transferred = 0
        if self.result:
            transferred = self.result
            if not self.write and pos + transferred > self.i_size:
                transferred = self.i_size - pos  # short read
            if ret == EFAULT and transferred:
                ret = 0  # EFAULT ignored after progress
        ret = ret or self.page_errors or self.io_error or transferred
        if (invalidate and ret > 0 and self.write and env.invalidate_after is not None
                and self._nrpages()):  # fmt: skip
            env.invalidate_after(inode, pos, ret)
        # aio: ki_pos += transferred here; otherwise the caller adds a positive ret
        pos_after = pos + transferred if asynchronous else pos + max(ret, 0)
        if self.write and ret > 0:  # the caller's i_size update
            env.fs.extend(inode, pos, ret)
            if self.iocb.dsync:  # generic_write_sync
                if self.tr:
                    self.tr.flush(self.req)
                if env.fsync is not None:
                    err = env.fsync(inode, pos, ret)
                    if err < 0:
                        ret = err
        if self.tr:
            self.tr.complete(self.req, ret, pos_after, inode.size, ctx)
        failed = getattr(env.fs, "write_failed", None)
        if self.write and ret < 0 and failed is not None:  # the caller's (ext2_direct_IO)
            failed(inode, pos + self.count)
        return ret
