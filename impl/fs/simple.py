"""Two reference filesystems for the iomap engine.

``OverwriteFs``: blocks are overwritten in place; a write into a hole allocates blocks
and reports them MAPPED with IOMAP_F_NEW (so the engine zeroes sub-block edges and
completes in process context); ``end_io`` moves i_size.

``XfsLikeFs``: fallocate makes unwritten extents; a write into a hole allocates
unwritten blocks (UNWRITTEN + NEW), and ``end_io`` converts what was written and moves
i_size, as xfs_dio_write_end_io does.
"""

from __future__ import annotations

from ..api import HOLE, UNWRITTEN, Inode, Iomap
from .base import PREALLOC, WRITTEN, ExtentFs


class OverwriteFs(ExtentFs):
    name = "overwrite"
    alloc_state = WRITTEN

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.extent_at(inode, pos, length)
        if "WRITE" in flags and m.type == HOLE:
            return self.allocate_for_write(inode, pos, m.end - pos, flags, self.alloc_state)
        if "WRITE" in flags and "OVERWRITE_ONLY" in flags and m.type == UNWRITTEN:
            from ..api import EAGAIN, DioError

            raise DioError(EAGAIN, "unwritten extent: not a pure overwrite")
        return m

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        # xfs_dio_write_end_io: writes only; nothing to do on error or for no bytes
        if "WRITE" not in flags or error or not size:
            return error
        if "UNWRITTEN" in flags:
            self.convert(inode, pos, size)
        self.extend(inode, pos, size)
        return 0


class XfsLikeFs(OverwriteFs):
    name = "xfs-like"
    alloc_state = PREALLOC
