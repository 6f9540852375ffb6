"""A small ctypes binding of Linux native AIO (io_setup/io_submit/io_getevents/io_destroy).

glibc has no wrappers for these system calls, so they are made through ``syscall(2)``.
The structures follow ``include/uapi/linux/aio_abi.h`` exactly.  Only 64-bit
little-endian x86_64 and aarch64 are supported (the syscall numbers differ per
architecture); anything else raises :class:`AioError` with ``ENOSYS``.

Buffers are passed by address, so every buffer handed to :meth:`AioContext.submit` is
pinned (a reference plus a buffer export is held) until its completion event has been
reaped or the context has been destroyed; an ``mmap`` therefore cannot be closed or
resized while the kernel may still touch it.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import sys
import threading
import time
import warnings
from types import TracebackType
from typing import NamedTuple

__all__ = [
    "IOCB_CMD_PREAD",
    "IOCB_CMD_PWRITE",
    "OPS",
    "AioContext",
    "AioError",
]

IOCB_CMD_PREAD = 0
IOCB_CMD_PWRITE = 1
OPS = {"read": IOCB_CMD_PREAD, "write": IOCB_CMD_PWRITE}

# (io_setup, io_destroy, io_submit, io_getevents) per architecture.
_SYSCALLS: dict[str, tuple[int, int, int, int]] = {
    "x86_64": (206, 207, 209, 208),
    "aarch64": (0, 1, 2, 4),  # asm-generic/unistd.h
    "arm64": (0, 1, 2, 4),
}

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1

Buffer = memoryview | mmap.mmap | bytearray


class AioError(OSError):
    """A native AIO system call failed; ``errno`` holds the kernel's error number."""


def _error(err: int, what: str) -> AioError:
    return AioError(err, f"{what}: {os.strerror(err)}")


if sys.byteorder == "little":
    _KEY_FIELDS = [("aio_key", ctypes.c_uint32), ("aio_rw_flags", ctypes.c_int32)]
else:  # pragma: no cover - no supported big-endian architecture
    _KEY_FIELDS = [("aio_rw_flags", ctypes.c_int32), ("aio_key", ctypes.c_uint32)]


