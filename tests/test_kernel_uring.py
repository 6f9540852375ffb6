"""io_uring: the ctypes binding (impl/kernel/uring.py) against the running kernel, and the
suite's io_uring batches (operation kind ``uring``) in kernel runs.

The I/O tests run on a loop-mounted xfs (real O_DIRECT, and a filesystem whose NOWAIT
answers are known); they need root, loop devices and mkfs.xfs, and io_uring not disabled
(sysctl kernel.io_uring_disabled, or a seccomp filter): elsewhere they are skipped with
the reason. The kernel runs also need tracefs (every request is traced and replayed).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import json
import mmap
import os
import platform
import sys
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dioconf.conformance.backend import Capabilities
from dioconf.conformance.file_ops_gen import Op, draw_ops, renumber
from dioconf.conformance.findings import FINDINGS
from dioconf.impl.kernel import uring, uring_abi

from tests.kernel_support import leftovers, unavailable

BLOCK = 4096

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="io_uring is Linux only")


def _missing() -> str | None:
    """Why the I/O tests cannot run here, or None."""
    why = unavailable("xfs")
    if why is not None:
        return f"xfs: {why}"
    why = uring.unavailable()
    return None if why is None else f"io_uring unavailable: {why}"


MISSING = _missing() if sys.platform == "linux" else "not Linux"
needs_io = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


@pytest.fixture(scope="module")
def mnt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh loop-mounted xfs for this module."""
    if MISSING:
        pytest.skip(MISSING)
    from dioconf.impl.kernel.fixture import kernel_fs

    with kernel_fs("xfs", workdir=tmp_path_factory.mktemp("uring")) as m:
        yield m.mnt


@pytest.fixture
def dio_fd(mnt: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    """A fresh empty file opened O_RDWR | O_DIRECT."""
    path = mnt / request.node.name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)
        path.unlink()


def _pattern(seed: int, size: int = BLOCK) -> bytes:
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(size))


def _filled(data: bytes) -> mmap.mmap:
    buf = mmap.mmap(-1, len(data))
    buf[:] = data
    return buf


def _buffered(fd: int) -> bytes:
    """The whole file behind ``fd``, read through the page cache."""
    with open(f"/proc/self/fd/{fd}", "rb") as f:
        return f.read()


def _reap_all(ctx: uring.UringContext, n: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while len(out) < n:
        out += ctx.reap(1)
    return sorted(out)


# --- no kernel needed ---------------------------------------------------------------------


def test_struct_layout_is_the_uapi_header_s() -> None:
    """include/uapi/linux/io_uring.h: the 64-byte SQE, 16-byte CQE, 120-byte params."""
    abi, sizeof = uring_abi, ctypes.sizeof
    sqe = {name: getattr(abi.Sqe, name).offset for name, _ in abi.Sqe._fields_}
    assert sqe == {"opcode": 0, "flags": 1, "ioprio": 2, "fd": 4, "off": 8, "addr": 16,
                   "len": 24, "rw_flags": 28, "user_data": 32, "buf_index": 40,
                   "personality": 42, "splice_fd_in": 44, "addr3": 48, "pad2": 56}  # fmt: skip
    assert sizeof(abi.Sqe) == 64 and sizeof(abi.Cqe) == 16 and sizeof(abi.Params) == 120
    assert [abi.Cqe.user_data.offset, abi.Cqe.res.offset, abi.Cqe.flags.offset] == [0, 8, 12]
    assert abi.Cqe(res=-errno.EBADF).res == -errno.EBADF  # signed
    assert [abi.Params.sq_off.offset, abi.Params.cq_off.offset] == [40, 80]
    assert abi.SqringOffsets.array.offset == 24 and abi.CqringOffsets.cqes.offset == 20
    assert sizeof(abi.GeteventsArg) == 24 and abi.GeteventsArg.ts.offset == 16
    assert (abi.IORING_OP_READ, abi.IORING_OP_WRITE) == (22, 23)


def test_unsupported_arch_is_enosys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uring_abi.platform, "machine", lambda: "riscv64")
    with pytest.raises(uring.UringError, match="x86_64 and aarch64") as info:
        uring_abi._Syscalls()
    assert info.value.errno == errno.ENOSYS


