"""Two reference filesystems for the iomap engine.

``OverwriteFs`` (ext4-like): blocks are overwritten in place; a direct write into a hole
allocates blocks, reported with IOMAP_F_NEW (so the engine zeroes sub-block edges and
completes in process context): unwritten inside i_size, converted by ``end_io`` for what
was written; written past EOF, where ``end_io`` moves i_size and frees what i_size does
not cover (ext4_truncate_failed_write). A failed write never leaves stale blocks.

``XfsLikeFs``: fallocate makes unwritten extents; a write into a hole allocates
unwritten blocks (UNWRITTEN + NEW), and ``end_io`` converts what was written and moves
i_size, as xfs_dio_write_end_io does.
"""

from __future__ import annotations

from ..api import EAGAIN, HOLE, UNWRITTEN, DioError, Inode, Iomap
from .base import PREALLOC, WRITTEN, ExtentFs


class OverwriteFs(ExtentFs):
    name = "overwrite"
    alloc_state = WRITTEN
    short_write_fallback = True  # ext4_dio_write_iter: a buffered write finishes it

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.extent_at(inode, pos, length)
        if "WRITE" in flags:
            self.nowait_must_span(m, pos, length, flags)
        if "WRITE" in flags and m.type == HOLE:
            if self.alloc_state == WRITTEN:
                return self.allocate_for_dio(inode, pos, m.end - pos, flags)
            return self.allocate_for_write(inode, pos, m.end - pos, flags, self.alloc_state)
        if "WRITE" in flags and "OVERWRITE_ONLY" in flags and m.type == UNWRITTEN:
            raise DioError(EAGAIN, "unwritten extent: not a pure overwrite")
        return self.write_mapping(inode, m) if "WRITE" in flags else m

    def nowait_must_span(self, m: Iomap, pos: int, length: int, flags: frozenset[str]) -> None:
        """A NOWAIT write goes ahead only as an overwrite of one extent covering it all
        (ext4_dio_write_checks: ``!ext4_overwrite_io(...)`` under IOCB_NOWAIT -> -EAGAIN),
        so that it never writes part of the range and then fails with -EAGAIN; so does
        an OVERWRITE_ONLY one (iomap-operations.rst, IOMAP_OVERWRITE_ONLY: "The entire
        file range must map to a single written or unwritten extent"; ext4 never asks
        for it, the suite does)."""
        if flags & {"NOWAIT", "OVERWRITE_ONLY"} and m.end < pos + length:
            raise DioError(EAGAIN, "NOWAIT/OVERWRITE_ONLY write over several extents")

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        self.write_done(inode, pos, size, error, flags)
        return error


class XfsLikeFs(OverwriteFs):
    name = "xfs-like"
    alloc_state = PREALLOC
    short_write_fallback = False  # xfs_file_dio_write: only -ENOTBLK falls back

    nowait_must_span = ExtentFs.nowait_must_span  # xfs's rule, not OverwriteFs's ext4 one
