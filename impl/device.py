"""A block device on a real sparse image file, with a volatile write cache (dm-log-writes).

A write completes into a volatile cache, a flush (REQ_PREFLUSH) makes every completed write
durable, a FUA write is durable when it completes, `crash` drops what is not durable.
``PATH`` holds the durable contents (sparse, exactly ``size`` bytes); ``PATH.dioconf`` is
the sidecar (JSON: magic, version, size, logical_block_size), without which an existing
file is not opened; ``PATH.cache``, the overlay, holds the volatile writes at their device
offsets, valid where an `IntervalSet` says (opening an image discards a leftover one).
Never-written sectors read as `stale_sector`, so `find_stale` catches reads exposing them;
the image's holes are exactly the never-written ranges, since a write into a hole block of
the filesystem first fills the rest of that block with the stale pattern. Host durability
is not emulated: buffered ``os.pwritev``, one fsync at `ImageDevice.close`. A lock per
device serialises its operations, so bios may complete on several threads.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from .intervals import IntervalSet

SECTOR = 512
STALE_MAGIC = b"STALE!!!"  # each 16-byte unit of a never-written sector: this, sector number
DEFAULT_SIZE = 1 << 30
DEFAULT_LOGICAL_BLOCK_SIZE = 512
MAX_LBS = 1 << 16
MAX_SIZE = (1 << 63) - (1 << 20)  # off_t, less room for the filesystem
SIDECAR_SUFFIX, OVERLAY_SUFFIX = ".dioconf", ".cache"
MAGIC = ("dioconf-image", 1)  # sidecar "magic" and "version"
COPY_CHUNK = 4 << 20  # bytes per copy_file_range (or pread + pwrite) step of a flush
ALIGN, ALIGN_MIN = 64, 64 << 10  # see _new_buffer
NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}
STAT_KEYS = ("reads", "writes", "bytes_read", "bytes_written", "flushes", "fua_writes", "crashes")

PathArg = str | os.PathLike[str] | None
P = ParamSpec("P")
R = TypeVar("R")


def _locked(
    method: Callable[Concatenate[ImageDevice, P], R],
) -> Callable[Concatenate[ImageDevice, P], R]:
    @wraps(method)
    def locked(self: ImageDevice, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._mutex:
            return method(self, *args, **kwargs)

    return locked


class DeviceError(Exception):
    """Bad use of a device: misaligned, out of range, closed, ..."""


class ImageError(DeviceError):
    """An image file that is missing, truncated, foreign or in use."""


def stale_sector(sector: int) -> bytes:
    """The 512 bytes sector ``sector`` (device address // 512) reads as while never written."""
    return (STALE_MAGIC + sector.to_bytes(8, "big")) * 32


def stale_range(start: int, end: int) -> bytes:
    """The stale contents of device bytes ``[start, end)`` (any bounds)."""
    if start >= end:
        return b""
    first, last = start // SECTOR, -(-end // SECTOR)
    data = b"".join([(STALE_MAGIC + s.to_bytes(8, "big")) * 32 for s in range(first, last)])
    head = start - first * SECTOR
    return data if head == 0 and len(data) == end - start else data[head : head + end - start]


def find_stale(data: bytes | bytearray | memoryview, addr: int) -> list[tuple[int, int]]:
    """Device byte ranges of ``data`` (read from ``addr``) holding their sectors' stale pattern.

    Whole sectors are compared at once and the search jumps between occurrences of the
    magic, so data without stale bytes costs one scan. A partial first or last sector counts
    when it equals its part of the pattern.
    """
    buf = data if isinstance(data, (bytes, bytearray)) else memoryview(data).tobytes()
    n = len(buf)
    out: list[tuple[int, int]] = []

    def hit(lo: int, hi: int) -> None:
        if out and out[-1][1] == addr + lo:
            out[-1] = (out[-1][0], addr + hi)
        else:
            out.append((addr + lo, addr + hi))

    first = min(-addr % SECTOR, n)  # offset in buf of the first sector boundary
    if first and buf[:first] == stale_range(addr, addr + first):
        hit(0, first)
    tail = first + (n - first) // SECTOR * SECTOR  # end of the whole sectors
    pos = first
    while pos < tail and (idx := buf.find(STALE_MAGIC, pos, tail)) >= 0:
        pos = idx - (idx - first) % SECTOR  # start of the sector holding the magic
        while pos < tail and buf.startswith(stale_sector((addr + pos) // SECTOR), pos):
            hit(pos, pos + SECTOR)
            pos += SECTOR
        pos += SECTOR  # the sector at pos is not stale (or pos is the tail)
    if tail < n and buf[tail:] == stale_range(addr + tail, addr + n):
        hit(tail, n)
    return out


def _full_write(fd: int, view: memoryview | bytes, offset: int) -> None:
    """``os.pwritev`` of all of ``view`` at ``offset``, resumed after short writes."""
    done = os.pwritev(fd, [view], offset)
    if done < len(view):  # bytes, or a memoryview of format "B"
        view = memoryview(view)
        while done < view.nbytes:
            done += os.pwritev(fd, [view[done:]], offset + done)


def _full_read(fd: int, view: memoryview, offset: int, path: Path) -> None:
    """``os.preadv`` into all of ``view`` from ``offset``, resumed after short reads."""
    done = os.preadv(fd, [view], offset)
    while done < view.nbytes:
        step = os.preadv(fd, [view[done:]], offset + done)
        if step <= 0:
            raise ImageError(f"{path} is truncated: end of file at {offset + done}")
        done += step


def _new_buffer(length: int) -> bytearray:
    """A zeroed bytearray starting on a 64-byte boundary when large: the kernel's copy to
    user memory runs ~3x slower on some CPUs into a destination 16 bytes off, where glibc
    puts large (mmapped) blocks. Deleting a bytearray's first bytes is O(1)."""
    if length < ALIGN_MIN:
        return bytearray(length)
    buf = bytearray(length + ALIGN)
    probe = ctypes.c_char.from_buffer(buf)
    shift = -ctypes.addressof(probe) % ALIGN
    del probe  # releases the buffer export, so the bytearray may be resized
    del buf[:shift]
    del buf[length:]
    return buf


def _check_geometry(size: object, lbs: object) -> None:
    if type(lbs) is not int or lbs < SECTOR or lbs > MAX_LBS or lbs & (lbs - 1):
        raise DeviceError(f"logical_block_size {lbs!r} must be a power of two in [512, {MAX_LBS}]")
    if type(size) is not int or size <= 0 or size % lbs or size > MAX_SIZE:
        raise DeviceError(f"size {size!r} must be a positive multiple of {lbs}, <= {MAX_SIZE}")


class _Resources:
    """File descriptors and temporary paths of one device; released once (or at GC)."""

    def __init__(self) -> None:
        self.image_fd = self.overlay_fd = -1
        self.overlay_path: Path | None = None
        self.tmpdir: Path | None = None

    def release(self) -> None:
        fds, self.image_fd, self.overlay_fd = (self.image_fd, self.overlay_fd), -1, -1
        try:
            if fds[0] >= 0 and self.tmpdir is None:  # (a temporary image is removed)
                os.fsync(fds[0])  # the host keeps what the device made durable
        finally:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
            if self.overlay_path is not None:
                self.overlay_path.unlink(missing_ok=True)
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.overlay_path = self.tmpdir = None


class ImageDevice:
    """A block device on a sparse image file, with a volatile write cache and crashes.

    ``path=None`` makes a new image in a temporary directory that `close` removes. ``size``
    and ``logical_block_size`` default to 1 GiB and 512 for a new image and to the recorded
    values for an existing one (values given must match them). ``create``: None opens or
    creates, True only creates, False only opens.
    """

    def __init__(
        self,
        path: PathArg = None,
        size: int | None = None,
        *,
        logical_block_size: int | None = None,
        write_cache: bool = True,
        fua: bool = True,
        create: bool | None = None,
    ) -> None:
        self.write_cache, self.fua = bool(write_cache), bool(fua)
        self._mutex = threading.RLock()  # reentrant: an emulated FUA write flushes
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self._cached = IntervalSet()  # valid ranges of the overlay: the volatile writes
        self._data = IntervalSet()  # ranges known to be data in the image: they stay data
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)
        self._closed = False
        try:
            self._open(path, size, logical_block_size, create)
        except BaseException:
            self.close()
            raise

    def _open(self, path: PathArg, size: int | None, lbs: int | None, create: bool | None) -> None:
        res = self._res
        if path is None:
            if create is False:
                raise ImageError("create=False needs the path of an existing image")
            res.tmpdir = Path(tempfile.mkdtemp(prefix="dioconf-image-"))
            path = res.tmpdir / "image"
        self.path = Path(path)
        exists = os.path.lexists(self.path)
        if exists and create is True:
            raise ImageError(f"{self.path} already exists (create=True); use a new path")
        if not exists and create is False:
            raise ImageError(f"{self.path} does not exist (create=False)")
        if exists:
            size, lbs = self._open_existing(size, lbs)
        else:
            size = DEFAULT_SIZE if size is None else size
            lbs = DEFAULT_LOGICAL_BLOCK_SIZE if lbs is None else lbs
            _check_geometry(size, lbs)
            self._create(size, lbs)
        self.size, self.logical_block_size = size, lbs
        blksize = os.fstat(res.image_fd).st_blksize  # data/hole boundaries fall on it
        self._grain = blksize if blksize >= 4096 and blksize % SECTOR == 0 else 4096
        if self.write_cache:
            res.overlay_path = self._sidecar(OVERLAY_SUFFIX)
            flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
            res.overlay_fd = os.open(res.overlay_path, flags, 0o600)  # a leftover is discarded
            os.ftruncate(res.overlay_fd, size)

    def _sidecar(self, suffix: str = SIDECAR_SUFFIX) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _lock(self, fd: int) -> None:
        self._res.image_fd = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImageError(f"{self.path} is in use by another ImageDevice") from None

    def _create(self, size: int, lbs: int) -> None:
        self._lock(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        try:
            os.ftruncate(self._res.image_fd, size)  # sparse: nothing is written
            meta = {"magic": MAGIC[0], "version": MAGIC[1], "size": size}
            tmp = self._sidecar(SIDECAR_SUFFIX + ".tmp")
            tmp.write_text(json.dumps({**meta, "logical_block_size": lbs}) + "\n")
            os.replace(tmp, self._sidecar())
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            raise ImageError(f"{self.path}: cannot create an image of {size} bytes: {exc}") from exc

    def _open_existing(self, size: int | None, lbs: int | None) -> tuple[int, int]:
        sidecar, path = self._sidecar(), self.path
        if not path.is_file():
            raise ImageError(f"{path} is not a regular file")
        try:
            meta = json.loads(sidecar.read_text())
        except FileNotFoundError:
            msg = f"{path} is not a dioconf image (no {sidecar}); use a new path"
            raise ImageError(msg) from None
        except (OSError, ValueError) as exc:
            raise ImageError(f"{path} is not a dioconf image ({sidecar}: {exc})") from None
        if not isinstance(meta, dict) or (meta.get("magic"), meta.get("version")) != MAGIC:
            raise ImageError(f"{path} is not a dioconf image ({sidecar}: not {MAGIC})")
        rec_size, rec_lbs = meta.get("size"), meta.get("logical_block_size")
        try:
            _check_geometry(rec_size, rec_lbs)
        except DeviceError as exc:
            raise ImageError(f"{path}: bad geometry in {sidecar}: {exc}") from None
        assert isinstance(rec_size, int) and isinstance(rec_lbs, int)
        if size is not None and size != rec_size:
            raise ImageError(f"{path} has size {rec_size}, not the requested {size}")
        if lbs is not None and lbs != rec_lbs:
            raise ImageError(f"{path} has logical_block_size {rec_lbs}, not the requested {lbs}")
        self._lock(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        actual = os.fstat(self._res.image_fd).st_size
        if actual != rec_size:
            what = "is truncated:" if actual < rec_size else "has"
            raise ImageError(f"{path} {what} {actual} bytes, expected {rec_size}")
        return rec_size, rec_lbs

    @property
    def closed(self) -> bool:
        return self._closed

    @_locked
    def close(self) -> None:
        """Idempotent: fsync the image, close the files, remove what the device created.

        Volatile writes are dropped, as at a power-off: `flush` first to keep them.
        """
        self._closed = True
        self._cached.clear()
        self._finalizer()

    def __enter__(self) -> ImageDevice:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError(f"device {self.path} is closed")

    def _check_range(self, what: str, addr: int, length: int) -> None:
        self._check_open()
        lbs = self.logical_block_size
        if type(addr) is not int or type(length) is not int or addr < 0 or length < 0:
            raise DeviceError(f"{what}: addr {addr!r} and length {length!r} must be ints >= 0")
        if addr % lbs or length % lbs:
            msg = f"addr {addr} and length {length} must be multiples of the logical block size"
            raise DeviceError(f"{what}: {msg} {lbs}")
        if addr + length > self.size or (length and addr >= self.size):
            msg = f"[{addr}, {addr + length}) is outside the device [0, {self.size})"
            raise DeviceError(f"{what}: {msg}")

    @_locked
    def read(self, addr: int, length: int) -> bytearray:
        """What the device holds at ``[addr, addr + length)`` now (volatile writes included)."""
        self._check_range("read", addr, length)
        buf = _new_buffer(length)
        self._read(addr, memoryview(buf), volatile=True)
        return buf

    def readinto(self, addr: int, buf: memoryview | bytearray) -> None:
        """Like `read`, into the writable buffer ``buf`` (its length is the read's length)."""
        view = memoryview(buf)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if view.readonly:
            raise DeviceError("readinto: the buffer is read-only")
        with self._mutex:  # (inline rather than @_locked: the hot path of every bio)
            self._check_range("read", addr, view.nbytes)
            self._read(addr, view, volatile=True)

    @_locked
    def durable_read(self, addr: int, length: int) -> bytearray:
        """What ``[addr, addr + length)`` would hold after a crash now (not counted in stats)."""
        self._check_range("durable_read", addr, length)
        buf = _new_buffer(length)
        self._read(addr, memoryview(buf), volatile=False)
        return buf

    def _read(self, addr: int, view: memoryview, *, volatile: bool) -> None:
        length = view.nbytes
        if not length:
            return
        if volatile:
            self.stats["reads"] += 1
            self.stats["bytes_read"] += length
        if not (volatile and self._cached):
            self._read_image(addr, view)
            return
        end, pos = addr + length, addr
        for s, e in self._cached.overlapping(addr, end):
            if s > pos:
                self._read_image(pos, view[pos - addr : s - addr])
            _full_read(self._res.overlay_fd, view[s - addr : e - addr], s, self.path)
            pos = e
        if pos < end:
            self._read_image(pos, view[pos - addr :])

    def _read_image(self, addr: int, view: memoryview) -> None:
        """Durable contents into ``view``: one preadv per data extent, holes read stale.

        The image never gets a hole back, so the extents SEEK_DATA/SEEK_HOLE find are kept."""
        fd, end, pos = self._res.image_fd, addr + view.nbytes, addr
        if self._data.covers(addr, end):
            _full_read(fd, view, addr, self.path)
            return
        while pos < end:
            data = min(self._seek_data(pos), end)
            if data > pos:
                view[pos - addr : data - addr] = stale_range(pos, data)
            if data >= end:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            self._data.add(data, hole)
            pos = min(hole, end)
            _full_read(fd, view[data - addr : pos - addr], data, self.path)

    def _seek_data(self, pos: int) -> int:
        """The first offset >= ``pos`` holding data in the image (2**64 if none)."""
        try:
            return os.lseek(self._res.image_fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return 1 << 64

    def _pad(self, addr: int, end: int) -> None:
        """Before ``[addr, end)`` goes to the image: fill the rest of the hole blocks it starts
        or ends in with the stale pattern, since the filesystem allocates whole blocks."""
        grain, fd = self._grain, self._res.image_fd
        first, last = addr - addr % grain, end - end % grain
        head = first != addr and self._seek_data(first) >= first + grain
        if last != end and end < self.size and self._seek_data(last) >= last + grain:
            _full_write(fd, stale_range(end, min(last + grain, self.size)), end)
        if head:
            _full_write(fd, stale_range(first, addr), first)

    def write(self, addr: int, data: bytes | bytearray | memoryview, *, fua: bool = False) -> None:
        """Write ``data`` at ``addr``: durable at once with FUA or without a write cache."""
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        n = view.nbytes
        with self._mutex:  # (inline rather than @_locked: the hot path of every bio)
            if (self._closed or type(addr) is not int or addr < 0 or addr + n > self.size
                    or (addr | n) & (self.logical_block_size - 1)):  # fmt: skip
                self._check_range("write", addr, n)  # says what is wrong
            if not n:
                return
            st = self.stats
            st["writes"] += 1
            st["bytes_written"] += n
            if fua:
                st["fua_writes"] += 1
            if not self.write_cache or (fua and self.fua):
                self._pad(addr, addr + n)
                _full_write(self._res.image_fd, view, addr)
                self._data.add(addr, addr + n)
                if self._cached:
                    self._cached.remove(addr, addr + n)
                return
            if os.pwritev(self._res.overlay_fd, [view], addr) < n:  # _full_write, inline
                _full_write(self._res.overlay_fd, view, addr)  # (rewrites it all)
            self._cached.add(addr, addr + n)
            if fua:
                # No FUA support: the block layer sends the write, then a flush (blk-flush's
                # REQ_POSTFLUSH), which makes every completed write durable.
                self.flush()

    @_locked
    def flush(self) -> None:
        """REQ_PREFLUSH: every write completed before it becomes durable."""
        self._check_open()
        self.stats["flushes"] += 1
        if not self._cached:
            return
        for s, e in self._cached:
            self._pad(s, e)
            self._copy_overlay(s, e)
            self._data.add(s, e)
        # The overlay keeps its blocks: the next volatile writes overwrite them in place,
        # which is faster than allocating (a crash or close frees them).
        self._cached.clear()

    def _copy_overlay(self, start: int, end: int) -> None:
        """Copy overlay bytes ``[start, end)`` to the image, inside the kernel if it can."""
        src, dst, pos = self._res.overlay_fd, self._res.image_fd, start
        try:
            while pos < end and (n := os.copy_file_range(src, dst, end - pos, pos, pos)) > 0:
                pos += n
        except OSError as exc:
            if exc.errno not in NO_COPY_RANGE:
                raise
        buf = memoryview(bytearray(min(COPY_CHUNK, end - pos))) if pos < end else None
        while buf is not None and pos < end:
            part = buf[: min(COPY_CHUNK, end - pos)]
            _full_read(src, part, pos, self.path)
            _full_write(dst, part, pos)
            pos += part.nbytes

    @_locked
    def crash(self) -> None:
        """Power failure: every write that is not durable is lost; the device keeps working."""
        self._check_open()
        self.stats["crashes"] += 1
        self._cached.clear()
        if self.write_cache:  # free the overlay's blocks
            os.ftruncate(self._res.overlay_fd, 0)
            os.ftruncate(self._res.overlay_fd, self.size)

    @_locked
    def volatile_ranges(self) -> list[tuple[int, int]]:
        """Ranges written (completed) but not yet durable, sorted and merged."""
        self._check_open()
        return list(self._cached)
