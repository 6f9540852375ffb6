"""A small ctypes binding of io_uring: ``io_uring_setup``/``io_uring_enter`` and the rings.

The system calls and structures are in ``uring_abi.py``. The rings are mapped with
``mmap(2)`` at ``IORING_OFF_SQ_RING``, ``IORING_OFF_CQ_RING`` (one mapping for both under
``IORING_FEAT_SINGLE_MMAP``) and ``IORING_OFF_SQES``. Only ``IORING_OP_READ`` and
``IORING_OP_WRITE`` are offered, with ``rw_flags`` (``RWF_*``); the ring is set up with
``IORING_SETUP_SUBMIT_ALL`` where the kernel has it (a request that fails in its
preparation still gets its completion, and the rest are submitted). Every request
consumed gives exactly one completion (no multishot, no skipped CQEs), and no more
requests are in flight than the SQ ring has entries (the CQ ring has twice as many), so
the CQ ring cannot overflow and ``close`` can count what is still in flight with the
kernel's own counters.

With io_uring the kernel first tries each request inline with IOCB_NOWAIT; one that
would block (-EAGAIN) is retried, without NOWAIT, by an io-wq worker thread of this
process, unless the caller asked for RWF_NOWAIT itself (then -EAGAIN is the result).

Buffers are passed by address, so every buffer handed to :meth:`UringContext.submit_many`
is pinned (a reference plus a buffer export) until its completion has been reaped or the
context has been closed; ``close`` first waits for every request in flight.

Memory ordering. Without SQPOLL the kernel reads the submission ring only inside our own
``io_uring_enter``, on this CPU, after the SQEs and the new tail were stored: program
order is enough on any architecture. Completions are written by other CPUs (an
interrupt, an io-wq worker) and published with a store-release of the CQ tail; the
reader must load the tail before the entries. On x86_64 loads are not reordered with
older loads (TSO), and each ctypes access is an opaque call the compiler cannot move,
so plain loads in program order suffice. On aarch64 a load-acquire is needed: a
two-instruction stub (``dmb ishld; ret``) in an executable page is called between the
two. The consumer never lets the kernel reuse a slot it is still reading: at most
``sq_entries`` requests are in flight, and the CQ ring has at least as many entries.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
import warnings
from types import TracebackType
from typing import NamedTuple

from .aio import Buffer, _pin
from .uring_abi import (
    IORING_ENTER_EXT_ARG,
    IORING_ENTER_GETEVENTS,
    IORING_FEAT_EXT_ARG,
    IORING_FEAT_SINGLE_MMAP,
    IORING_OFF_CQ_RING,
    IORING_OFF_SQ_RING,
    IORING_OFF_SQES,
    IORING_OP_READ,
    IORING_OP_WRITE,
    IORING_SETUP_SUBMIT_ALL,
    MAX_ENTRIES,
    OPS,
    U32,
    U64_MAX,
    Cqe,
    GeteventsArg,
    KernelTimespec,
    Params,
    Sqe,
    UringError,
    disabled,
    syscalls,
    u32,
    uring_error,
    why_eperm,
)

__all__ = [
    "IORING_OP_READ",
    "IORING_OP_WRITE",
    "OPS",
    "UringContext",
    "UringError",
    "unavailable",
]


def unavailable() -> str | None:
    """Why io_uring cannot be used by this process (None: it can); a ring of one entry
    is set up and closed again to find out."""
    try:
        UringContext(1).close()
    except UringError as exc:
        return str(exc)
    return None


class _Inflight(NamedTuple):
    buf: object  # the caller's buffer object, kept alive until reaped
    view: memoryview  # holds the buffer export until reaped; released explicitly
    data: int  # the caller's, given back with the completion
    seq: int  # the SQ tail value its SQE was written at

    def release(self) -> None:
        self.view.release()


class _Prepared(NamedTuple):
    opcode: int
    fd: int
    addr: int
    nbytes: int
    offset: int
    rw_flags: int
    entry: _Inflight


# buffers of a context whose close() was interrupted while requests were in flight:
# never released (the kernel may still write into them)
_ABANDONED: list[_Inflight] = []


class UringContext:
    """An io_uring instance; a context manager that closes it on exit.

    submit and reap may run in different threads; close must not race with either.
    """

    def __init__(self, entries: int = 64) -> None:
        """Set up a ring with room for ``entries`` requests in flight (the kernel
        rounds up to a power of two: see ``entries`` afterwards)."""
        if not 0 < entries <= MAX_ENTRIES:
            raise ValueError(f"entries must be in 1..{MAX_ENTRIES}, got {entries}")
        self._fd = -1  # set first: __del__ may run even if the setup fails
        self._maps: list[tuple[int, int]] = []
        self._inflight: dict[int, _Inflight] = {}  # token (the SQE's user_data) -> entry
        self._token = 0
        self._lock = threading.Lock()
        self._sys = syscalls()
        why = disabled()
        if why is not None:
            raise UringError(errno.EPERM, why)
        self._fd, p = self._setup(entries)
        try:
            self._map(p)
        except BaseException:
            self._unmap_and_close()
            raise
        self.entries = p.sq_entries
        self.features = p.features

    def _setup(self, entries: int) -> tuple[int, Params]:
        for flags in (IORING_SETUP_SUBMIT_ALL, 0):  # (SUBMIT_ALL: Linux 5.18)
            p = Params(flags=flags)
            try:
                return self._sys.setup(entries, p), p
            except UringError as exc:
                if exc.errno == errno.EINVAL and flags:
                    continue
                if exc.errno == errno.EPERM:
                    raise UringError(exc.errno, f"{exc.strerror}: {why_eperm()}") from None
                if exc.errno == errno.ENOSYS:
                    raise UringError(exc.errno, f"{exc.strerror}: the kernel has no io_uring "
                                     "(CONFIG_IO_URING) or a seccomp filter hides it") \
                        from None  # fmt: skip
                raise
        raise AssertionError("unreachable")

    def _map(self, p: Params) -> None:
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * ctypes.sizeof(Cqe)
        if p.features & IORING_FEAT_SINGLE_MMAP:
            sq_size = cq_size = max(sq_size, cq_size)
            sq = cq = self._map_one(sq_size, IORING_OFF_SQ_RING)
        else:
            sq = self._map_one(sq_size, IORING_OFF_SQ_RING)
            cq = self._map_one(cq_size, IORING_OFF_CQ_RING)
        sqes = self._map_one(p.sq_entries * ctypes.sizeof(Sqe), IORING_OFF_SQES)
        s, c = p.sq_off, p.cq_off
        self._sq_head = u32.from_address(sq + s.head)  # the kernel's: what it consumed
        self._sq_tail = u32.from_address(sq + s.tail)  # ours
        self._sq_mask = u32.from_address(sq + s.ring_mask).value
        array = (u32 * p.sq_entries).from_address(sq + s.array)
        for i in range(p.sq_entries):
            array[i] = i  # SQE i sits at ring slot i, for good
        self._sqes = (Sqe * p.sq_entries).from_address(sqes)
        self._cq_head = u32.from_address(cq + c.head)  # ours
        self._cq_tail = u32.from_address(cq + c.tail)  # the kernel's
        self._cq_mask = u32.from_address(cq + c.ring_mask).value
        self._cqes = (Cqe * p.cq_entries).from_address(cq + c.cqes)
        if p.cq_entries < p.sq_entries:  # (the kernel makes it twice as many)
            raise uring_error(errno.EINVAL, "io_uring CQ ring smaller than its SQ ring")

    def _map_one(self, length: int, offset: int) -> int:
        addr = self._sys.map(self._fd, length, offset)
        self._maps.append((addr, length))
        return addr

    def _unmap_and_close(self) -> None:
        fd, self._fd = self._fd, -1
        maps, self._maps = self._maps, []
        try:
            for addr, length in maps:
                self._sys.unmap(addr, length)
        finally:
            if fd >= 0:
                os.close(fd)

    @property
    def fd(self) -> int:
        """The ring's file descriptor (-1 once closed)."""
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> UringContext:
        self._check_open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd} pending={self.pending()}"
        return f"<UringContext {state}>"

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError("io_uring context is closed")

    def pending(self) -> int:
        """How many submitted requests have not been reaped yet."""
        return len(self._inflight)

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Wait for every request in flight (their completions are dropped), then unmap
        the rings, close the ring and release all buffers. Idempotent."""
        if self._fd < 0:
            return
        done = False
        try:
            self._wait_all()
            done = True
        finally:
            with self._lock:
                entries = list(self._inflight.values())
                self._inflight.clear()
            self._unmap_and_close()
            if done:
                for entry in entries:
                    entry.release()
            else:  # interrupted: the kernel may still use them
                _ABANDONED.extend(entries)

    def _wait_all(self) -> None:
        """Until the kernel has completed every SQE it consumed. Counted with the
        kernel's own counters (each consumed SQE gives one CQE; the CQ cannot overflow),
        so a submit or reap cut short by an exception cannot make this wait too little
        or forever."""
        with self._lock:
            self._rewind()
        while True:
            self._consume(None)
            with self._lock:
                left = (self._sq_head.value - self._cq_tail.value) & U32
            if not left:
                return
            try:
                self._sys.enter(self._fd, 0, left, IORING_ENTER_GETEVENTS)
            except UringError as exc:
                if exc.errno != errno.EINTR:
                    raise

    # -- submitting -----------------------------------------------------------------------

    def _prepare(self, op: str, fd: int, buf: Buffer, offset: int, rw_flags: int,
                 data: int) -> _Prepared:  # fmt: skip
        if op not in OPS:
            raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
        if not 0 <= fd < 1 << 31:
            raise ValueError(f"bad file descriptor {fd}")
        if not 0 <= data <= U64_MAX:
            raise ValueError(f"data must fit in 64 unsigned bits, got {data}")
        if not 0 <= rw_flags <= U32:
            raise ValueError(f"rw_flags must fit in 32 bits, got {rw_flags:#x}")
        if not 0 <= offset < 1 << 63:
            raise ValueError(f"offset out of range: {offset}")
        addr, nbytes, view = _pin(buf)
        if nbytes > U32:
            view.release()
            raise ValueError(f"a request of {nbytes} bytes does not fit the SQE's len")
        return _Prepared(OPS[op], fd, addr, nbytes, offset, rw_flags,
                         _Inflight(buf, view, data, 0))  # fmt: skip

    def submit(self, op: str, fd: int, buf: Buffer, offset: int, *, rw_flags: int = 0,
               data: int = 0) -> None:  # fmt: skip
        """Submit one ``"read"`` (IORING_OP_READ) or ``"write"`` (IORING_OP_WRITE)."""
        self.submit_many([(op, fd, buf, offset, rw_flags, data)])

    def submit_many(self, ops: list[tuple[str, int, Buffer, int, int, int]]) -> int:
        """Submit ``(op, fd, buf, offset, rw_flags, data)`` tuples with one
        io_uring_enter; ``data`` comes back with the completion.

        Returns how many the kernel took (a prefix of ``ops``: as many as the ring has
        room for). A request that fails (a bad descriptor, a bad flag) is taken and
        completes with the negative errno; UringError is raised only when not even the
        first one was taken. Nothing not taken stays pinned.
        """
        self._check_open()
        if not ops:
            return 0
        prepared: list[_Prepared] = []
        try:
            for op in ops:
                prepared.append(self._prepare(*op))
        except BaseException:
            for p in prepared:
                p.entry.release()
            raise
        taken: list[_Prepared] = []
        try:
            with self._lock:
                self._check_open()
                self._rewind()
                taken = prepared[: max(0, self.entries - len(self._inflight))]
                if not taken:
                    raise UringError(errno.EAGAIN, f"io_uring: {self.entries} requests "
                                     "in flight already fill the ring")  # fmt: skip
                return self._submit(taken)
        finally:
            for p in prepared[len(taken) :]:
                p.entry.release()

    def _submit(self, taken: list[_Prepared]) -> int:
        """Write the SQEs, publish the tail, io_uring_enter; keep what was consumed."""
        head = self._sq_head.value
        tail = self._sq_tail.value
        for p in taken:
            self._token += 1
            # registered before the kernel sees it; dropped again by _rewind if not
            self._inflight[self._token] = p.entry._replace(seq=tail)
            sqe = self._sqes[tail & self._sq_mask]
            ctypes.memset(ctypes.addressof(sqe), 0, ctypes.sizeof(Sqe))
            sqe.opcode, sqe.fd, sqe.off, sqe.addr = p.opcode, p.fd, p.offset, p.addr
            sqe.len, sqe.rw_flags = p.nbytes, ctypes.c_int32(p.rw_flags).value
            sqe.user_data = self._token
            tail = (tail + 1) & U32
        self._sq_tail.value = tail  # after the SQEs (read by the kernel in our enter)
        error: UringError | None = None
        try:
            self._sys.enter(self._fd, len(taken), 0, 0)
        except UringError as exc:
            error = exc
        finally:  # (also when a signal's exception cuts the submission short)
            consumed = (self._sq_head.value - head) & U32
            if consumed < len(taken):
                self._rewind()  # (an error, or no memory for more requests)
        if error is not None and not consumed:
            raise error
        return consumed

    def _rewind(self) -> None:
        """Take back SQEs the kernel has not consumed (a submit cut short): the tail
        goes back to the kernel's head, their buffers are released. Under the lock."""
        head = self._sq_head.value
        stale = [t for t, e in self._inflight.items() if (e.seq - head) & U32 < 1 << 31]
        for t in stale:
            self._inflight.pop(t).release()
        self._sq_tail.value = head

    # -- reaping --------------------------------------------------------------------------

    def _consume(self, limit: int | None) -> list[tuple[int, int]]:
        """The completions in the CQ ring now (at most ``limit``), their buffers released."""
        out: list[tuple[int, int]] = []
        with self._lock:
            if self._fd < 0:
                return out
            head, tail = self._cq_head.value, self._cq_tail.value
            self._sys.acquire()  # the entries after the tail (module docstring)
            while head != tail and (limit is None or len(out) < limit):
                cqe = self._cqes[head & self._cq_mask]
                token, res = cqe.user_data, cqe.res
                entry = self._inflight.pop(token, None)
                head = (head + 1) & U32
                self._cq_head.value = head
                if entry is not None:
                    entry.release()
                    out.append((entry.data, res))
        return out

    def reap(self, min_nr: int = 1, max_nr: int | None = None,
             timeout: float | None = None) -> list[tuple[int, int]]:  # fmt: skip
        """Wait for at least ``min_nr`` completions (or ``timeout`` seconds).

        Returns ``[(data, res)]`` where ``res`` is the byte count or a negative errno.
        ``max_nr`` defaults to everything pending; interrupted waits (EINTR) are
        retried. A timeout other than 0 needs IORING_FEAT_EXT_ARG (Linux 5.11).
        """
        self._check_open()
        if max_nr is None:
            max_nr = max(self.pending(), min_nr, 1)
        if not 0 <= min_nr <= max_nr or max_nr <= 0:
            raise ValueError(f"need 0 <= min_nr <= max_nr and max_nr > 0 ({min_nr}, {max_nr})")
        if timeout is None and min_nr > self.pending():
            raise ValueError(f"waiting for {min_nr} completions with only {self.pending()} "
                             "pending would block forever")  # fmt: skip
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        if timeout and not self.features & IORING_FEAT_EXT_ARG:
            raise uring_error(errno.EINVAL, "io_uring wait with a timeout (no IORING_FEAT_EXT_ARG)")
        deadline = None if timeout is None else time.monotonic() + timeout
        # the first pass runs the task work that posts completions (min_complete 0)
        out = self._wait_and_consume(0, max_nr, None)
        while len(out) < min_nr:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            out += self._wait_and_consume(min_nr - len(out), max_nr - len(out), left)
        return out

    def _wait_and_consume(self, want: int, limit: int,
                          left: float | None) -> list[tuple[int, int]]:  # fmt: skip
        arg, ts = None, None
        flags = IORING_ENTER_GETEVENTS
        if left is not None and want:
            ts = KernelTimespec(int(left), int(left % 1 * 1e9))
            arg = GeteventsArg(ts=ctypes.addressof(ts))
            flags |= IORING_ENTER_EXT_ARG
        try:
            self._sys.enter(self._fd, 0, want, flags, arg)
        except UringError as exc:
            if exc.errno not in (errno.EINTR, errno.ETIME):
                raise
        return self._consume(limit)
