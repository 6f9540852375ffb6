"""A direct-I/O engine in the manner of fs/iomap/direct-io.c, doing real I/O.

Written from the kernel source, independently of ``dioconf.model`` (the two are
compared). ``iomap_dio_rw`` maps the request with the filesystem's callbacks, builds
bios over the user buffer (zeroing sub-block edges), submits them to a scheduler,
counts references and completes the request in the submitter, inline from the last
bio, or "on the workqueue".
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .api import (
    EAGAIN,
    EFAULT,
    EINVAL,
    EIO,
    EIOCBQUEUED,
    ENOTBLK,
    F_ATOMIC_BIO,
    F_DIRTY,
    F_NEW,
    F_SHARED,
    HOLE,
    INLINE,
    MAPPED,
    UNWRITTEN,
    Bio,
    ContractError,
    DioError,
    Inode,
    Iomap,
    Kiocb,
)
from .sched import UserBuffer

BIO_MAX_VECS = 256
ZERO = memoryview(bytes(1 << 20))
_KEPT_DIO_FLAGS = frozenset({"FSBLOCK_ALIGNED", "BUF_WRITETHROUGH"})
_NONE: frozenset[str] = frozenset()
_WRITE = frozenset({"WRITE"})
_SYNC = frozenset({"DSYNC", "SYNC"})
class IterFlag:
    """The iomap_iter flags of a request besides IOMAP_DIRECT (include/linux/iomap.h),
    as named bits (plain ints: the hot path ORs them)."""

    NONE, NOWAIT, WRITE, OVERWRITE_ONLY, ATOMIC = 0, 1, 2, 4, 8
    NAMES = ((NOWAIT, "NOWAIT"), (WRITE, "WRITE"), (OVERWRITE_ONLY, "OVERWRITE_ONLY"),
             (ATOMIC, "ATOMIC"))  # fmt: skip


@functools.cache
def iomap_flags(bits: int) -> frozenset[str]:
    """The flag names ->iomap_begin gets for ``bits`` (built once per combination)."""
    return frozenset({"DIRECT", *(name for bit, name in IterFlag.NAMES if bits & bit)})


_HOOKS = frozenset({"dio_start", "iomap_end", "submit_io", "end_io"})


@dataclass
class DioEnv:
    """Everything around the engine: filesystem, device, scheduler, page cache, trace."""

    fs: Any
    sched: Any
    lbs: int
    write_cache: bool
    fua: bool
    page_size: int = 4096
    trace: Any = None  # a TraceRecorder, or None
    # page cache hooks (a real page cache plugs in here): return 0 or -errno
    # page cache hooks (a real page cache plugs in here; None: no page cache, nothing to do)
    invalidate: Callable[[Inode, int, int, bool], int] | None = None  # 0 or -errno
    write_and_wait: Callable[[Inode, int, int, bool], int] | None = None  # 0 or -errno
    invalidate_after: Callable[[Inode, int, int], None] | None = None
    fsync: Callable[[Inode, int, int], int] | None = None  # generic_write_sync
    # the filesystem's optional callbacks, looked up once (None when it has none)
    dio_start: Any = field(init=False, repr=False)
    iomap_end: Any = field(init=False, repr=False)
    submit_io: Any = field(init=False, repr=False)
    end_io: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("dio_start", "iomap_end", "submit_io", "end_io"):
            setattr(self, name, getattr(self.fs, name, None))

    def hook(self, name: str) -> Any:
        """The filesystem's optional callback ``name`` (or None)."""
        return getattr(self, name) if name in _HOOKS else getattr(self.fs, name, None)

@dataclass(slots=True)
class Dio:
    env: DioEnv
    inode: Inode
    iocb: Kiocb
    buf: UserBuffer
    req: int
    done_before: int
    flags: set[str]
    i_size: int
    wait: bool
    ref: int = 1
    error: int = 0
    size: int = 0
    nbios: int = 0
    woken: bool = False
    result: int | None = None
    ctx: str = "submitter"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set_error(self, err: int) -> None:
        """First error wins (cmpxchg). Caller holds the lock."""
        if not self.error:
            self.error = err


