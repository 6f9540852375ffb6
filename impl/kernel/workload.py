"""What a recorded workload can do, with syscall-level checks.

Every O_DIRECT call goes through ``Workload``: the buffer is page-aligned anonymous
memory, the result (bytes or errno) is logged, compared with what the scenario expects,
and the data written is kept in a shadow so that the file contents, i_size and FIEMAP
extents can be checked afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_mod
import fcntl
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from attrs import define, field

from .cleanup import critical, releasing
from .fixture import MountedFs

FS_IOC_FIEMAP = 0xC020660B
FICLONE = 0x40049409
FIEMAP_EXTENT_UNWRITTEN = 0x800
FIEMAP_EXTENT_SHARED = 0x2000
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_NOCOW_FL = 0x00800000
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


Expect = int | str | tuple[int | str, ...] | None  # a result, or the results allowed
# (op, file, pos, length, flags, expected result), or with a read's ``touched`` after it
AioOp = (
    tuple[str, str, int, int, tuple[str, ...], Expect]
    | tuple[str, str, int, int, tuple[str, ...], Expect, int]
)


@define
class Check:
    what: str
    ok: bool
    detail: str = ""


@define
class Call:
    """One syscall the workload made."""

    op: str
    file: str
    pos: int
    len: int
    flags: list[str]
    result: int | str  # bytes, or an errno name
    expect: int | str | tuple[int | str, ...] | None = None


def _fill(pos: int, length: int, seed: int) -> bytes:
    """Recognisable data: each 8-byte word holds its file offset xor a seed."""
    start = pos - pos % 8
    words = range(start, pos + length + 8, 8)
    raw = b"".join(struct.pack("<Q", (w ^ seed) & (2**64 - 1)) for w in words)
    return raw[pos - start : pos - start + length]


@define
class Workload:
    m: MountedFs
    calls: list[Call] = field(factory=list)
    checks: list[Check] = field(factory=list)
    inos: dict[str, int] = field(factory=dict)
    shadow: dict[str, bytearray] = field(factory=dict)  # expected file contents
    fds: dict[str, int] = field(factory=dict)
    scratch: set[int] = field(factory=set)  # short-lived descriptors (_scratch_fd)
    seed: int = 0x5EED
    marker: Callable[[str], None] | None = None  # writes a line into the recording
    # touch every page of a read buffer first: a no-fault iterator (btrfs) would
    # otherwise see non-resident pages and fault
    prefault: bool = True
    # btrfs: create files NOCOW (no data checksums); on Linux 6.18 a direct write to a
    # checksummed file falls back to buffered I/O and never reaches iomap
    nocow: bool = True

    # -- files ----------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.m.mnt / name

    def open(self, name: str) -> int:
        """An O_DIRECT descriptor for ``name`` (created empty if missing)."""
        if name in self.fds:
            return self.fds[name]
        with critical():  # an interrupt cannot leave a descriptor unknown to close_all
            fd = os.open(self.path(name), os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
            self.fds[name] = fd
        if self.m.fs == "btrfs" and self.nocow and os.fstat(fd).st_size == 0:
            set_nocow(fd)
        self.fds[name] = fd
        self.inos[name] = os.fstat(fd).st_ino
        self.shadow.setdefault(name, bytearray(os.fstat(fd).st_size))
        return fd

    @releasing
    def close_all(self) -> None:
        """Close every descriptor (idempotent, also after an interrupted call)."""
        with critical():
            while self.fds:
                os.close(self.fds.popitem()[1])
            while self.scratch:
                os.close(self.scratch.pop())

    @contextlib.contextmanager
    @releasing
    def _scratch_fd(self, name: str, flags: int) -> Iterator[int]:
        """A descriptor for the block, known to ``close_all`` from the moment it exists:
        an interrupt can leave none open to keep the mount busy."""
        with critical():
            fd = os.open(self.path(name), flags)
            self.scratch.add(fd)
        try:
            yield fd
        finally:
            with critical():
                if fd in self.scratch:
                    self.scratch.remove(fd)
                    os.close(fd)

    def buffered_write(self, name: str, pos: int, length: int, *, sync: bool = True) -> None:
        """Set up contents through the page cache, then write them back (fsync), or
        leave them dirty (``sync=False``)."""
        self.open(name)
        data = _fill(pos, length, self.seed)
        with self._scratch_fd(name, os.O_RDWR) as fd:
            os.pwrite(fd, data, pos)
            if sync:
                os.fsync(fd)
        self._shadow_write(name, pos, data)

    def fsync(self, name: str, *, expect: Expect = None) -> int | str:
        """fsync through a new descriptor: a writeback error no one has seen yet is
        reported to it (errseq), once."""
        with self._scratch_fd(name, os.O_RDWR) as fd:
            try:
                os.fsync(fd)
                res: int | str = 0
            except OSError as exc:
                res = errno_mod.errorcode[exc.errno]
        self._log("fsync", name, 0, 0, (), res, expect)
        return res

    def truncate(self, name: str, size: int) -> None:
        self.open(name)
        os.truncate(self.path(name), size)
        sh = self.shadow[name]
        del sh[size:]
        sh.extend(bytes(size - len(sh)))

    def fallocate(self, name: str, pos: int, length: int, *, keep_size: bool = False) -> None:
        fd = self.open(name)
        if keep_size:
            fallocate(fd, FALLOC_FL_KEEP_SIZE, pos, length)
        else:
            os.posix_fallocate(fd, pos, length)
        if not keep_size and pos + length > len(self.shadow[name]):
            self.shadow[name].extend(bytes(pos + length - len(self.shadow[name])))

    def reflink(self, src: str, dst: str) -> None:
        """dst becomes a clone of src sharing its extents (FICLONE)."""
        s, d = self.open(src), self.open(dst)
        fcntl.ioctl(d, FICLONE, s)
        self.shadow[dst] = bytearray(self.shadow[src])

    def drop_caches(self, name: str) -> None:
        """Write back and drop the file's page cache (POSIX_FADV_DONTNEED)."""
        with self._scratch_fd(name, os.O_RDONLY) as fd:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

    # -- O_DIRECT I/O ------------------------------------------------------------------

    def pwrite(
        self, name: str, pos: int, length: int, *, flags: tuple[str, ...] = (),
        expect: Expect = None, bad_page: int | None = None, touched: int | None = None,
    ) -> int | str:  # fmt: skip
        """``bad_page``: the buffer's page at that offset is made inaccessible
        (PROT_NONE), so pinning it fails with -EFAULT. ``touched``: only the buffer's
        first ``touched`` bytes (a multiple of the page size) are written; its later
        pages are never touched (not resident: a no-fault iterator cannot pin them), so
        they hold, and write, zeros."""
        fd = self.open(name)
        self._mark("pwrite", name, pos, length, flags)
        buf = _buffer(length)
        data = _fill(pos, length, self.seed)
        if touched is not None:
            _check_touched(touched, length)
            data = data[:touched] + bytes(length - touched)
        n = length if touched is None else touched
        buf[:n] = data[:n]
        if bad_page is not None:
            protect(buf, bad_page)
        try:
            res: int | str = os.pwritev(fd, [memoryview(buf)[:length]], pos, rwf(flags))
        except OSError as exc:
            res = errno_mod.errorcode[exc.errno]
        finally:
            buf.close()
        if isinstance(res, int) and res > 0:
            self._shadow_write(name, pos, data[:res])
        self._log("pwrite", name, pos, length, flags, res, expect)
        return res

    def pread(
        self, name: str, pos: int, length: int, *, flags: tuple[str, ...] = (),
        expect: Expect = None, touched: int | None = None, buffer_from: str | None = None,
    ) -> int | str:  # fmt: skip
        """``touched``: only the buffer's pages before that offset are faulted in (by
        default all of them, or none when ``prefault`` is off). ``buffer_from``: the
        buffer is a private mapping of that file, dropped from the page cache first, so
        pinning each page reads it from the disk (the task sleeps between bios)."""
        fd = self.open(name)
        if buffer_from is not None:
            self.drop_caches(buffer_from)
            touched = 0
        self._mark("pread", name, pos, length, flags)
        buf = _buffer(length) if buffer_from is None else self._file_buffer(buffer_from, length)
        _touch(buf, length, touched if touched is not None or self.prefault else 0)
        try:
            res: int | str = os.preadv(fd, [memoryview(buf)[:length]], pos, rwf(flags))
            if isinstance(res, int) and res > 0:
                want = bytes(self.shadow[name][pos : pos + res])
                self.checks.append(
                    Check(f"pread {name} {pos}+{length}: data", bytes(buf[:res]) == want)
                )
        except OSError as exc:
            res = errno_mod.errorcode[exc.errno]
        finally:
            buf.close()
        self._log("pread", name, pos, length, flags, res, expect)
        return res

    def _file_buffer(self, name: str, length: int) -> mmap.mmap:
        with self._scratch_fd(name, os.O_RDONLY) as fd:
            if os.fstat(fd).st_size < length:
                raise ValueError(f"{name} is shorter than the {length}-byte buffer")
            return mmap.mmap(fd, length, flags=mmap.MAP_PRIVATE,
                             prot=mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip

    def aio(self, ops: list[AioOp]) -> None:
        """Submit O_DIRECT requests together (one io_submit, Linux native AIO) and wait
        for them all: asynchronous kiocbs, so iomap may answer -EIOCBQUEUED.
        Each op: (op, file, pos, length, flags, expected result[, touched]); a read's
        ``touched``: only the buffer's pages before it are faulted in."""
        from .aio import AioContext, AioError

        bufs, batch = [], []
        for i, (op, name, pos, length, flags, *rest) in enumerate(ops):
            fd = self.open(name)
            buf = _buffer(length)
            if op == "write":
                buf[:length] = _fill(pos, length, self.seed)
            else:
                _touch(buf, length, rest[1] if len(rest) > 1 else None)
            bufs.append(buf)
            batch.append((op, fd, memoryview(buf)[:length], pos, rwf(flags), i))
        results: dict[int, int | str] = {}
        with AioContext(len(ops)) as ctx:
            try:
                accepted = ctx.submit_many(batch)
            except AioError as exc:
                accepted = 0
                results = {i: errno_mod.errorcode[exc.errno] for i in range(len(ops))}
            for i in range(accepted, len(ops)):
                results.setdefault(i, "EAGAIN")
            for data, res in ctx.reap(min_nr=accepted, timeout=30) if accepted else []:
                results[data] = res if res >= 0 else errno_mod.errorcode[-res]
        for i, (op, name, pos, length, flags, expect, *_) in enumerate(ops):
            res = results[i]
            if op == "write" and isinstance(res, int) and res > 0:
                self._shadow_write(name, pos, _fill(pos, length, self.seed)[:res])
            elif op == "read" and isinstance(res, int) and res > 0:
                want = bytes(self.shadow[name][pos : pos + res])
                self.checks.append(
                    Check(f"aio read {name} {pos}+{length}: data", bytes(bufs[i][:res]) == want)
                )
            self._log("aio " + op, name, pos, length, flags, res, expect)
        for entry in batch:
            entry[2].release()
        for buf in bufs:
            buf.close()

    def _mark(self, op: str, name: str, pos: int, length: int, flags: tuple[str, ...]) -> None:
        if self.marker is not None:
            self.marker(f"dioconf: {op} {name} {pos} {length} {'|'.join(flags)}")

    def _log(self, op: str, name: str, pos: int, length: int, flags: tuple[str, ...],
             res: int | str, expect: Expect) -> None:  # fmt: skip
        self.calls.append(Call(op, name, pos, length, list(flags), res, expect))
        if expect is not None:
            allowed = expect if isinstance(expect, tuple) else (expect,)
            self.checks.append(
                Check(f"{op} {name} {pos}+{length} {'|'.join(flags)}: result", res in allowed,
                      f"got {res}, expected {' or '.join(map(str, allowed))}")
            )  # fmt: skip

    def _shadow_write(self, name: str, pos: int, data: bytes) -> None:
        sh = self.shadow[name]
        if pos + len(data) > len(sh):
            sh.extend(bytes(pos + len(data) - len(sh)))
        sh[pos : pos + len(data)] = data

    # -- after the run -------------------------------------------------------------

    def verify(self) -> list[Check]:
        """Contents and i_size of every file against the shadow."""
        for name, sh in self.shadow.items():
            st = os.stat(self.path(name))
            self.checks.append(
                Check(f"{name}: i_size", st.st_size == len(sh), f"{st.st_size} vs {len(sh)}")
            )
            with self._scratch_fd(name, os.O_RDONLY) as fd:
                same = os.pread(fd, len(sh) + 1, 0) == bytes(sh)
            self.checks.append(Check(f"{name}: contents read back", same))
        return self.checks

    def expect_extent(
        self, name: str, pos: int, *, mapped: bool = True, unwritten: bool | None = None,
        shared: bool | None = None,
    ) -> None:  # fmt: skip
        """Check (FIEMAP, after a sync) the extent state of the byte at ``pos``."""
        os.fsync(self.open(name))
        ext = next(
            (e for e in self.fiemap(name) if e["logical"] <= pos < e["logical"] + e["length"]),
            None,
        )
        what = f"{name}: FIEMAP at {pos}"
        if not mapped:
            self.checks.append(Check(f"{what} is a hole", ext is None, str(ext)))
            return
        ok = ext is not None
        if ok and unwritten is not None:
            ok = ext["unwritten"] == unwritten
        if ok and shared is not None:
            ok = ext["shared"] == shared
        want = f"mapped, unwritten={unwritten}, shared={shared}"
        self.checks.append(Check(f"{what}: {want}", ok, str(ext)))

    def fiemap(self, name: str) -> list[dict[str, Any]]:
        """The file's extents (logical, physical, length, unwritten, shared)."""
        fd = self.open(name)
        count = 64
        req = bytearray(struct.pack("=QQLLLL", 0, 2**64 - 1, 0, 0, count, 0))
        req += bytes(56 * count)
        fcntl.ioctl(fd, FS_IOC_FIEMAP, req)
        n = struct.unpack_from("=L", req, 20)[0]
        out = []
        for i in range(n):
            lo, ph, ln, _, _, fl = struct.unpack_from("=QQQQQL", req, 32 + 56 * i)
            out.append({"logical": lo, "physical": ph, "length": ln,
                        "unwritten": bool(fl & FIEMAP_EXTENT_UNWRITTEN),
                        "shared": bool(fl & FIEMAP_EXTENT_SHARED)})  # fmt: skip
        return out


def _buffer(length: int) -> mmap.mmap:
    buf = mmap.mmap(-1, max(length, 1) + mmap.PAGESIZE)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)  # the same 4 KiB pages every run
    return buf


