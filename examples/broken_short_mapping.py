"""Broken: returns a mapping that does not cover the position asked for.

The lookup rounds ``pos`` *up* to a block boundary instead of down, so a request that
starts inside a block gets the mapping of the next block. iomap_iter uses a mapping
from ``pos`` on (iomap_iter_done warns when ``offset > pos``): the data would land on
the wrong blocks.

``dioconf check examples.broken_short_mapping:factory`` reports
``contract violation [not-covering]`` on the first request that starts inside a block.
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import Inode, Iomap

from .goodfs import GoodFs


class ShortMappingFs(GoodFs):
    name = "broken-short-mapping"

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        bs = self.block_size
        start = -(-pos // bs) * bs  # the fault: rounds up (pos // bs * bs is right)
        return super().iomap_begin(inode, start, max(pos + length - start, 1), flags)


def factory(device: Any) -> ShortMappingFs:
    return ShortMappingFs(device)