def iomap_dio_rw(
    env: DioEnv, inode: Inode, iocb: Kiocb, buf: UserBuffer, op: str,
    dio_flags: frozenset[str] = frozenset(), done_before: int = 0, req: int = 1,
) -> int:  # fmt: skip
    """Run one request. Returns the result, or EIOCBQUEUED for an async request still in
    flight (its result then goes to ``iocb.complete``)."""
    tr = env.trace
    length = len(buf.data)
    if tr:
        tr.begin(req, op, iocb, length, done_before, dio_flags, inode)
        if buf.fault_at is not None:
            tr.fault(req, buf.fault_at)
    if length == 0:
        return _early(env, inode, iocb, req, 0)
    dio = Dio(env, inode, iocb, buf, req, done_before,
              set(dio_flags & _KEPT_DIO_FLAGS) if dio_flags else set(), inode.size,
              iocb.complete is None or "FORCE_WAIT" in dio_flags)  # fmt: skip
    nowait = "NOWAIT" in iocb.flags
    iflags = IterFlag.NOWAIT if nowait else IterFlag.NONE
    if op == "read":
        if iocb.pos >= dio.i_size:
            return _early(env, inode, iocb, req, 0)
        ret = 0 if env.write_and_wait is None else env.write_and_wait(inode, iocb.pos, length,
                                                                     nowait)  # fmt: skip
        if ret:
            if tr:
                tr.input(req, "writeback", ret=ret)
            return _early(env, inode, iocb, req, ret)
    else:
        iflags |= IterFlag.WRITE
        dio.flags.add("WRITE")
        if "OVERWRITE_ONLY" in dio_flags:
            if iocb.pos >= dio.i_size or iocb.pos + length > dio.i_size:
                return _early(env, inode, iocb, req, EAGAIN)
            iflags |= IterFlag.OVERWRITE_ONLY
        if "ATOMIC" in iocb.flags:
            iflags |= IterFlag.ATOMIC
        buf_wt = "BUF_WRITETHROUGH" in dio.flags
        if not iocb.flags.isdisjoint(_SYNC) and not buf_wt:
            dio.flags.add("NEED_SYNC")
            if "SYNC" not in iocb.flags:
                dio.flags.add("WRITE_THROUGH")  # try FUA; any non-FUA bio clears it
        if iocb.pos + length > dio.i_size or buf_wt:
            dio.flags.add("COMP_WORK")  # i_size updates need process context
        if buf_wt:
            dio.flags.add("NO_INVALIDATE")
        else:
            ret = 0 if env.invalidate is None else env.invalidate(inode, iocb.pos, length, nowait)
            if ret:
                if tr:
                    tr.input(req, "invalidate", ret=ret)
                if ret != EAGAIN:
                    ret = EAGAIN if "ATOMIC" in iocb.flags else ENOTBLK
                return _early(env, inode, iocb, req, ret)
    start = env.dio_start
    if start is not None:  # the filesystem's per-request private data (e.g. btrfs dio_data)
        start(inode)
    ret = _iterate(dio, op, iomap_flags(iflags), dio_flags)
    return _finish_submission(dio, ret, dio_flags)


def _early(env: DioEnv, inode: Inode, iocb: Kiocb, req: int, ret: int) -> int:
    if env.trace:
        env.trace.complete(req, ret, iocb.pos, inode.size, "submitter")
    return ret


# ------------------------------------------------------------------------- iteration


