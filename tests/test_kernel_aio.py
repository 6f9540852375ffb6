"""Tests of the ctypes Linux native AIO binding against the running kernel.

The I/O tests need real direct I/O: a directory on a filesystem where O_DIRECT opens
succeed *and* a misaligned O_DIRECT write is rejected with EINVAL (tmpfs either refuses
O_DIRECT or, since Linux 6.6, accepts it through the page cache).  Candidates are a
fresh directory under /var/tmp, then under /work; if neither qualifies the tests are
skipped with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import mmap
import os
import shutil
import signal
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dioconf.impl.kernel import aio

BLOCK = 4096
CANDIDATE_PARENTS = ("/var/tmp", "/work")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux native AIO only")


def _aio_unavailable() -> str | None:
    """Why native AIO cannot be used here, or None."""
    if sys.platform != "linux":
        return "not Linux"
    try:
        aio.AioContext(1).close()
    except aio.AioError as e:
        return f"native AIO unavailable: {e}"
    return None


AIO_MISSING = _aio_unavailable()
needs_aio = pytest.mark.skipif(AIO_MISSING is not None, reason=AIO_MISSING or "")


def _fs_type(path: str) -> str:
    """Filesystem type of ``path`` from /proc/self/mountinfo (matched by st_dev)."""
    dev = os.stat(path).st_dev
    want = f"{os.major(dev)}:{os.minor(dev)}"
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            if fields[2] == want and "-" in fields:
                return fields[fields.index("-") + 1]
    return "unknown"


def _probe_direct_io(directory: str) -> str | None:
    """None if ``directory`` does real direct I/O, else why not."""
    path = os.path.join(directory, "probe")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as e:
        return f"O_DIRECT open fails ({e.strerror})"
    try:
        with mmap.mmap(-1, BLOCK) as buf:
            try:
                os.pwrite(fd, buf, 0)
            except OSError as e:
                return f"aligned O_DIRECT write fails ({e.strerror})"
            try:
                os.pwrite(fd, buf, 1)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    return None
                return f"misaligned O_DIRECT write fails with {e.strerror}, not EINVAL"
            return "misaligned O_DIRECT write succeeds (no real direct I/O, e.g. tmpfs)"
    finally:
        os.close(fd)
        os.unlink(path)


@dataclass(frozen=True)
class DioDir:
    """A scratch directory doing real direct I/O."""

    path: str
    fstype: str


@pytest.fixture(scope="module")
def dio_dir() -> Iterator[DioDir]:
    """A fresh directory (under /var/tmp or /work) on a filesystem with real O_DIRECT."""
    if AIO_MISSING:
        pytest.skip(AIO_MISSING)
    reasons = []
    for parent in CANDIDATE_PARENTS:
        try:
            directory = tempfile.mkdtemp(prefix="dioconf-aio-", dir=parent)
        except OSError as e:
            reasons.append(f"{parent}: cannot create a directory ({e.strerror})")
            continue
        why = _probe_direct_io(directory)
        if why is None:
            try:
                yield DioDir(directory, _fs_type(directory))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            return
        reasons.append(f"{parent} ({_fs_type(directory)}): {why}")
        shutil.rmtree(directory, ignore_errors=True)
    pytest.skip("no directory with real O_DIRECT support: " + "; ".join(reasons))


@pytest.fixture
def dio_fd(dio_dir: DioDir) -> Iterator[int]:
    """A fresh empty file opened O_RDWR | O_DIRECT."""
    fd, path = tempfile.mkstemp(dir=dio_dir.path)
    os.close(fd)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    try:
        yield fd
    finally:
        os.close(fd)
        os.unlink(path)


def _pattern(seed: int, size: int = BLOCK) -> bytes:
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(size))


def _filled(data: bytes) -> mmap.mmap:
    buf = mmap.mmap(-1, len(data))
    buf[:] = data
    return buf


def _ring_mapped(ctx_id: int) -> bool:
    """True while the AIO ring of ``ctx_id`` is mapped into this process."""
    prefix = f"{ctx_id:x}-"
    return any(
        line.startswith(prefix) and "[aio]" in line
        for line in Path("/proc/self/maps").read_text().splitlines()
    )


def _context_alive(ctx_id: int) -> bool:
    """Ask the kernel directly whether ``ctx_id`` still names an AIO context."""
    events = (aio.IoEvent * 1)()
    try:
        aio.syscalls().io_getevents(ctx_id, 0, events, aio.KernelTimespec(0, 0))
    except aio.AioError as e:
        assert e.errno == errno.EINVAL
        return False
    return True


# --- no direct I/O needed -------------------------------------------------------------


def test_struct_layout() -> None:
    """The ctypes structs match linux/aio_abi.h on little-endian 64-bit."""
    assert aio.ctypes.sizeof(aio.Iocb) == 64
    assert aio.ctypes.sizeof(aio.IoEvent) == 32
    offsets = {name: getattr(aio.Iocb, name).offset for name, _ in aio.Iocb._fields_}
    assert offsets == {
        "aio_data": 0,
        "aio_key": 12 if sys.byteorder == "big" else 8,
        "aio_rw_flags": 8 if sys.byteorder == "big" else 12,
        "aio_lio_opcode": 16,
        "aio_reqprio": 18,
        "aio_fildes": 20,
        "aio_buf": 24,
        "aio_nbytes": 32,
        "aio_offset": 40,
        "aio_reserved2": 48,
        "aio_flags": 56,
        "aio_resfd": 60,
    }
    assert [aio.IoEvent.res.offset, aio.IoEvent.res2.offset] == [16, 24]
    ev = aio.IoEvent(res=(1 << 64) - errno.EINVAL)  # the kernel's bit pattern for -EINVAL
    assert ev.res == -errno.EINVAL


def test_unsupported_arch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other architectures get a clear ENOSYS error rather than wrong syscall numbers."""
    monkeypatch.setattr(aio.platform, "machine", lambda: "riscv64")
    with pytest.raises(aio.AioError, match="x86_64 and aarch64") as info:
        aio._Syscalls()
    assert info.value.errno == errno.ENOSYS