class Iocb(ctypes.Structure):
    """``struct iocb`` (64 bytes)."""

    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        *_KEY_FIELDS,
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class IoEvent(ctypes.Structure):
    """``struct io_event`` (32 bytes); ``res`` and ``res2`` are signed."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class KernelTimespec(ctypes.Structure):
    """``struct __kernel_timespec``."""

    _fields_ = [
        ("tv_sec", ctypes.c_int64),
        ("tv_nsec", ctypes.c_int64),
    ]


assert ctypes.sizeof(Iocb) == 64
assert ctypes.sizeof(IoEvent) == 32
assert ctypes.sizeof(KernelTimespec) == 16


class _Syscalls:
    """The four raw system calls; each returns the result or raises :class:`AioError`."""

    def __init__(self) -> None:
        machine = platform.machine()
        if sys.platform != "linux":
            raise _error(errno.ENOSYS, f"native AIO needs Linux, not {sys.platform}")
        if machine not in _SYSCALLS or ctypes.sizeof(ctypes.c_void_p) != 8:
            raise _error(
                errno.ENOSYS,
                f"native AIO binding supports x86_64 and aarch64 (64-bit), not {machine!r}",
            )
        self.nr_setup, self.nr_destroy, self.nr_submit, self.nr_getevents = _SYSCALLS[machine]
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long

    def call(self, what: str, nr: int, *args: object) -> int:
        """``syscall(nr, *args)``; raise AioError(errno) on -1."""
        ctypes.set_errno(0)
        ret = self._syscall(ctypes.c_long(nr), *args)
        if ret < 0:
            raise _error(ctypes.get_errno(), what)
        return int(ret)

    def io_setup(self, nr_events: int) -> int:
        ctx = ctypes.c_ulong(0)
        self.call("io_setup", self.nr_setup, ctypes.c_uint(nr_events), ctypes.byref(ctx))
        return int(ctx.value)

    def io_destroy(self, ctx: int) -> None:
        self.call("io_destroy", self.nr_destroy, ctypes.c_ulong(ctx))

    def io_submit(self, ctx: int, iocbpp: ctypes.Array[ctypes.c_void_p]) -> int:
        return self.call(
            "io_submit", self.nr_submit, ctypes.c_ulong(ctx), ctypes.c_long(len(iocbpp)), iocbpp
        )

    def io_getevents(
        self,
        ctx: int,
        min_nr: int,
        events: ctypes.Array[IoEvent],
        timeout: KernelTimespec | None,
    ) -> int:
        return self.call(
            "io_getevents",
            self.nr_getevents,
            ctypes.c_ulong(ctx),
            ctypes.c_long(min_nr),
            ctypes.c_long(len(events)),
            events,
            ctypes.byref(timeout) if timeout is not None else ctypes.c_void_p(None),
        )


_sys: _Syscalls | None = None


def syscalls() -> _Syscalls:
    """The raw system calls for this architecture (created on first use)."""
    global _sys
    if _sys is None:
        _sys = _Syscalls()
    return _sys


class _Inflight(NamedTuple):
    iocb: Iocb
    buf: object  # the caller's buffer object, kept alive until reaped
    view: memoryview  # holds the buffer export until reaped; released explicitly

    def release(self) -> None:
        self.view.release()


def _pin(buf: Buffer) -> tuple[int, int, memoryview]:
    """Return (address, length, view) of a writable, C-contiguous buffer.

    ``view`` holds a buffer export (an mmap cannot be closed or resized meanwhile)
    until ``view.release()``; release does not depend on garbage collection.
    """
    try:
        view = memoryview(buf)
    except TypeError:
        raise TypeError(
            f"buffer must support the buffer protocol, not {type(buf).__name__}"
        ) from None
    readonly, contiguous = view.readonly, view.c_contiguous
    if readonly or not contiguous:
        view.release()
        if not contiguous:
            raise TypeError("buffer must be C-contiguous")
        raise TypeError(
            "buffer is read-only; native AIO needs writable memory "
            "(e.g. an anonymous mmap or a memoryview of one)"
        )
    if view.nbytes == 0:
        return 0, 0, view
    # The temporary c_char shares ``view``'s export and is dropped at once.
    addr = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return addr, view.nbytes, view


class AioContext:
    """A Linux AIO context (``aio_context_t``); a context manager that destroys it on exit.

    submit and reap may run in different threads; close must not race with either.
    """

    def __init__(self, nr_events: int = 64) -> None:
        """Create the context with room for ``nr_events`` requests in flight."""
        if not 0 < nr_events <= _U32_MAX:
            raise ValueError(f"nr_events must be positive, got {nr_events}")
        self._ctx = 0  # set first: __del__ may run even if io_setup fails
        self._inflight: dict[int, _Inflight] = {}
        self._lock = threading.Lock()
        self._sys = syscalls()
        self._ctx = self._sys.io_setup(nr_events)
        self.nr_events = nr_events

    @property
    def ctx_id(self) -> int:
        """The kernel's context id (0 once destroyed)."""
        return self._ctx

    @property
    def closed(self) -> bool:
        """True once io_destroy has been called."""
        return self._ctx == 0

    def __enter__(self) -> AioContext:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_ctx", 0):
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"ctx={self._ctx:#x} pending={self.pending()}"
        return f"<AioContext {state}>"

    def close(self) -> None:
        """io_destroy: cancel what it can, wait for the rest, then release all buffers."""
        ctx, self._ctx = self._ctx, 0
        if not ctx:
            return
        try:
            # io_destroy waits until every request in flight has completed, so the
            # buffers may be released afterwards even though their events are lost.
            self._sys.io_destroy(ctx)
        finally:
            with self._lock:
                entries = list(self._inflight.values())
                self._inflight.clear()
            for entry in entries:
                entry.release()

    def _check_open(self) -> None:
        if not self._ctx:
            raise ValueError("AIO context is closed (io_destroy already called)")

    def pending(self) -> int:
        """How many submitted requests have not been reaped yet."""
        return len(self._inflight)

    def _prepare(
        self, op: str, fd: int, buf: Buffer, offset: int, rw_flags: int, data: int
    ) -> _Inflight:
        if op not in OPS:
            raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
        if not 0 <= fd <= _U32_MAX:
            raise ValueError(f"bad file descriptor {fd}")
        if not 0 <= data <= _U64_MAX:
            raise ValueError(f"data must fit in 64 unsigned bits, got {data}")
        if not 0 <= rw_flags <= _U32_MAX:
            raise ValueError(f"rw_flags must fit in 32 bits, got {rw_flags:#x}")
        if not -(1 << 63) <= offset < 1 << 63:
            raise ValueError(f"offset out of range: {offset}")
        addr, nbytes, view = _pin(buf)
        iocb = Iocb()
        iocb.aio_data = data
        iocb.aio_rw_flags = ctypes.c_int32(rw_flags).value
        iocb.aio_lio_opcode = OPS[op]
        iocb.aio_fildes = fd
        iocb.aio_buf = addr
        iocb.aio_nbytes = nbytes
        iocb.aio_offset = offset
        return _Inflight(iocb, buf, view)

    def _submit(self, entries: list[_Inflight]) -> int:
        """One io_submit for ``entries``; keep exactly the accepted ones pinned."""
        self._check_open()
        addrs = [ctypes.addressof(e.iocb) for e in entries]
        # Register before submitting: another thread may reap the event at once.
        with self._lock:
            for addr, e in zip(addrs, entries, strict=True):
                self._inflight[addr] = e
        accepted = 0
        try:
            accepted = self._sys.io_submit(self._ctx, (ctypes.c_void_p * len(addrs))(*addrs))
        finally:
            with self._lock:
                for addr in addrs[accepted:]:
                    self._inflight.pop(addr, None)
            for entry in entries[accepted:]:
                entry.release()
        return accepted

    def submit(
        self,
        op: str,
        fd: int,
        buf: Buffer,
        offset: int,
        *,
        rw_flags: int = 0,
        data: int = 0,
    ) -> None:
        """Submit one ``"read"`` (IOCB_CMD_PREAD) or ``"write"`` (IOCB_CMD_PWRITE).

        ``rw_flags`` goes to ``aio_rw_flags`` (``os.RWF_*``), ``data`` comes back with the
        event.  If io_submit itself fails, AioError carries its errno and nothing stays
        pinned.
        """
        self._check_open()
        self._submit([self._prepare(op, fd, buf, offset, rw_flags, data)])

    def submit_many(self, ops: list[tuple[str, int, Buffer, int, int, int]]) -> int:
        """Submit ``(op, fd, buf, offset, rw_flags, data)`` tuples with one io_submit.

        Returns how many the kernel accepted (a prefix of ``ops``).  As with io_submit,
        an error is raised (AioError) only when not even the first one was accepted.
        """
        self._check_open()
        if not ops:
            return 0
        entries: list[_Inflight] = []
        try:
            for op in ops:
                entries.append(self._prepare(*op))
        except BaseException:
            for entry in entries:
                entry.release()
            raise
        return self._submit(entries)

    def reap(
        self, min_nr: int = 1, max_nr: int | None = None, timeout: float | None = None
    ) -> list[tuple[int, int]]:
        """io_getevents: wait for at least ``min_nr`` completions (or ``timeout`` seconds).

        Returns ``[(data, res)]`` where ``res`` is the byte count or a negative errno.
        ``max_nr`` defaults to everything pending; interrupted waits (EINTR) are retried.
        """
        self._check_open()
        if max_nr is None:
            max_nr = max(self.pending(), min_nr, 1)
        if not 0 <= min_nr <= max_nr or max_nr <= 0:
            raise ValueError(f"need 0 <= min_nr <= max_nr and max_nr > 0 ({min_nr}, {max_nr})")
        if timeout is None and min_nr > self.pending():
            raise ValueError(
                f"waiting for {min_nr} events with only {self.pending()} pending "
                "would block forever"
            )
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        events = (IoEvent * max_nr)()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ts = None
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                ts = KernelTimespec(int(left), int((left % 1) * 1e9))
            try:
                n = self._sys.io_getevents(self._ctx, min_nr, events, ts)
                break
            except AioError as e:
                if e.errno != errno.EINTR:
                    raise
        out: list[tuple[int, int]] = []
        done: list[_Inflight] = []
        with self._lock:
            for ev in events[:n]:
                entry = self._inflight.pop(int(ev.obj), None)
                if entry is not None:
                    done.append(entry)
                out.append((int(ev.data), int(ev.res)))
        for entry in done:
            entry.release()
        return out