def _iterate(dio: Dio, op: str, iflags: frozenset[str], dio_flags: frozenset[str]) -> int:
    """The iomap_iter() loop; returns its final value (0 or -errno)."""
    env, inode = dio.env, dio.inode
    sched = env.sched
    pos, left = dio.iocb.pos, len(dio.buf.data)
    mapping: Iomap | None = None
    start, status = pos, 0
    while True:
        if mapping is not None:
            advanced = pos - start
            end = env.iomap_end
            if end is not None:
                olen = left + advanced
                mend = mapping.offset + mapping.length
                r = end(inode, start, min(olen, mend - start), advanced, iflags, mapping)
                if r < 0 and not advanced:
                    return r
            if status < 0:
                return status
            if left == 0 or advanced == 0:
                return 0
        if sched.points:
            sched.point("before_map")
        try:
            mapping = env.fs.iomap_begin(inode, pos, left, iflags)
        except DioError as exc:
            if env.trace:
                env.trace.map_error(dio.req, exc.errno)
            return exc.errno
        if not mapping.offset <= pos < mapping.offset + mapping.length or mapping.addr is None:
            _check_mapping(mapping, pos, op)
        if env.trace:
            env.trace.map(dio.req, mapping)
        start = pos
        length = min(left, mapping.offset + mapping.length - pos)
        if mapping.type == MAPPED:  # _dio_iter's common case
            done, status = _bio_iter(dio, op, mapping, pos, length, left)
        else:
            done, status = _dio_iter(dio, op, mapping, pos, length, left)
        pos, left = pos + done, left - done


def _check_mapping(m: Iomap, pos: int, op: str) -> None:
    if not (m.offset <= pos < m.end) or m.length <= 0:
        raise ContractError(
            f"iomap_begin(pos={pos}) returned [{m.offset}, {m.end}), which does not cover {pos}"
        )
    if m.type in (MAPPED, UNWRITTEN) and m.addr is None:
        raise ContractError(f"iomap_begin(pos={pos}) returned a {m.type} mapping without addr")


def _dio_iter(dio: Dio, op: str, m: Iomap, pos: int, length: int, left: int) -> tuple[int, int]:
    """One mapping: (bytes advanced, status)."""
    write = op == "write"
    if m.type == HOLE:
        if write:
            return 0, EIO  # a hole for a write is a filesystem bug
        return _zero_user(dio, pos, length)
    if m.type == UNWRITTEN and not write:
        return _zero_user(dio, pos, length)
    if m.type in (MAPPED, UNWRITTEN):
        return _bio_iter(dio, op, m, pos, length, left)
    if m.type == INLINE:
        return _inline(dio, op, m, pos, length)
    return 0, EIO  # DELALLOC: a collision with buffered writes


def _zero_user(dio: Dio, pos: int, length: int) -> tuple[int, int]:
    off = pos - dio.iocb.pos
    n = dio.buf.pinnable(off, length)
    dio.buf.view[off : off + n] = ZERO[:n] if n <= len(ZERO) else bytes(n)
    dio.size += n
    return (n, 0) if n else (0, EFAULT)


def _inline(dio: Dio, op: str, m: Iomap, pos: int, length: int) -> tuple[int, int]:
    page = dio.env.page_size
    if m.inline is None or m.length > page - (m.addr or 0) % page:
        return 0, EIO
    off = pos - dio.iocb.pos
    n = dio.buf.pinnable(off, length)
    at = pos - m.offset
    if op == "write":
        size = dio.inode.size
        if pos > size:
            m.inline[size - m.offset : at] = bytes(pos - size)
        m.inline[at : at + n] = dio.buf.view[off : off + n]
        if n and pos + n > size:
            dio.inode.size = pos + n
    else:
        dio.buf.view[off : off + n] = m.inline[at : at + n]
    dio.size += n
    return (n, 0) if n else (0, EFAULT)


