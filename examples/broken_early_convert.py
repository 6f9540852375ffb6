"""Broken: converts unwritten extents to written before the data is written.

To save work at completion, ``iomap_begin`` turns unwritten extents (fallocated, or
just allocated for the write) into written ones at once and maps them MAPPED; the
contract is that they stay UNWRITTEN until ``end_io`` converts what was written
(xfs_dio_write_end_io). If the write fails, or the machine crashes once the metadata
is committed, the file shows whatever the blocks held before: stale data.

``dioconf check examples.broken_early_convert:factory`` reports
``contract violation [early-convert]`` (a write into a fallocated range), or the
stale data a failed write leaves.
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import EAGAIN, HOLE, MAPPED, UNWRITTEN, DioError, Inode, Iomap

from .goodfs import GoodFs


class EarlyConvertFs(GoodFs):
    name = "broken-early-convert"

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.lookup(inode, pos, length)
        if "WRITE" not in flags or m.type not in (HOLE, UNWRITTEN):
            return super().iomap_begin(inode, pos, length, flags)
        if flags & {"NOWAIT", "OVERWRITE_ONLY"}:
            raise DioError(EAGAIN, "allocation or conversion needed")
        if m.type == HOLE:
            m = self.allocate(inode, pos, m.end - pos)  # UNWRITTEN | NEW
        self.convert_unwritten(inode, m.offset, m.length)  # the fault: before the data
        return m._replace(type=MAPPED)


def factory(device: Any) -> EarlyConvertFs:
    return EarlyConvertFs(device)
