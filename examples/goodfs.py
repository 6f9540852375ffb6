"""A small filesystem done right, written only against ``dioconf.fsapi``.

Extents in the manner of xfs: a direct write into a hole allocates *unwritten* blocks,
reported with IOMAP_F_NEW, so that the engine zeroes what the write does not cover of
each block and a write that fails leaves zeros, never stale data; ``end_io`` converts
what was written and moves i_size, once the data is there. ``BlockFs`` keeps the block
map and makes it durable at fsync only.

    dioconf check examples.goodfs:factory      # exits 0
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import EAGAIN, HOLE, UNWRITTEN, BlockFs, DioError, Inode, Iomap


class GoodFs(BlockFs):
    name = "goodfs"

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.lookup(inode, pos, length)
        if "WRITE" not in flags:
            return m  # holes and unwritten extents read as zeros
        if ("NOWAIT" in flags or "OVERWRITE_ONLY" in flags) and m.end < pos + length:
            # one mapping for the whole request, or none: never part of it, then -EAGAIN
            raise DioError(EAGAIN, "the write spans several extents")
        if m.type == HOLE:
            if "NOWAIT" in flags or "OVERWRITE_ONLY" in flags:
                raise DioError(EAGAIN, "allocation needed")
            return self.allocate(inode, pos, m.end - pos)  # UNWRITTEN | NEW
        if m.type == UNWRITTEN and "OVERWRITE_ONLY" in flags:
            raise DioError(EAGAIN, "unwritten extent: not a pure overwrite")
        # + IOMAP_F_DIRTY while metadata is uncommitted or the write ends past i_size
        return self.write_mapping(inode, m, pos, length)

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        if "WRITE" in flags and not error and size:
            if "UNWRITTEN" in flags:
                self.convert_unwritten(inode, pos, size)
            self.extend(inode, pos, size)
        return error


def factory(device: Any) -> GoodFs:
    return GoodFs(device)
