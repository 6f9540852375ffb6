"""A get_block filesystem for the legacy engine, ext2-like.

``get_block(inode, fs_block, b_size, create)`` answers with a ``BufferHead``: a mapped
run of device blocks that are contiguous, up to ``b_size`` bytes; an unmapped buffer for
a hole (``b_size`` = the hole's length, up to what was asked); with ``create``, the holes
are allocated first and the run is reported ``new`` (so the engine zeroes what it does
not write of a new block). ``dio_flags`` are what ext2 passes to __blockdev_direct_IO:
DIO_LOCKING and DIO_SKIP_HOLES (no block creation inside i_size: the write stops short
and the caller falls back to buffered I/O).

Unwritten (fallocated) blocks: an ext2-like filesystem has no unwritten extents, so
reads see them as holes (zeros, as an unwritten extent reads) and a write with
``create`` takes them as freshly allocated blocks: they become written at once and are
reported ``new``. The engine writes every block of a new mapping (user data, the
sub-block zeroing, or ZERO_PAGE after a fault); only a failed bio or a request stopped
early (a reaped bio error) leaves one unwritten, as with ext2.
i_size moves with ``extend`` (ExtentFs), which the engine calls for a write's result,
as the kernel's caller of __blockdev_direct_IO does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api import MAPPED, UNWRITTEN, DioError, Inode
from .base import WRITTEN, ExtentFs


@dataclass
class BufferHead:
    """What ``get_block`` fills into map_bh: a mapped run of ``size`` bytes from device
    block ``blocknr`` (in fs blocks), or an unmapped (hole) buffer."""

    mapped: bool
    blocknr: int = 0
    size: int = 0
    new: bool = False
    boundary: bool = False
    defer_completion: bool = False

    def problem(self, blkbits: int, remainder: int, write: bool) -> str:
        """What is wrong with this answer for the engine (dio blocks of ``1 << blkbits``,
        ``remainder`` dio blocks into the fs block asked for), or ""."""
        if self.size <= 0 or self.size % (1 << blkbits):
            return "b_size is not a positive number of dio blocks"
        if self.new and not (self.mapped and write):
            return "buffer_new on an unmapped buffer, or for a read"
        if self.mapped and self.blocknr < 0:
            return "a negative b_blocknr"
        if self.mapped and self.size >> blkbits <= remainder:
            return "b_size ends before the block asked for"
        return ""


class GetBlockFs(ExtentFs):
    name = "getblock"
    dio_flags = frozenset({"LOCKING", "SKIP_HOLES"})

    def get_block(self, inode: Inode, fs_block: int, b_size: int, create: bool) -> BufferHead:
        bs = self.block_size
        pos = fs_block * bs
        m = self.extent_at(inode, pos, b_size)
        length = min(m.end - pos, b_size)
        if m.type == MAPPED:
            assert m.addr is not None
            return BufferHead(True, m.addr // bs, length)
        if not create:
            return BufferHead(False, size=length)
        if m.type == UNWRITTEN:
            assert m.addr is not None
            self.convert(inode, pos, length)
            return BufferHead(True, m.addr // bs, length, new=True)
        return self._allocate(inode, fs_block, length // bs)

    def write_failed(self, inode: Inode, to: int) -> None:
        """ext2_write_failed: a direct write that failed up to ``to`` leaves no block
        past i_size (ext2_truncate_blocks)."""
        if to > inode.size:
            bs = self.block_size
            eof = -(-inode.size // bs)
            f = self.file(inode)
            for blk in [b for b in f.blocks if b >= eof]:
                self._release(f.blocks.pop(blk)[0])

    def _allocate(self, inode: Inode, first: int, nblocks: int) -> BufferHead:
        """Allocate the hole's blocks while the allocator gives contiguous ones."""
        f = self.file(inode)
        start: int | None = None
        n = 0
        while n < nblocks and first + n not in f.blocks:
            try:
                dev = self._alloc()
            except DioError:
                if n:
                    break  # map what was allocated; the next call reports ENOSPC
                raise
            if start is not None and dev != start + n:
                self._release(dev)
                break
            start = dev if start is None else start
            f.blocks[first + n] = (dev, WRITTEN)
            n += 1
        assert start is not None
        return BufferHead(True, start, n * self.block_size, new=True)