def _check_touched(touched: int, length: int) -> None:
    if not 0 <= touched <= length or touched % mmap.PAGESIZE:
        raise ValueError(f"touched={touched}: a multiple of {mmap.PAGESIZE} up to {length}")


def _touch(buf: mmap.mmap, length: int, touched: int | None) -> None:
    """Fault in the buffer's pages before ``touched`` (None: all of its ``length``)."""
    if touched is None:
        touched = length
    else:
        _check_touched(touched, length)
    for page in range(0, touched, mmap.PAGESIZE):
        buf[page] = 0


def protect(buf: mmap.mmap, offset: int, length: int = mmap.PAGESIZE) -> None:
    """mprotect(PROT_NONE) ``length`` bytes of ``buf`` from ``offset`` (whole pages)."""
    view = ctypes.c_char.from_buffer(buf)
    addr = ctypes.addressof(view) + offset
    del view  # (no export may outlive this: the buffer is closed later)
    if _libc.mprotect(addr, length, 0):  # PROT_NONE
        raise OSError(ctypes.get_errno(), "mprotect failed")


RWF = {"DSYNC": os.RWF_DSYNC, "SYNC": os.RWF_SYNC, "NOWAIT": os.RWF_NOWAIT,
       "HIPRI": os.RWF_HIPRI}  # fmt: skip


def rwf(flags: Iterable[str]) -> int:
    """preadv2/pwritev2 flags by name."""
    value = 0
    for f in flags:
        value |= RWF[f]
    return value


def fallocate(fd: int, mode: int, pos: int, length: int) -> None:
    """fallocate(2) with ``mode`` (os.posix_fallocate has none); OSError on failure."""
    if _libc.fallocate(fd, mode, pos, length):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_nocow(fd: int) -> None:
    """chattr +C: btrfs files without data checksums (set while the file is empty)."""
    flags = bytearray(4)
    fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
    value = int.from_bytes(flags, "little") | FS_NOCOW_FL
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, value.to_bytes(4, "little"))