@needs_aio
def test_destroyed_on_exit_and_second_with_works() -> None:
    """Leaving ``with`` calls io_destroy; a new context works afterwards."""
    with aio.AioContext(8) as ctx:
        ctx_id = ctx.ctx_id
        assert _ring_mapped(ctx_id)
        assert _context_alive(ctx_id)
    assert ctx.closed
    assert not _ring_mapped(ctx_id)
    assert not _context_alive(ctx_id)
    with pytest.raises(ValueError, match="closed"):
        ctx.submit("read", 0, bytearray(BLOCK), 0)
    with pytest.raises(ValueError, match="closed"):
        ctx.reap(0, timeout=0)
    with pytest.raises(ValueError, match="closed"), ctx:
        pass
    ctx.close()  # idempotent
    with aio.AioContext(8) as again:
        assert _context_alive(again.ctx_id)
        assert again.reap(0, timeout=0) == []
    assert not _context_alive(again.ctx_id)


@needs_aio
def test_destroyed_on_exception() -> None:
    """An exception inside ``with`` still destroys the context."""
    with pytest.raises(RuntimeError, match="boom"), aio.AioContext(4) as ctx:
        ctx_id = ctx.ctx_id
        raise RuntimeError("boom")
    assert ctx.closed
    assert not _context_alive(ctx_id)


@needs_aio
def test_readonly_and_bad_arguments_rejected() -> None:
    """Read-only memory is a TypeError; bad op/fd/flags/data are ValueErrors; nothing pinned."""
    with aio.AioContext(4) as ctx:
        with pytest.raises(TypeError, match="read-only"):
            ctx.submit("write", 0, memoryview(b"\0" * BLOCK), 0)  # type: ignore[arg-type]
        ro = mmap.mmap(-1, BLOCK, access=mmap.ACCESS_READ)
        with pytest.raises(TypeError, match="read-only"):
            ctx.submit("write", 0, ro, 0)
        ro.close()
        strided = memoryview(bytearray(2 * BLOCK))[::2]
        with pytest.raises(TypeError, match="contiguous"):
            ctx.submit("read", 0, strided, 0)
        with pytest.raises(TypeError, match="buffer protocol"):
            ctx.submit("write", 0, "text", 0)  # type: ignore[arg-type]
        buf = bytearray(BLOCK)
        with pytest.raises(ValueError, match="op must be"):
            ctx.submit("fsync", 0, buf, 0)
        with pytest.raises(ValueError, match="file descriptor"):
            ctx.submit("read", -1, buf, 0)
        with pytest.raises(ValueError, match="data"):
            ctx.submit("read", 0, buf, 0, data=-1)
        with pytest.raises(ValueError, match="rw_flags"):
            ctx.submit("read", 0, buf, 0, rw_flags=1 << 32)
        with pytest.raises(ValueError, match="block forever"):
            ctx.reap()
        assert ctx.pending() == 0