def test_disabled_by_sysctl_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:  # fmt: skip
    """kernel.io_uring_disabled = 2: refused before any system call, saying why; = 1 and
    the kernel refusing: the message names the group switch."""
    switch = tmp_path / "io_uring_disabled"
    monkeypatch.setattr(uring_abi, "_DISABLED", switch)
    switch.write_text("2\n")
    with pytest.raises(uring.UringError, match="io_uring_disabled = 2") as info:
        uring.UringContext(4)
    assert info.value.errno == errno.EPERM and isinstance(info.value, OSError)
    assert "io_uring_disabled = 2" in (uring.unavailable() or "")
    switch.write_text("1\n")

    def refuse(*args: object) -> int:
        raise uring.UringError(errno.EPERM, "io_uring_setup: Operation not permitted")

    monkeypatch.setattr(uring_abi.syscalls(), "setup", refuse)
    with pytest.raises(uring.UringError, match="io_uring_group") as info:
        uring.UringContext(4)
    assert info.value.errno == errno.EPERM


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64 machine code")
def test_the_fence_stub_mechanism_runs_machine_code() -> None:
    """aarch64's acquire fence is a stub in an executable page; the same mechanism with
    x86_64's lfence; ret runs here."""
    fence = uring_abi.syscalls()._stub(bytes.fromhex("0faee8c3"))
    fence()
    assert uring_abi._FENCE_CODE["aarch64"] == bytes.fromhex("bf3903d5c0035fd6")


def test_uring_ops_round_trip_and_say_what_they_are() -> None:
    op = Op("uring", batch=(Op("pwrite", "f0", 4096, 8192, 3, frozenset({"NOWAIT"})),
                            Op("pread", "f1", 0, 512)))  # fmt: skip
    doc = json.loads(json.dumps(op.to_json()))
    assert doc["kind"] == "uring" and Op.from_json(doc) == op
    assert str(op).startswith("in flight together (io_uring): O_DIRECT write #3 f0")
    assert str(Op("aio", batch=op.batch)).startswith("in flight together (Linux AIO)")
    assert renumber([op])[0].batch[0].wid == 1


def test_uring_batches_are_drawn_only_where_io_uring_works() -> None:
    caps = Capabilities(block_size=4096, logical_block_size=512, aio=True)
    assert not any(op.kind == "uring" for op in draw_ops(5, 2000, caps))
    ops = draw_ops(5, 2000, Capabilities(block_size=4096, logical_block_size=512, aio=True,
                                         uring=True))  # fmt: skip
    kinds = Counter(op.kind for op in ops)
    assert kinds["uring"] > 20 and kinds["aio"] > 20  # (the same weight)
    for op in ops:
        if op.kind == "uring":
            assert 1 <= len(op.batch) <= 4
            assert {b.kind for b in op.batch} <= {"pwrite", "pread"}


# --- the binding, on xfs --------------------------------------------------------------------


@needs_io
def test_writes_and_reads_land_and_read_back(dio_fd: int, mnt: Path) -> None:
    data = _pattern(1, 2 * BLOCK)
    src, dst = _filled(data), mmap.mmap(-1, 2 * BLOCK)
    with uring.UringContext(8) as ctx:
        assert ctx.submit_many([("write", dio_fd, src, 0, 0, 11)]) == 1
        assert ctx.reap() == [(11, 2 * BLOCK)]
        view = memoryview(dst)
        ctx.submit_many([("read", dio_fd, view[BLOCK:], BLOCK, 0, 22),
                         ("read", dio_fd, view[:BLOCK], 0, 0, 21)])  # fmt: skip
        view.release()
        assert _reap_all(ctx, 2) == [(21, BLOCK), (22, BLOCK)]
        assert ctx.pending() == 0
    assert dst[:] == data
    assert os.fstat(dio_fd).st_size == 2 * BLOCK
    assert _buffered(dio_fd) == data  # a second opinion
    src.close()
    dst.close()


