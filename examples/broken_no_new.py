"""Broken: forgets IOMAP_F_NEW on blocks it just allocated.

A direct write into a hole gets freshly allocated *written* blocks, but the mapping
lacks IOMAP_F_NEW. The engine then treats them as an overwrite: it does not zero the
parts of each block the write does not cover (iomap_dio_bio_iter: need_zeroout), so a
sub-block write leaves whatever the device held there, readable as file data.

``dioconf check examples.broken_no_new:factory`` reports
``contract violation [new-missing]`` on the first write into a hole.
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import F_NEW, HOLE, Inode, Iomap

from .goodfs import GoodFs


class NoNewFs(GoodFs):
    name = "broken-no-new"

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.lookup(inode, pos, length)
        if "WRITE" in flags and m.type == HOLE and "NOWAIT" not in flags:
            fresh = self.allocate(inode, pos, m.end - pos, unwritten=False)
            return fresh._replace(flags=fresh.flags - {F_NEW})  # the fault: NEW dropped
        return super().iomap_begin(inode, pos, length, flags)


def factory(device: Any) -> NoNewFs:
    return NoNewFs(device)
