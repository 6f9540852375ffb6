"""A small filesystem done right for the legacy engine (``get_block``), ext2-like.

``get_block`` maps runs of blocks; with ``create`` it allocates the holes and reports
them ``new``, so the engine zeroes what the request does not write of them
(dio_zero_block). ``dio_flags`` asks, as ext2 does, for no allocation inside i_size
(SKIP_HOLES: the write stops short there and would fall back to buffered I/O), and
``write_failed`` frees what a failed write allocated past i_size (ext2_write_failed),
so a failed write never leaves blocks of stale data in the file.

    dioconf check examples.goodfs_legacy:factory      # exits 0, on the legacy engine
"""

from __future__ import annotations

from typing import Any

from dioconf.fsapi import MAPPED, UNWRITTEN, BlockFs, BufferHead, Inode


class GoodLegacyFs(BlockFs):
    name = "goodfs-legacy"
    dio_flags = frozenset({"LOCKING", "SKIP_HOLES"})

    def get_block(self, inode: Inode, fs_block: int, b_size: int, create: bool) -> BufferHead:
        bs = self.block_size
        pos = fs_block * bs
        m = self.lookup(inode, pos, b_size)
        n = min(m.end - pos, b_size)
        if m.type == MAPPED:
            return BufferHead(True, m.addr // bs, n)
        if not create:
            return BufferHead(False, size=n)  # a hole (unwritten blocks read as one)
        if m.type == UNWRITTEN:  # no unwritten extents here: they become plain new blocks
            self.convert_unwritten(inode, pos, n)
            return BufferHead(True, m.addr // bs, n, new=True)
        fresh = self.allocate(inode, pos, n, unwritten=False)
        return BufferHead(True, fresh.addr // bs, fresh.length, new=True)

    def write_failed(self, inode: Inode, to: int) -> None:
        if to > inode.size:
            self.truncate(inode, inode.size)  # frees the blocks past i_size


def factory(device: Any) -> GoodLegacyFs:
    return GoodLegacyFs(device)
