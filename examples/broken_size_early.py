"""Broken: moves i_size in ``iomap_begin``, before the data is written.

An extending write sets i_size to its end as soon as it is mapped. Until the data is
there, a reader sees a file that long (zeros, or worse), and a write that fails or
stops short leaves i_size past its data. i_size moves in ``end_io``, after the data
(xfs_dio_write_end_io).

``dioconf check examples.broken_size_early:factory`` reports
``contract violation [size-before-data]`` on the first extending write.
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import Inode, Iomap

from .goodfs import GoodFs


class SizeEarlyFs(GoodFs):
    name = "broken-size-early"

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = super().iomap_begin(inode, pos, length, flags)
        if "WRITE" in flags and "DIRECT" in flags:
            self.extend(inode, pos, min(length, m.end - pos))  # the fault: before the data
        return m


def factory(device: Any) -> SizeEarlyFs:
    return SizeEarlyFs(device)