def _bio_iter(dio: Dio, op: str, m: Iomap, pos: int, length: int, left: int) -> tuple[int, int]:
    env = dio.env
    bs = env.fs.block_size
    align = bs if "FSBLOCK_ALIGNED" in dio.flags else env.lbs
    if (pos | length) & (align - 1):
        return 0, EINVAL
    zeroout = fua = atomic = False
    if op == "write":
        work = m.type != MAPPED
        if m.type == UNWRITTEN:
            dio.flags.add("UNWRITTEN")
            zeroout = True
        if F_ATOMIC_BIO in m.flags:
            if length != left:
                return 0, EINVAL
            atomic = True
        if F_SHARED in m.flags:
            work = True
            dio.flags.add("COW")
        if F_NEW in m.flags:
            work = zeroout = True
        if "WRITE_THROUGH" in dio.flags:
            if not work and F_DIRTY not in m.flags and (not env.write_cache or env.fua):
                fua = True
            else:
                dio.flags.discard("WRITE_THROUGH")
        if work:
            dio.flags.add("COMP_WORK")
    if zeroout and pos & (bs - 1):
        head = pos & (bs - 1)
        _submit(dio, m, pos - head, ZERO[:head], zero=True)
    copied, ret = 0, 0
    while copied < length:
        if dio.error:  # a completion already failed: submit nothing more
            return (copied, 0) if copied else (0, 0)
        n = _pin(dio, pos + copied, length - copied, align)
        if n <= 0:
            ret = EFAULT
            break
        if atomic and n != length:
            ret = EINVAL
            break
        off = pos + copied - dio.iocb.pos
        _submit(dio, m, pos + copied, dio.buf.view[off : off + n], fua=fua, atomic=atomic)
        dio.size += n
        copied += n
    end = pos + copied
    if (zeroout or (op == "write" and end >= dio.inode.size)) and end & (bs - 1):
        _submit(dio, m, end, ZERO[: bs - (end & (bs - 1))], zero=True)
        ret = 0  # the zeroing's result replaces the loop's
    return (copied, 0) if copied else (0, ret)


def _pin(dio: Dio, pos: int, want: int, align: int) -> int:
    """Bytes the next bio carries: up to 256 pages of the (page-aligned) user buffer,
    stopped by a fault, trimmed down to the alignment."""
    off = pos - dio.iocb.pos
    page = dio.env.page_size
    if "BUF_WRITETHROUGH" in dio.flags:
        n = want  # a kernel bvec over the folio goes into one bio whole
    else:
        n = min(dio.buf.pinnable(off, want), BIO_MAX_VECS * page - off % page)
    return n - n % align


def _submit(dio: Dio, m: Iomap, pos: int, data: memoryview, *, zero: bool = False,
            fua: bool = False, atomic: bool = False) -> None:  # fmt: skip
    assert m.addr is not None
    addr = (m.addr + pos - m.offset) // 512 * 512
    op = "write" if zero else ("write" if "WRITE" in dio.flags else "read")
    with dio.lock:
        dio.ref += 1
        index = dio.nbios
        dio.nbios += 1
    bio = Bio(index, op, addr, data, fua=fua and not zero, zero=zero,
              atomic=atomic and not zero, end_io=_bio_done, private=dio)  # fmt: skip
    if dio.env.trace:
        dio.env.trace.bio(dio.req, bio)
    submit = dio.env.submit_io
    if submit is not None:
        submit(dio.inode, bio, pos, dio.env.sched)
    else:
        dio.env.sched.submit(bio)


# ------------------------------------------------------------------------- completion


