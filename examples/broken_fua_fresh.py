"""Broken: maps blocks it just allocated as a plain, FUA-able MAPPED overwrite.

A direct write into a hole gets written blocks which the filesystem zeroes itself, so
it sees no need for IOMAP_F_NEW, and it does not flag the uncommitted allocation with
IOMAP_F_DIRTY either. To the engine that is a pure overwrite: an O_DSYNC write on a
device with FUA (or without a write cache) goes out as a FUA bio and completes with no
fsync (iomap_dio_bio_iter: use_fua), so the allocation is never committed. The write
is acknowledged as durable, and a crash takes it away.

``dioconf check examples.broken_fua_fresh:factory`` reports
``contract violation [new-missing]`` ("allocated by this call and the mapping has none
of IOMAP_F_NEW, SHARED, DIRTY") on the first write into a hole on a device that takes
FUA; without the contract check, the oracle finds the O_DSYNC write (or the i_size it
set) gone after a crash.
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import F_NEW, HOLE, Inode, Iomap

from .goodfs import GoodFs


class FuaFreshFs(GoodFs):
    name = "broken-fua-fresh"

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.lookup(inode, pos, length)
        if "WRITE" in flags and m.type == HOLE and "NOWAIT" not in flags:
            fresh = self.allocate(inode, pos, m.end - pos, unwritten=False)
            assert fresh.addr is not None
            self.device.write(fresh.addr, bytes(fresh.length))  # zeroed: nothing stale
            return fresh._replace(flags=fresh.flags - {F_NEW})  # the fault: no NEW, no DIRTY
        return super().iomap_begin(inode, pos, length, flags)


def factory(device: Any) -> FuaFreshFs:
    return FuaFreshFs(device)