@needs_io
def test_several_in_flight_with_one_submission(
        dio_fd: int, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Eight writes go to the kernel in one io_uring_enter; each completion carries its
    own 64-bit data back; then eight reads, in reverse order, the same way."""
    n = 8
    cookies = [(1 << 63) + 1000 * i + 7 for i in range(n)]
    srcs = [_filled(_pattern(i)) for i in range(n)]
    sys_ = uring_abi.syscalls()
    real = sys_.enter
    submits: list[int] = []

    def counting(fd: int, to_submit: int, *rest: object) -> int:
        if to_submit:
            submits.append(to_submit)
        return real(fd, to_submit, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(sys_, "enter", counting)
    with uring.UringContext(16) as ctx:
        ops = [("write", dio_fd, srcs[i], i * BLOCK, 0, cookies[i]) for i in range(n)]
        assert ctx.submit_many(ops) == n and ctx.pending() == n
        assert _reap_all(ctx, n) == sorted((c, BLOCK) for c in cookies)
        dst = mmap.mmap(-1, n * BLOCK)
        view = memoryview(dst)
        reads = [("read", dio_fd, view[i * BLOCK : (i + 1) * BLOCK], i * BLOCK, 0, i)
                 for i in reversed(range(n))]  # fmt: skip
        view.release()
        assert ctx.submit_many(reads) == n
        del reads
        assert _reap_all(ctx, n) == [(i, BLOCK) for i in range(n)]
        assert ctx.pending() == 0
        assert ctx.submit_many([]) == 0
    assert submits == [n, n]
    for i in range(n):
        assert dst[i * BLOCK : (i + 1) * BLOCK] == _pattern(i)
        srcs[i].close()
    dst.close()


@needs_io
def test_nowait_passes_through(dio_fd: int) -> None:
    """RWF_NOWAIT reaches the kernel: xfs cannot allocate without waiting, so a NOWAIT
    write into a hole is -EAGAIN (io_uring does not retry it), the same write without
    the flag lands (after io_uring's own NOWAIT attempt, retried by an io-wq worker)."""
    os.ftruncate(dio_fd, 16 * BLOCK)  # a hole inside EOF: no size change either way
    buf = _filled(_pattern(4))
    with uring.UringContext(4) as ctx:
        ctx.submit("write", dio_fd, buf, 0, rw_flags=os.RWF_NOWAIT, data=1)
        assert ctx.reap() == [(1, -errno.EAGAIN)]
        ctx.submit("write", dio_fd, buf, 0, data=2)
        assert ctx.reap() == [(2, BLOCK)]
    buf.close()


@needs_io
def test_a_bad_descriptor_completes_with_ebadf(dio_fd: int) -> None:
    """A request on a closed descriptor is taken and completes with -EBADF; the requests
    around it in the same submission go on."""
    good, bad = _filled(_pattern(3)), mmap.mmap(-1, BLOCK)
    with uring.UringContext(8) as ctx:
        r, w = os.pipe()  # (after the ring's descriptor: nothing takes their numbers)
        os.close(r)
        os.close(w)
        assert ctx.submit_many([("write", dio_fd, good, 0, 0, 1), ("write", r, bad, 0, 0, 2),
                                ("write", dio_fd, good, BLOCK, 0, 3)]) == 3  # fmt: skip
        assert _reap_all(ctx, 3) == [(1, BLOCK), (2, -errno.EBADF), (3, BLOCK)]
        bad.close()  # released with its completion
        ctx.submit("write", dio_fd, good, 0, rw_flags=0x8000_0000, data=4)
        assert ctx.reap() == [(4, -errno.EOPNOTSUPP)]  # an unknown RWF_ flag
    good.close()


@needs_io
def test_close_waits_for_requests_in_flight(dio_fd: int, mnt: Path) -> None:
    """Leaving ``with`` with writes in flight (into holes: io-wq retries them): close
    waits for them all, then releases the buffers; their data has landed."""
    size = 64 * 1024
    bufs = [_filled(_pattern(i, size)) for i in range(6)]
    with uring.UringContext(8) as ctx:
        ops = [("write", dio_fd, b, i * 2 * size, 0, i) for i, b in enumerate(bufs)]
        assert ctx.submit_many(ops) == 6
        del ops
        assert ctx.pending() == 6
    assert ctx.closed and ctx.pending() == 0 and ctx.fd == -1
    for b in bufs:
        b.close()  # no export left: no BufferError
    data = _buffered(dio_fd)
    for i in range(6):
        assert data[i * 2 * size : (i * 2 + 1) * size] == _pattern(i, size)
    with pytest.raises(ValueError, match="closed"):
        ctx.submit("read", dio_fd, bytearray(BLOCK), 0)
    with pytest.raises(ValueError, match="closed"):
        ctx.reap(0, timeout=0)
    ctx.close()  # idempotent


@needs_io
def test_buffers_pinned_until_reaped(dio_fd: int) -> None:
    buf = _filled(_pattern(8))
    view = memoryview(buf)
    alive = weakref.ref(view)
    with uring.UringContext(4) as ctx:
        ctx.submit("write", dio_fd, view, 0, data=1)
        del view
        gc.collect()
        assert alive() is not None  # held by the context
        with pytest.raises(BufferError):
            buf.close()
        assert ctx.reap() == [(1, BLOCK)]
        gc.collect()
        assert alive() is None
    buf.close()


@needs_io
def test_a_full_ring_takes_a_prefix_and_pins_nothing_else(dio_fd: int) -> None:
    with uring.UringContext(2) as ctx:
        assert ctx.entries == 2
        bufs = [_filled(_pattern(i)) for i in range(3)]
        assert ctx.submit_many([("write", dio_fd, b, i * BLOCK, 0, i)
                                for i, b in enumerate(bufs)]) == 2  # fmt: skip
        bufs[2].close()  # not taken: not pinned
        with pytest.raises(uring.UringError) as info:
            ctx.submit("write", dio_fd, bufs[0], 0)
        assert info.value.errno == errno.EAGAIN and ctx.pending() == 2
        assert _reap_all(ctx, 2) == [(0, BLOCK), (1, BLOCK)]
    for b in bufs[:2]:
        b.close()


@needs_io
def test_bad_arguments_pin_nothing(dio_fd: int) -> None:
    with uring.UringContext(4) as ctx:
        first = mmap.mmap(-1, BLOCK)
        with pytest.raises(ValueError, match="op must be"):
            ctx.submit_many([("read", dio_fd, first, 0, 0, 1), ("trim", dio_fd, first, 0, 0, 2)])
        with pytest.raises(TypeError, match="read-only"):
            ctx.submit("write", dio_fd, memoryview(b"\0" * BLOCK), 0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="offset"):
            ctx.submit("read", dio_fd, first, -1)
        with pytest.raises(ValueError, match="block forever"):
            ctx.reap()
        assert ctx.pending() == 0
        first.close()  # no export left
        assert ctx.reap(0, timeout=0) == []
        assert ctx.reap(1, timeout=0.01) == []  # (IORING_ENTER_EXT_ARG's timeout)


@needs_io
def test_a_submission_cut_short_is_taken_back(dio_fd: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """An exception after the SQEs were published and before io_uring_enter (a signal's
    KeyboardInterrupt): nothing of them is submitted later, nothing stays pinned, and
    the ring goes on working."""
    sys_ = uring_abi.syscalls()
    real = sys_.enter
    calls = [0]

    def interrupted(fd: int, to_submit: int, *rest: object) -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise KeyboardInterrupt
        return real(fd, to_submit, *rest)  # type: ignore[arg-type]

    stale, fresh = _filled(_pattern(1)), _filled(_pattern(2))
    with uring.UringContext(4) as ctx:
        monkeypatch.setattr(sys_, "enter", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ctx.submit("write", dio_fd, stale, 0, data=1)
        assert ctx.pending() == 0
        stale.close()  # released
        ctx.submit("write", dio_fd, fresh, BLOCK, data=2)
        assert ctx.reap() == [(2, BLOCK)]
    assert os.fstat(dio_fd).st_size == 2 * BLOCK
    assert _buffered(dio_fd)[:BLOCK] == bytes(BLOCK)  # the stale write never ran
    fresh.close()


# --- kernel runs with io_uring batches ------------------------------------------------------


def _needs_run(fs: str) -> pytest.MarkDecorator:
    why = unavailable(fs) or uring.unavailable()
    return pytest.mark.skipif(why is not None, reason=f"{fs}: {why}")


ALLOW = frozenset(FINDINGS)


@pytest.mark.parametrize("fs", [pytest.param(f, marks=_needs_run(f.partition(":")[0]))
                                for f in ("xfs", "ext4", "btrfs:nocow")])  # fmt: skip
def test_a_fast_run_with_uring_batches_is_clean_and_traces_clean(
        fs: str, tmp_path: Path, own_tmp: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``dioconf run --kernel FS --fast``: with io_uring working, uring batches are drawn
    and performed through io_uring; with the known findings allowed the run passes, and
    every request traced (io_uring's NOWAIT attempts and io-wq retries among them)
    replays through the model without a divergence."""
    from dioconf.conformance.kernel_run import parse_targets, run_kernel
    from dioconf.impl.kernel.aio import AioContext

    used: Counter[str] = Counter()  # submissions through each interface

    def counting(cls: type[Any], name: str) -> None:
        real = cls.submit_many

        def submit_many(self: Any, ops: list[Any]) -> int:
            used[name] += 1
            return real(self, ops)

        monkeypatch.setattr(cls, "submit_many", submit_many)

    counting(uring.UringContext, "uring")
    counting(AioContext, "aio")
    report = run_kernel(parse_targets(fs), profile="ci", seed=0, fast=True, allow=ALLOW,
                        out_dir=tmp_path / "out", examples=3, ops=300)  # fmt: skip
    (result,) = report.results
    assert report.failures == [] and report.divergences == [], report.divergences
    assert report.ok
    assert used["uring"] >= 10 and used["aio"] >= 10, used
    tc = result.trace
    assert tc.requests > 100 and tc.problems == [] and tc.lost == 0
    assert leftovers(own_tmp) == []


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_an_ops_json_with_a_uring_batch_replays_on_the_kernel(tmp_path: Path,
                                                              own_tmp: Path) -> None:  # fmt: skip
    """An ops.json (as a failure writes it) holding a uring batch: read back, performed
    on a fresh xfs through io_uring, checked clean."""
    from dioconf.conformance.kernel_run import replay_ops

    ops = [Op("pwrite", "f0", 0, 8192, 1),
           Op("uring", batch=(Op("pwrite", "f1", 0, 65536, 2), Op("pread", "f0", 0, 8192),
                              Op("pwrite", "f0", 1 << 20, 4096, 3, frozenset({"NOWAIT"})))),
           Op("pread", "f1", 4096, 4096)]  # fmt: skip
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"target": {"fs": "xfs", "geometry": "4k", "sector_size": 512,
                                           "write_cache": None},
                                "ops": [op.to_json() for op in ops]}))  # fmt: skip
    target, (failure, run) = replay_ops(path, None, frozenset())
    assert target.fs == "xfs" and failure is None
    assert "in flight together (io_uring)" in run.story[1]
    assert run.story[1].split(" -> ")[1].startswith("65536, 8192, ")
    assert leftovers(own_tmp) == []


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
def test_a_generated_reproducer_performs_a_uring_batch(tmp_path: Path, own_tmp: Path) -> None:
    """The standalone reproducer (standard library only) performs a uring batch's
    requests one after the other, and checks what they left."""
    import subprocess

    from dioconf.conformance.file_check import Failure
    from dioconf.conformance.kernel_run import Target
    from dioconf.conformance.repro_script import write_script

    ops = [Op("uring", batch=(Op("pwrite", "f1", 0, 65536, 1), Op("pread", "f0", 0, 4096)))]
    failure = Failure("unexplained-size", 0, "i_size", {"kind": "size", "file": "f1",
                                                        "sizes": [65536]})  # fmt: skip
    script = write_script(tmp_path / "repro.py", Target("xfs", "4k"), ops, failure,
                          ["   0: " + str(ops[0]) + " -> 65536, 0"])  # fmt: skip
    proc = subprocess.run([sys.executable, "-I", str(script), "--loop-image"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].endswith("->  [65536, 0]") and lines[-1].startswith("OK: i_size is 65536")
    assert leftovers(own_tmp) == []
