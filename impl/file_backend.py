"""The Python implementation as a conformance backend (``conformance/backend.py``).

``ImplBackend`` performs each operation on a ``World`` (``impl/world.py``) of one iomap
reference filesystem with its page cache, the stack ``conformance/harness.py`` builds,
minus the trace recorder (nothing replays these runs; recording would only grow). Each
file operation is the World's system call:

- ``direct_write``: ``World.file_write``, the filesystem's O_DIRECT pwrite with its
  fallbacks to buffered I/O; ``fault_at`` becomes the user buffer's fault
  (``UserBuffer.fault``: no byte from that offset on can be pinned). The direct path
  honours it; the buffered fallback copies the whole request, see ``direct_write``.
- ``direct_read``: ``World.pread`` (synchronous, settled).
- ``buffered_write``/``buffered_read``, ``fsync``, ``truncate``, ``fallocate``: the
  World's; ``drop_cache``: POSIX_FADV_DONTNEED, which starts writeback of the file's
  dirty pages (``__filemap_fdatawrite_range``, WB_SYNC_NONE: here it completes at once)
  and evicts the clean ones (``PageCache.drop``).
- ``punch``: ``World.punch`` takes whole blocks only; an unaligned range is what
  ``xfs_free_file_space`` makes of it: the range rounded out is written back, the whole
  blocks inside it are freed, and the partial blocks at either end are zeroed through
  the page cache up to i_size (``xfs_zero_range``, which skips holes and unwritten
  extents).
- ``remount``: unmount writes every dirty page back and commits (``sync_filesystem``);
  the mount starts with an empty page cache and the metadata as committed
  (``PageCache.crash`` and the filesystem's ``crash`` after the full sync: nothing
  volatile is left to lose, so this is exactly a clean unmount and mount).
- ``remove``: truncate to 0 (the blocks go back to the allocator once a commit makes
  the free durable, as in ``ExtentFs``) and forget the name.
- ``reflink``: the reference filesystems clone whole files only (``fs.reflink``, FICLONE),
  not ranges (FICLONERANGE): ``caps.reflink`` is False and the call is -EOPNOTSUPP.

Queries have no side effect: ``size`` is i_size, ``read_view`` reads cached pages where
the page cache has them and the filesystem's blocks from the device elsewhere (holes and
unwritten extents as zeros), without filling the cache.

Nothing here imports the model (``tests/test_impl_engine.py`` keeps impl/ free of it: the
implementation is what the model is compared with). The data of write ``wid`` is made
here, in the format ``model/pattern.py`` documents (``tests/test_impl_file_backend.py``
checks the two agree byte for byte).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..conformance.backend import Capabilities
from .api import EOPNOTSUPP, MAPPED, DioError, Inode
from .examples import ENGINES, FILESYSTEMS
from .view import read_view
from .world import World

DEFAULT_SIZE = 1 << 30  # the device (a sparse image: only what is written takes space)
UNIT = 16  # model/pattern.py: unit u of write wid is b"DIOW" + wid (4, LE) + u (8, LE)
_MAGIC = int.from_bytes(b"DIOW", "little")


def pattern(wid: int, pos: int, length: int) -> bytes:
    """The ``length`` bytes write ``wid`` puts at file offset ``pos`` (the suite's data,
    ``model.pattern.pattern``)."""
    if not 1 <= wid < 1 << 32 or pos < 0 or length < 0:
        raise ValueError(f"no data for write {wid} at [{pos}, {pos} + {length})")
    if length == 0:
        return b""
    first, last = pos // UNIT, -(-(pos + length) // UNIT)
    words = array("Q", bytes(UNIT * (last - first)))
    words[0::2] = array("Q", [_MAGIC | wid << 32]) * (last - first)
    words[1::2] = array("Q", range(first, last))
    if sys.byteorder == "big":
        words.byteswap()
    head = pos - first * UNIT
    return words.tobytes()[head : head + length]


def _errno(fn: Callable[[], object]) -> int:
    """0, or the negative errno a filesystem callback failed with."""
    try:
        fn()
    except DioError as exc:
        return exc.errno
    return 0


class ImplBackend:
    """One World: one reference filesystem on its own image device, with a page cache."""

    def __init__(self, fs: str, *, image: str | Path | None = None, size: int = DEFAULT_SIZE,
                 logical_block_size: int = 512, page_size: int = 4096) -> None:  # fmt: skip
        factory = FILESYSTEMS.get(fs)
        if factory is None:
            raise ValueError(f"unknown filesystem {fs!r} (known: {', '.join(FILESYSTEMS)})")
        if ENGINES.get(fs, "iomap") != "iomap":
            raise ValueError(f"filesystem {fs!r} runs on the {ENGINES[fs]} engine, not iomap "
                             "(ImplBackend needs the page cache of an iomap World)")  # fmt: skip
        self.fs_name = fs
        self.world = World(factory, image=image, size=size,
                           logical_block_size=logical_block_size, page_size=page_size,
                           engine="iomap", page_cache=True, record=False)  # fmt: skip
        self.name = f"impl {fs}"
        self.caps = Capabilities(
            block_size=self.world.fs.block_size,
            logical_block_size=self.world.device.logical_block_size,
            page_size=self.world.page_size,
            fault_buffers=True, nowait=True, reflink=False, remount=True,
        )  # fmt: skip
        self._inodes: dict[str, Inode] = {}
        self.syscalls = 0

    @classmethod
    def for_fs(cls, name: str, **kw: Any) -> ImplBackend:
        """The backend of reference filesystem ``name`` (an iomap one of
        ``conformance/catalogue.py``: overwrite, xfs-like, reflink, btrfs-like)."""
        return cls(name, **kw)

    def close(self) -> None:
        self._inodes.clear()
        self.world.close()

    def __enter__(self) -> ImplBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------

    def _inode(self, name: str) -> Inode:
        try:
            return self._inodes[name]
        except KeyError:
            raise FileNotFoundError(f"{self.name}: no file {name!r}") from None

    @property
    def _pc(self) -> Any:
        pc = self.world.pc
        assert pc is not None  # built with page_cache=True
        return pc

    # -- operations -----------------------------------------------------------------------

    def create(self, name: str) -> int:
        if name in self._inodes:
            raise FileExistsError(f"{self.name}: {name!r} exists")
        inode = self.world.create()
        self._inodes[name] = inode
        return inode.ino

    def direct_write(self, name: str, pos: int, length: int, wid: int,
                     flags: frozenset[str], fault_at: int | None) -> int:  # fmt: skip
        """``World.file_write``. The user buffer faults from ``fault_at`` on in the
        direct path; the World's buffered fallback (``World.buffered_fallback``, and the
        btrfs-like filesystem's retry after fault-in) copies the buffer in full, as if the
        pages had been faulted in: a buffer that stays inaccessible (PROT_NONE, what the
        contract means) would stop the copy at ``fault_at``."""
        self.syscalls += 1
        inode = self._inode(name)
        data = pattern(wid, pos, length)
        try:
            return self.world.file_write(inode, pos, data, flags=flags, fault_at=fault_at,
                                         inaccessible=True)  # fmt: skip
        except DioError as exc:
            return exc.errno

    def direct_read(self, name: str, pos: int, length: int,
                    flags: frozenset[str]) -> tuple[int, bytes]:  # fmt: skip
        self.syscalls += 1
        try:
            r = self.world.pread(self._inode(name), pos, length, flags=flags)
        except DioError as exc:
            return exc.errno, b""
        return r.ret, r.data[: max(0, r.ret)]

    def buffered_write(self, name: str, pos: int, length: int, wid: int) -> int:
        self.syscalls += 1
        try:
            return self.world.buffered_write(self._inode(name), pos, pattern(wid, pos, length))
        except DioError as exc:
            return exc.errno

    def buffered_read(self, name: str, pos: int, length: int) -> tuple[int, bytes]:
        self.syscalls += 1
        try:
            data = self.world.buffered_read(self._inode(name), pos, length)
        except DioError as exc:
            return exc.errno, b""
        return len(data), data

    def fsync(self, name: str, data_only: bool) -> int:
        """fsync and fdatasync alike: the World's fsync writes back, flushes and commits."""
        self.syscalls += 1
        inode = self._inode(name)
        try:
            return self.world.fsync(inode)
        except DioError as exc:
            return exc.errno

    def truncate(self, name: str, size: int) -> int:
        self.syscalls += 1
        inode = self._inode(name)
        return _errno(lambda: self.world.truncate(inode, size))

    def fallocate(self, name: str, pos: int, length: int, keep_size: bool) -> int:
        self.syscalls += 1
        inode = self._inode(name)
        return _errno(lambda: self.world.fallocate(inode, pos, length, keep_size))

    def punch(self, name: str, pos: int, length: int) -> int:
        self.syscalls += 1
        inode = self._inode(name)
        return _errno(lambda: self._punch(inode, pos, length))

    def _punch(self, inode: Inode, pos: int, length: int) -> None:
        """fallocate(PUNCH_HOLE | KEEP_SIZE) of any range (xfs_free_file_space)."""
        bs, end = self.world.fs.block_size, pos + length
        first, last = -(-pos // bs) * bs, end - end % bs  # the whole blocks inside
        if pos == first and end == last:
            self.world.punch(inode, pos, length)
            return
        lo, hi = pos - pos % bs, -(-end // bs) * bs
        pc = self._pc
        pc.writeback(inode, lo, hi - lo)  # xfs_flush_unmap_range
        if first < last:
            self.world.punch(inode, first, last - first)
        size = inode.size
        for start, stop in ((pos, min(first, end)), (max(last, pos), end)):
            stop = min(stop, size)  # never zero past EOF (nor move i_size)
            if start < stop:
                self._zero_mapped(inode, start, stop)

    def _zero_mapped(self, inode: Inode, start: int, stop: int) -> None:
        """iomap_zero_range of ``[start, stop)`` (inside one block): zeros in the page
        cache where the block is written data; a hole or an unwritten extent reads as
        zeros already (the range was just written back: no dirty page is over it)."""
        m = self.world.fs.extent_at(inode, start, stop - start)
        if m.type == MAPPED:
            self._pc.zero_range(inode, start, stop)

    def reflink(self, src: str, spos: int, dst: str, dpos: int, length: int) -> int:
        """FICLONERANGE: not offered (the reference filesystems clone whole files)."""
        self.syscalls += 1
        return EOPNOTSUPP

    def drop_cache(self, name: str) -> int:
        """POSIX_FADV_DONTNEED over the whole file."""
        self.syscalls += 1
        inode = self._inode(name)
        pc = self._pc
        pc.writeback(inode, 0, None, wait=False)
        pc.drop(inode)
        return 0

    def remount(self) -> int:
        """Unmount (every dirty page written back, the filesystem committed), then mount
        again: an empty page cache and the metadata as committed."""
        self.syscalls += 1
        pc, fs = self._pc, self.world.fs
        for inode in self._inodes.values():
            err = pc.writeback(inode)
            if err < 0:
                return err
        err = fs.fsync()
        if err < 0:
            return err
        pc.crash()  # memory is gone...
        fs.crash()  # ...and the mount reads back what the commit holds (all of it)
        for name, inode in list(self._inodes.items()):
            fresh = fs.inodes.get(inode.ino)
            if fresh is None:
                raise RuntimeError(f"{self.name}: {name} (inode {inode.ino}) did not survive "
                                   "a clean unmount")  # fmt: skip
            self._inodes[name] = fresh
        return 0

    def remove(self, name: str) -> int:
        self.syscalls += 1
        inode = self._inodes.pop(name, None)
        if inode is None:
            return -2  # ENOENT
        return _errno(lambda: self.world.truncate(inode, 0))

    # -- queries --------------------------------------------------------------------------

    def size(self, name: str) -> int:
        return self._inode(name).size

    def read_view(self, name: str, pos: int, length: int) -> bytes:
        """What a read of ``[pos, pos + length)`` returns now (shorter at EOF): cached
        pages first, else the filesystem's blocks; the page cache is left as it is."""
        return read_view(self.world, self._inode(name), pos, pos + length)

    def files(self) -> list[str]:
        return list(self._inodes)
