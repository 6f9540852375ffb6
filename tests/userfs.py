"""Filesystems of a user's kind, each with one realistic callback bug that the suite once
missed (issue 11, section 5): ``dioconf check tests.userfs:<factory> --profile ci`` must
catch each, naming the callback result at fault (tests/test_blindspots.py).

They are written against ``dioconf.fsapi`` the way the guide shows (examples/goodfs.py is
the correct one), with the bug the comment names.
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import (
    EAGAIN,
    HOLE,
    MAPPED,
    UNWRITTEN,
    BlockFs,
    BufferHead,
    DioError,
    Inode,
    Iomap,
)
from examples.goodfs import GoodFs
from examples.goodfs_legacy import factory as legacy_factory


class SizeFromRequestFs(GoodFs):
    """end_io moves i_size to the end of what was *asked* (remembered from iomap_begin),
    not of what was written: a short write past EOF leaves unwritten bytes inside i_size."""

    def __init__(self, device: Any) -> None:
        super().__init__(device)
        self.asked: dict[int, int] = {}

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        if {"WRITE", "DIRECT"} <= flags:
            self.asked[inode.ino] = max(self.asked.get(inode.ino, 0), pos + length)
        return super().iomap_begin(inode, pos, length, flags)

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        asked = self.asked.pop(inode.ino, pos + size)
        if "WRITE" in flags and not error and size:
            if "UNWRITTEN" in flags:
                self.convert_unwritten(inode, pos, size)
            self.extend(inode, pos, max(size, asked - pos))  # BUG: the length asked for
        return error


class OverwriteOnlyUnwrittenFs(GoodFs):
    """Under IOMAP_OVERWRITE_ONLY, an unwritten extent is returned as it is (no -EAGAIN),
    even for a write that is not block aligned."""

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.lookup(inode, pos, length)
        if "WRITE" in flags and m.type == UNWRITTEN and "OVERWRITE_ONLY" in flags:
            if m.end < pos + length:
                raise DioError(EAGAIN, "spans several extents")
            return self.write_mapping(inode, m, pos, length)  # BUG: unaligned + unwritten
        return super().iomap_begin(inode, pos, length, flags)


class ReuseBeforeCommitFs(GoodFs):
    """Freed blocks go back to the allocator at once, before the free is committed."""

    def _release(self, blk: int) -> None:
        refs = self.meta.refs
        refs[blk] = refs.get(blk, 1) - 1
        if refs[blk] <= 0:
            del refs[blk]
            self.meta.free.append(blk)  # BUG: not busy until the next commit


class LongMappingFs(GoodFs):
    """Reads get a mapping one block longer than the extent (an off-by-one in the
    extent lookup)."""

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = super().iomap_begin(inode, pos, length, flags)
        if "WRITE" not in flags and m.type == MAPPED:
            return m._replace(length=m.length + self.block_size)  # BUG: one block too many
        return m


class PreallocAsDataFs(GoodFs):
    """A preallocated (unwritten) extent is reported MAPPED to reads."""

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = super().iomap_begin(inode, pos, length, flags)
        if "WRITE" not in flags and m.type == UNWRITTEN:
            return m._replace(type=MAPPED)  # BUG: reads the blocks' stale contents
        return m


class NoMetadataDirtyFs:
    """Its own extent map, no BlockFs (so no metadata_dirty): never sets IOMAP_F_DIRTY,
    so an O_DSYNC overwrite of blocks allocated since the last fsync goes out FUA with
    nothing committed. Built on BlockFs's machinery by composition, the callbacks and the
    suite operations passed on by hand, as a filesystem of one's own would have them."""

    def __init__(self, device: Any) -> None:
        self._fs = BlockFs(device)
        self.block_size = self._fs.block_size
        self.name = "nodirty"

    def create(self) -> Inode:
        return self._fs.create()

    def file(self, inode: Inode) -> Any:
        return self._fs.file(inode)

    def extent_at(self, inode: Inode, pos: int, length: int) -> Iomap:
        return self._fs.extent_at(inode, pos, length)

    def truncate(self, inode: Inode, size: int) -> None:
        self._fs.truncate(inode, size)

    def fallocate(self, inode: Inode, pos: int, length: int, keep_size: bool = False) -> None:
        self._fs.fallocate(inode, pos, length, keep_size)

    def punch(self, inode: Inode, pos: int, length: int) -> None:
        self._fs.punch(inode, pos, length)

    def fsync(self, inode: Inode | None = None, *args: Any) -> int:
        return self._fs.fsync(inode)

    def crash(self) -> None:
        self._fs.crash()

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self._fs.lookup(inode, pos, length)
        if "WRITE" not in flags:
            return m
        if ("NOWAIT" in flags or "OVERWRITE_ONLY" in flags) and m.end < pos + length:
            raise DioError(EAGAIN, "spans several extents")
        if m.type == HOLE:
            if "NOWAIT" in flags or "OVERWRITE_ONLY" in flags:
                raise DioError(EAGAIN, "allocation needed")
            return self._fs.allocate(inode, pos, m.end - pos)
        if m.type == UNWRITTEN and "OVERWRITE_ONLY" in flags:
            raise DioError(EAGAIN, "not a pure overwrite")
        return m  # BUG: no IOMAP_F_DIRTY while the block map is not committed

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        if "WRITE" in flags and not error and size:
            if "UNWRITTEN" in flags:
                self._fs.convert_unwritten(inode, pos, size)
            self._fs.extend(inode, pos, size)
        return error


def long_get_block(device: Any) -> Any:
    """goodfs_legacy whose get_block maps all that was asked for, not the run."""
    fs = legacy_factory(device)
    get_block = fs.get_block

    def long(inode: Inode, fs_block: int, b_size: int, create: bool) -> BufferHead:
        bh = get_block(inode, fs_block, b_size, create)
        if bh.mapped and not bh.new:
            bh.size = b_size  # BUG: all that was asked for, not the contiguous run
        return bh

    fs.get_block = long
    return fs


# the factories `dioconf check tests.userfs:NAME` loads (a class is called with the device)
size_from_request = SizeFromRequestFs
overwrite_only_unwritten = OverwriteOnlyUnwrittenFs
reuse_before_commit = ReuseBeforeCommitFs
long_mapping = LongMappingFs
prealloc_as_data = PreallocAsDataFs
no_metadata_dirty = NoMetadataDirtyFs


# factory -> the rule its bug must be reported under
EXPECTED = {
    "size_from_request": "size-past-data",
    "overwrite_only_unwritten": "overwrite-only",
    "reuse_before_commit": "reuse-before-commit",
    "long_mapping": "mapping-past-extent",
    "prealloc_as_data": "unwritten-mapped",
    "no_metadata_dirty": "dirty-missing",
    "long_get_block": "bh-past-extent",
}