@needs_aio
def test_io_submit_error_bad_fd() -> None:
    """io_submit's own failure raises AioError with its errno and releases the buffer."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)  # now a closed descriptor
    buf = mmap.mmap(-1, BLOCK)
    with aio.AioContext(4) as ctx:
        with pytest.raises(aio.AioError) as info:
            ctx.submit("read", r, buf, 0)
        assert info.value.errno == errno.EBADF
        assert ctx.pending() == 0
    buf.close()  # no buffer export left behind


@needs_aio
def test_reap_retries_after_eintr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal interrupting io_getevents (EINTR) is retried until the timeout."""
    syscalls = aio.syscalls()
    real = syscalls.io_getevents
    results: list[object] = []

    def counting(*args: object) -> int:
        try:
            n = real(*args)  # type: ignore[arg-type]
        except aio.AioError as e:
            results.append(e.errno)
            raise
        results.append(n)
        return n

    monkeypatch.setattr(syscalls, "io_getevents", counting)
    hits: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: hits.append(signum))
    try:
        with aio.AioContext(4) as ctx:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            start = time.monotonic()
            assert ctx.reap(min_nr=1, timeout=0.4) == []
            elapsed = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits == [signal.SIGALRM]
    assert results[0] == errno.EINTR
    assert results[-1] == 0
    assert elapsed >= 0.35


# --- real direct I/O ------------------------------------------------------------------


def test_filesystem_reported(dio_dir: DioDir) -> None:
    """Records which filesystem the direct-I/O tests ran on (see ``-rA`` output)."""
    print(f"direct-I/O tests use {dio_dir.path} on {dio_dir.fstype}")
    assert dio_dir.fstype not in ("tmpfs", "ramfs")


def test_write_then_read_back(dio_fd: int) -> None:
    """An O_DIRECT write of two blocks from an mmap reads back equal (via memoryviews)."""
    data = _pattern(1, 2 * BLOCK)
    src = _filled(data)
    dst = mmap.mmap(-1, 2 * BLOCK)
    with aio.AioContext() as ctx:
        ctx.submit("write", dio_fd, src, 0, data=11)
        assert ctx.pending() == 1
        assert ctx.reap() == [(11, 2 * BLOCK)]
        view = memoryview(dst)
        ctx.submit("read", dio_fd, view[BLOCK:], BLOCK, data=22)
        ctx.submit("read", dio_fd, view[:BLOCK], 0, data=21)
        del view
        events = ctx.reap(min_nr=2)
        assert sorted(events) == [(21, BLOCK), (22, BLOCK)]
        assert ctx.pending() == 0
    assert dst[:] == data
    assert os.fstat(dio_fd).st_size == 2 * BLOCK
    src.close()
    dst.close()


def test_submit_many_in_flight(dio_fd: int) -> None:
    """Several iocbs in one io_submit; each event returns its own 64-bit data cookie."""
    n = 8
    cookies = [(1 << 63) + 1000 * i + 7 for i in range(n)]  # exercises the full u64
    srcs = [_filled(_pattern(i)) for i in range(n)]
    with aio.AioContext(32) as ctx:
        ops = [("write", dio_fd, srcs[i], i * BLOCK, 0, cookies[i]) for i in range(n)]
        assert ctx.submit_many(ops) == n
        assert ctx.pending() == n
        events: list[tuple[int, int]] = []
        while len(events) < n:
            events += ctx.reap(min_nr=1)
        assert sorted(events) == sorted((c, BLOCK) for c in cookies)

        dst = mmap.mmap(-1, n * BLOCK)
        view = memoryview(dst)
        reads = [
            ("read", dio_fd, view[i * BLOCK : (i + 1) * BLOCK], i * BLOCK, 0, i)
            for i in reversed(range(n))
        ]
        del view
        assert ctx.submit_many(reads) == n
        del reads
        events = ctx.reap(min_nr=n, max_nr=n)
        assert sorted(events) == [(i, BLOCK) for i in range(n)]
        assert ctx.submit_many([]) == 0
    for i in range(n):
        assert dst[i * BLOCK : (i + 1) * BLOCK] == _pattern(i)
        srcs[i].close()
    dst.close()


