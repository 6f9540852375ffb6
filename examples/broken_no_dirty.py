"""Broken: never sets IOMAP_F_DIRTY, though its metadata is not always committed.

Overwrites get the extent as it is. But after a write that moved i_size or converted
unwritten blocks, that metadata stays in memory until the next fsync; the mapping of
the next O_DSYNC overwrite must then carry IOMAP_F_DIRTY, or the engine sends the data
FUA and skips the fsync (iomap_dio_bio_iter: use_fua), and the metadata that makes the
data reachable is lost in a crash, with the acknowledged data.

``dioconf check examples.broken_no_dirty:factory`` reports
``contract violation [dirty-missing]`` on a write past EOF over written blocks, on a
device that takes FUA; the oracle alone finds the i_size of an O_DSYNC write lost in a
crash.
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import F_DIRTY, Inode, Iomap

from .goodfs import GoodFs


class NoDirtyFs(GoodFs):
    name = "broken-no-dirty"

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = super().iomap_begin(inode, pos, length, flags)
        return m._replace(flags=m.flags - {F_DIRTY})  # the fault: DIRTY never set


def factory(device: Any) -> NoDirtyFs:
    return NoDirtyFs(device)