def _finish_submission(dio: Dio, ret: int, dio_flags: frozenset[str]) -> int:
    env = dio.env
    wait = dio.wait
    if ret == EFAULT and dio.size and "PARTIAL" in dio_flags:
        if "NOWAIT" not in dio.iocb.flags:
            wait = True
        ret = 0
    if ret == ENOTBLK:
        wait, ret = True, 0
    if env.sched.points and not wait:
        # a request that will not wait: a completion may come before the submitter drops
        # its reference (and then the submitter completes it). One that waits sees its
        # bios complete while it waits, after it set its own error: a trace cannot tell
        # the two apart for it (no line between), so only the wait is a race point.
        env.sched.point("before_drop")
    with dio.lock:
        if ret < 0:
            dio.set_error(ret)
        if "WRITE_THROUGH" in dio.flags:
            dio.flags.discard("NEED_SYNC")
        elif "NEED_SYNC" in dio.flags:
            dio.flags.add("COMP_WORK")
        dio.wait = wait
        dio.ref -= 1
        last = dio.ref == 0
        if not last and not wait and env.trace:
            env.trace.queued(dio.req)  # under the lock: before any completion it races
    if last:
        return _complete(dio, "submitter")
    if not wait:
        return EIOCBQUEUED
    env.sched.wait(lambda: dio.woken)
    return _complete(dio, "submitter")


def _bio_done(bio: Bio) -> None:
    """Every bio's end_io: the request it belongs to is its ``private``."""
    _bio_end(bio.private, bio)  # type: ignore[arg-type]


def _bio_end(dio: Dio, bio: Bio) -> None:
    with dio.lock:
        if dio.env.trace:
            dio.env.trace.bio_end(dio.req, bio.index, bio.status)
        if bio.status:
            dio.set_error(bio.status)
        dio.ref -= 1
        last = dio.ref == 0
    if not last:
        return
    if dio.wait:
        dio.woken = True  # the submitter completes
        dio.env.sched.notify()
        return
    if dio.error:
        dio.flags.add("COMP_WORK")
    if dio.env.trace:
        dio.env.trace.cached_pages(dio.req, dio.inode.cached_pages > 0)
    if "WRITE" in dio.flags and "COMP_WORK" not in dio.flags:
        if dio.inode.cached_pages:
            dio.flags.add("COMP_WORK")
        else:
            dio.flags.add("NO_INVALIDATE")
    ret = _complete(dio, "workqueue" if "COMP_WORK" in dio.flags else "inline")
    assert dio.iocb.complete is not None
    dio.iocb.complete(ret)


def _complete(dio: Dio, ctx: str) -> int:
    env, iocb, inode = dio.env, dio.iocb, dio.inode
    df = dio.flags
    if "UNWRITTEN" in df or "COW" in df:
        flags = frozenset(f for f in ("UNWRITTEN", "COW") if f in df)
    else:
        flags = _NONE
    ret = dio.error
    points = env.sched.points and "WRITE" in df  # race points of the completion
    if points:  # another task may read here: before the conversion and the i_size update
        env.sched.point("end_io")
    end_io = env.end_io
    if end_io is not None:  # ->end_io sees dio->flags, IOMAP_DIO_WRITE included
        eflags = flags | _WRITE if "WRITE" in df else flags
        ret = end_io(inode, iocb.pos, dio.size, dio.error, eflags)
    if not ret:
        ret = dio.size
        if "WRITE" not in dio.flags and iocb.pos + ret > dio.i_size:
            ret = dio.i_size - iocb.pos
    if points:  # ... and here: after ->end_io, before the invalidation
        env.sched.point("invalidate")
    # the invalidation comes after ->end_io, or a racing buffered read caches the zeros of
    # an extent ->end_io converts (iomap_dio_complete)
    if (not dio.error and dio.size and "WRITE" in dio.flags and "NO_INVALIDATE" not in dio.flags
            and env.invalidate_after is not None):  # fmt: skip
        env.invalidate_after(inode, iocb.pos, dio.size)
    pos_after = iocb.pos
    if ret > 0:
        pos_after = iocb.pos + ret
        if "NEED_SYNC" in dio.flags:
            if env.trace:
                env.trace.flush(dio.req)
            if env.fsync is not None:
                r = env.fsync(inode, iocb.pos, ret)
                if r < 0:
                    ret = r
        if ret > 0:
            ret += dio.done_before
    dio.ctx = ctx
    if env.trace:
        env.trace.complete(dio.req, ret, pos_after, inode.size, ctx, flags)
    return ret
