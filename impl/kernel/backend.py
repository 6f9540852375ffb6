"""The real kernel as a conformance backend (``conformance/backend.py``).

``KernelBackend`` performs each operation with the real syscall on a file of a
loop-mounted filesystem (``fixture.kernel_fs``): O_DIRECT ``preadv2``/``pwritev2`` from
page-aligned anonymous buffers, whose pages from ``fault_at`` on are ``PROT_NONE`` when a
fault is asked for; buffered I/O through a second descriptor; fallocate, punch hole,
truncate, FICLONERANGE, fsync/fdatasync, POSIX_FADV_DONTNEED; unmount and mount again;
batches of direct requests in flight together through Linux AIO or io_uring.
Data is ``model.pattern.pattern`` (the bytes are a function of the write id and the
offset, so nothing is kept in memory).

Every descriptor is known to ``close`` from the moment it exists (``critical``): an
interrupt leaves nothing open to keep the mount busy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import struct
from collections.abc import Callable
from typing import Any

from ...conformance.backend import Capabilities
from ...model.pattern import pattern
from .cleanup import critical, releasing
from .fixture import MountedFs, remount
from .workload import (
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    fallocate,
    protect,
    rwf,
    set_nocow,
)

FICLONERANGE = 0x4020940D  # _IOW(0x94, 13, struct file_clone_range)
POOL = 1 << 20  # the largest request the pooled buffer serves


def _errno(exc: OSError) -> int:
    return -(exc.errno or errno.EIO)


def _uring_works() -> bool:
    """io_uring can be used here (a kernel with it, not disabled by sysctl or seccomp)."""
    from .uring import unavailable

    return unavailable() is None


def _buffer(length: int) -> mmap.mmap:
    buf = mmap.mmap(-1, max(length, 1))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return buf


class KernelBackend:
    """One mounted filesystem; files are created in ``m.mnt / prefix``."""

    def __init__(self, m: MountedFs, *, nocow: bool = True, label: str = "") -> None:
        self.m = m
        self.nocow = nocow  # btrfs: files without data checksums (the iomap path)
        g = m.geometry
        self.caps = Capabilities(
            block_size=g.fs_block_size, logical_block_size=g.logical_block_size,
            page_size=g.page_size, reflink=m.fs in ("xfs", "btrfs"), remount=True,
            zero_range=True, mmap=True, aio=True, uring=_uring_works(),
        )  # fmt: skip
        self.name = label or f"kernel {m.fs}"
        self._fds: dict[str, tuple[int, int]] = {}  # name: (O_DIRECT fd, buffered fd)
        self._names: list[str] = []
        self._pool = _buffer(POOL)
        for page in range(0, POOL, mmap.PAGESIZE):
            self._pool[page] = 0  # resident: a no-fault iterator (btrfs) can pin it
        self.syscalls = 0
        # writes a line into a trace being recorded (trace_check.py), before each direct
        # request: what it is, for requests that leave no other event saying so
        self.marker: Callable[[str], None] | None = None
        self._aio: Any = None  # an AioContext, made on first use
        self._uring: Any = None  # a UringContext, made on first use

    # -- descriptors --------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return str(self.m.mnt / name)

    def _fd(self, name: str, direct: bool = True) -> int:
        fds = self._fds.get(name)
        if fds is None:
            with critical():  # known to close() from the moment they exist
                d = os.open(self._path(name), os.O_RDWR | os.O_DIRECT)
                self._fds[name] = (d, -1)
                b = os.open(self._path(name), os.O_RDWR)
                fds = self._fds[name] = (d, b)
        return fds[0] if direct else fds[1]

    @releasing
    def close(self) -> None:
        """Close every descriptor, the AIO context, the io_uring and the buffer
        (idempotent, also after an interrupted call)."""
        with critical():
            if self._aio is not None:  # waits for requests in flight, then io_destroy
                self._aio.close()
                self._aio = None
            if self._uring is not None:  # waits for requests in flight, then closes
                self._uring.close()
                self._uring = None
            self._close_files()
        if not self._pool.closed:
            # an interrupted call's view may still export it: the memory then goes with
            # the last reference (no descriptor, no mount)
            with contextlib.suppress(BufferError):
                self._pool.close()

    @releasing
    def _close_files(self) -> None:
        with critical():
            while self._fds:
                for fd in self._fds.popitem()[1]:
                    if fd >= 0:
                        os.close(fd)

    # -- operations -----------------------------------------------------------------------

    def create(self, name: str) -> int:
        with critical():
            fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if self.m.fs == "btrfs" and self.nocow:
                    set_nocow(fd)
                ino = os.fstat(fd).st_ino
            finally:
                os.close(fd)
        self._names.append(name)
        return ino

    def _mark(self, op: str, name: str, pos: int, length: int, flags: frozenset[str]) -> None:
        if self.marker is not None:
            self.marker(f"dioconf: {op} {name} {pos} {length} {'|'.join(sorted(flags))}")

    def direct_write(self, name: str, pos: int, length: int, wid: int,
                     flags: frozenset[str], fault_at: int | None) -> int:  # fmt: skip
        fd = self._fd(name)
        self._mark("pwrite", name, pos, length, flags)
        data = pattern(wid, pos, length)
        if fault_at is None and length <= POOL:
            self._pool[:length] = data
            return self._pwritev(fd, memoryview(self._pool)[:length], pos, flags)
        buf = _buffer(length)
        try:
            n = length if fault_at is None else fault_at
            buf[:n] = data[:n]
            if fault_at is not None:
                protect(buf, fault_at, len(buf) - fault_at)
            view = memoryview(buf)[:length]
            try:
                return self._pwritev(fd, view, pos, flags)
            finally:
                view.release()
        finally:
            buf.close()

    def direct_batch(self, reqs: list[tuple[str, str, int, int, int, frozenset[str]]],
                     via: str = "aio") -> list[tuple[int, bytes]]:  # fmt: skip
        """One submission of them all (``via``: io_submit, or io_uring_enter), then
        reaped; each has a buffer of its own."""
        ctx = self._batch_context(via)
        bufs = []
        ops = []
        try:
            for i, (kind, name, pos, length, wid, flags) in enumerate(reqs):
                fd = self._fd(name)
                self._mark(kind, name, pos, length, flags)
                buf = _buffer(length)
                bufs.append(buf)
                if kind == "pwrite":
                    buf[:length] = pattern(wid, pos, length)
                else:
                    for page in range(0, length, mmap.PAGESIZE):
                        buf[page] = 0  # resident
                op = "write" if kind == "pwrite" else "read"
                ops.append((op, fd, memoryview(buf)[:length], pos, rwf(flags), i))
            self.syscalls += len(ops)
            results = [0] * len(ops)
            try:
                accepted = ctx.submit_many(ops)
            except OSError as exc:
                return [(_errno(exc), b"")] * len(ops)
            for i in range(accepted, len(ops)):
                results[i] = -errno.EAGAIN  # (a prefix only was taken)
            got = 0
            while got < accepted:  # (all reaped before the buffers go)
                for data, res in ctx.reap(1):
                    results[data] = res
                    got += 1
            return [(r, bytes(bufs[i][: max(r, 0)]) if reqs[i][0] == "pread" else b"")
                    for i, r in enumerate(results)]  # fmt: skip
        finally:
            for _, _, view, *_ in ops:
                view.release()
            for buf in bufs:
                with contextlib.suppress(BufferError):
                    buf.close()

    def _batch_context(self, via: str) -> Any:
        """The AioContext or UringContext, made on first use and kept (also across
        remounts: see ``remount``)."""
        if via == "aio":
            if self._aio is None:
                from .aio import AioContext

                with critical():  # known to close() from the moment it exists
                    self._aio = AioContext(16)
            return self._aio
        if via == "uring" and self.caps.uring:
            if self._uring is None:
                from .uring import UringContext

                with critical():
                    self._uring = UringContext(16)
            return self._uring
        raise ValueError(f"no direct batches via {via!r} here (aio, or uring when "
                         "io_uring works)")  # fmt: skip

    def _pwritev(self, fd: int, view: memoryview, pos: int, flags: frozenset[str]) -> int:
        self.syscalls += 1
        try:
            return os.pwritev(fd, [view], pos, rwf(flags))
        except OSError as exc:
            return _errno(exc)

    def direct_read(self, name: str, pos: int, length: int,
                    flags: frozenset[str]) -> tuple[int, bytes]:  # fmt: skip
        fd = self._fd(name)
        self._mark("pread", name, pos, length, flags)
        return self._read(fd, pos, length, rwf(flags))

    def _read(self, fd: int, pos: int, length: int, rwf: int = 0) -> tuple[int, bytes]:
        self.syscalls += 1
        if length > POOL:
            raise ValueError(f"reads of at most {POOL} bytes, not {length}")
        view = memoryview(self._pool)[:length]
        try:
            n = os.preadv(fd, [view], pos, rwf)
        except OSError as exc:
            return _errno(exc), b""
        finally:
            view.release()
        return n, self._pool[:n]

    def buffered_write(self, name: str, pos: int, length: int, wid: int) -> int:
        self.syscalls += 1
        try:
            return os.pwrite(self._fd(name, direct=False), pattern(wid, pos, length), pos)
        except OSError as exc:
            return _errno(exc)

    def buffered_read(self, name: str, pos: int, length: int) -> tuple[int, bytes]:
        return self._read(self._fd(name, direct=False), pos, length)

    def _call(self, fn: object, *args: object) -> int:
        self.syscalls += 1
        try:
            fn(*args)  # type: ignore[operator]
        except OSError as exc:
            return _errno(exc)
        return 0

    def fsync(self, name: str, data_only: bool) -> int:
        return self._call(os.fdatasync if data_only else os.fsync, self._fd(name, False))

    def truncate(self, name: str, size: int) -> int:
        return self._call(os.ftruncate, self._fd(name, False), size)

    def fallocate(self, name: str, pos: int, length: int, keep_size: bool) -> int:
        mode = FALLOC_FL_KEEP_SIZE if keep_size else 0
        return self._call(fallocate, self._fd(name, False), mode, pos, length)

    def punch(self, name: str, pos: int, length: int) -> int:
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        return self._call(fallocate, self._fd(name, False), mode, pos, length)

    def zero_range(self, name: str, pos: int, length: int, keep_size: bool) -> int:
        mode = FALLOC_FL_ZERO_RANGE | (FALLOC_FL_KEEP_SIZE if keep_size else 0)
        return self._call(fallocate, self._fd(name, False), mode, pos, length)

    def mmap_write(self, name: str, pos: int, length: int, wid: int) -> int:
        fd = self._fd(name, False)
        self.syscalls += 1
        size = os.fstat(fd).st_size
        n = max(0, min(length, size - pos))
        if not n:
            return 0
        start = pos - pos % mmap.PAGESIZE
        m = mmap.mmap(fd, pos + n - start, offset=start)  # MAP_SHARED, read and write
        try:
            m[pos - start : pos - start + n] = pattern(wid, pos, n)
        finally:
            m.close()  # (dirty pages stay dirty: no msync)
        return n

    def reflink(self, src: str, spos: int, dst: str, dpos: int, length: int) -> int:
        arg = struct.pack("=qQQQ", self._fd(src, False), spos, length, dpos)
        return self._call(fcntl.ioctl, self._fd(dst, False), FICLONERANGE, arg)

    def drop_cache(self, name: str) -> int:
        return self._call(os.posix_fadvise, self._fd(name, False), 0, 0,
                          os.POSIX_FADV_DONTNEED)  # fmt: skip

    def remount(self) -> int:
        """Close every file, unmount, mount again; files reopen on their next use. (The
        AIO context holds no file once its requests are reaped: it stays; io_destroy
        waits for an RCU grace period. So does the io_uring: a request an io-wq worker
        retried lets go of its file in this thread's task work, run as a system call
        returns, a moment after its completion shows.)"""
        self._close_files()
        try:
            remount(self.m)
        except Exception as exc:
            raise RuntimeError(f"remounting {self.m.mnt} failed: {exc}") from exc
        return 0

    def remove(self, name: str) -> int:
        with critical():
            for fd in self._fds.pop(name, ()):
                if fd >= 0:
                    os.close(fd)
        if name in self._names:
            self._names.remove(name)
        return self._call(os.unlink, self._path(name))

    # -- queries --------------------------------------------------------------------------

    def size(self, name: str) -> int:
        return os.fstat(self._fd(name, False)).st_size

    def read_view(self, name: str, pos: int, length: int) -> bytes:
        fd = self._fd(name, False)
        out = bytearray()
        while length > 0:
            n, data = self._read(fd, pos, min(length, POOL))
            if n <= 0:
                if n < 0:
                    raise OSError(-n, f"read view of {name} at {pos}: {os.strerror(-n)}")
                break
            out += data
            pos, length = pos + n, length - n
        return bytes(out)

    def files(self) -> list[str]:
        return list(self._names)