def test_submit_many_partial(dio_fd: int) -> None:
    """io_submit stops at the first bad iocb: the accepted prefix stays, the rest is released."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    good, bad = _filled(_pattern(3)), mmap.mmap(-1, BLOCK)
    with aio.AioContext(8) as ctx:
        accepted = ctx.submit_many(
            [
                ("write", dio_fd, good, 0, 0, 1),
                ("write", r, bad, 0, 0, 2),
                ("write", dio_fd, good, BLOCK, 0, 3),
            ]
        )
        assert accepted == 1
        assert ctx.pending() == 1
        bad.close()  # not pinned: it was never accepted
        with pytest.raises(aio.AioError) as info:
            ctx.submit_many([("write", r, good, 0, 0, 4)])
        assert info.value.errno == errno.EBADF
        assert ctx.reap() == [(1, BLOCK)]
    good.close()


def test_read_past_eof_returns_zero(dio_fd: int) -> None:
    """A direct read wholly beyond EOF completes with res == 0."""
    src, dst = _filled(_pattern(5)), mmap.mmap(-1, BLOCK)
    with aio.AioContext() as ctx:
        ctx.submit("write", dio_fd, src, 0)
        assert ctx.reap() == [(0, BLOCK)]
        ctx.submit("read", dio_fd, dst, 4 * BLOCK, data=99)
        assert ctx.reap() == [(99, 0)]
    src.close()
    dst.close()


def test_misaligned_offset_is_einval(dio_fd: int) -> None:
    """A misaligned O_DIRECT offset fails with EINVAL, from io_submit or in the event."""
    buf = _filled(_pattern(6))
    with aio.AioContext() as ctx:
        ctx.submit("write", dio_fd, buf, 0)  # inside EOF, so the read is not short-cut to 0
        assert ctx.reap() == [(0, BLOCK)]
        for op in ("write", "read"):
            try:
                ctx.submit(op, dio_fd, buf, 1, data=5)
            except aio.AioError as e:
                assert e.errno == errno.EINVAL
                assert ctx.pending() == 0
            else:
                assert ctx.reap() == [(5, -errno.EINVAL)]
    buf.close()


@pytest.mark.skipif(not hasattr(os, "RWF_DSYNC"), reason="os.RWF_DSYNC missing")
def test_rwf_dsync_and_sync_accepted(dio_fd: int) -> None:
    """RWF_DSYNC and RWF_SYNC writes are accepted and complete in full."""
    buf = _filled(_pattern(7))
    with aio.AioContext() as ctx:
        ctx.submit("write", dio_fd, buf, 0, rw_flags=os.RWF_DSYNC, data=1)
        ctx.submit("write", dio_fd, buf, BLOCK, rw_flags=os.RWF_SYNC, data=2)
        assert sorted(ctx.reap(min_nr=2)) == [(1, BLOCK), (2, BLOCK)]
    buf.close()


def test_unknown_rw_flags_fail_in_io_submit(dio_fd: int) -> None:
    """Flags the kernel does not know make io_submit fail (EOPNOTSUPP); nothing stays pinned."""
    buf = mmap.mmap(-1, BLOCK)
    with aio.AioContext() as ctx:
        with pytest.raises(aio.AioError) as info:
            ctx.submit("write", dio_fd, buf, 0, rw_flags=0x8000_0000)
        assert info.value.errno == errno.EOPNOTSUPP
        assert ctx.pending() == 0
        buf.close()


def test_buffers_pinned_until_reaped(dio_fd: int) -> None:
    """The context keeps buffers alive until their event is reaped, then lets go."""
    buf = _filled(_pattern(8))
    refs_before = sys.getrefcount(buf)
    view = memoryview(buf)
    alive = weakref.ref(view)
    with aio.AioContext() as ctx:
        ctx.submit("write", dio_fd, view, 0, data=1)
        del view
        gc.collect()
        assert alive() is not None  # held by the context
        with pytest.raises(BufferError):
            buf.close()  # still exported to the kernel's iocb
        assert ctx.reap() == [(1, BLOCK)]
        gc.collect()
        assert alive() is None
        assert sys.getrefcount(buf) == refs_before
    buf.close()


def test_destroy_with_io_in_flight_releases_buffers(dio_fd: int) -> None:
    """Leaving ``with`` without reaping: io_destroy waits, then the buffers are released."""
    bufs = [_filled(_pattern(i)) for i in range(4)]
    with aio.AioContext() as ctx:
        ctx_id = ctx.ctx_id
        ops = [("write", dio_fd, b, i * BLOCK, 0, i) for i, b in enumerate(bufs)]
        assert ctx.submit_many(ops) == 4
        del ops
        assert ctx.pending() == 4
    assert ctx.pending() == 0
    assert not _context_alive(ctx_id)
    for b in bufs:
        b.close()
    assert os.fstat(dio_fd).st_size == 4 * BLOCK


def test_submit_many_bad_tuple_releases_earlier_buffers(dio_fd: int) -> None:
    """A bad tuple in the middle submits nothing and pins nothing."""
    first = mmap.mmap(-1, BLOCK)
    with aio.AioContext() as ctx:
        with pytest.raises(ValueError, match="op must be"):
            ctx.submit_many([("read", dio_fd, first, 0, 0, 1), ("trim", dio_fd, first, 0, 0, 2)])
        assert ctx.pending() == 0
        first.close()  # no export left


def test_zero_length_and_bytearray(dio_fd: int) -> None:
    """An empty buffer is a zero-length request (res 0); a bytearray is accepted too."""
    with aio.AioContext() as ctx:
        ctx.submit("read", dio_fd, bytearray(), 0, data=1)
        assert ctx.reap() == [(1, 0)]
        buf = bytearray(BLOCK)  # not page-aligned: O_DIRECT may refuse it (EINVAL)
        ctx.submit("write", dio_fd, buf, 0, data=2)
        ((data, res),) = ctx.reap()
        assert data == 2
        assert res in (BLOCK, -errno.EINVAL)
