"""The legacy engine's callback, ``get_block``, checked against its contract (a mixin of
`conformance.contract.Checked`, which has the filesystem as ``_fs``, the device as
``_device``, and the lookups ``_lookup`` and ``_dirty_bytes``)."""

from __future__ import annotations

from typing import Any

from ..impl.api import HOLE, MAPPED, UNWRITTEN, Inode
from ..impl.fs.getblock import BufferHead
from .contract_base import violation
from .contract_extent import extents, foreign


class GetBlockChecks:
    _fs: Any
    _device: Any
    _lookup: Any
    _dirty_bytes: Any

    def _get_block(self, inode: Inode, fs_block: int, b_size: int, create: bool) -> BufferHead:
        bs = self._fs.block_size
        pos = fs_block * bs
        size = inode.size
        before = self._lookup(inode, pos, b_size)
        bh = self._fs.get_block(inode, fs_block, b_size, create)
        call = (f"get_block(ino={inode.ino}, fs_block={fs_block}, b_size={b_size}, "
                f"create={int(create)})")  # fmt: skip
        if not isinstance(bh, BufferHead):
            raise violation("not-a-buffer-head", call, f"returned {bh!r}",
                            "get_block fills map_bh: return a BufferHead")  # fmt: skip
        got, rule, why = f"returned {bh}", "", ""
        addr, dev = bh.blocknr * bs, self._device.size
        if bh.size > b_size:
            rule, why = (
                "bh-too-long",
                (
                    f"b_size {bh.size} is more than the {b_size} bytes asked for: map_bh->b_size "
                    "comes in as the most to map (get_more_blocks)"
                ),
            )
        elif inode.size != size:
            got = f"moved i_size from {size} to {inode.size}"
            rule, why = "size-before-data", "the caller of __blockdev_direct_IO moves i_size"
        elif bh.mapped and (addr < 0 or addr + bh.size > dev):
            rule, why = "outside-device", f"[{addr}, {addr + bh.size}) is outside [0, {dev})"
        elif bh.mapped and not bh.new and (bad := self._past_extent(inode, pos, addr, bh.size)):
            rule, why = "bh-past-extent", bad
        elif bh.mapped and before is not None:
            hi = min(before.end, pos + bh.size)
            same = before.addr is not None and before.addr - before.offset == addr - pos
            if before.type == MAPPED and same and bh.new:
                rule, why = (
                    "new-over-data",
                    (
                        f"[{pos}, {hi}) already held the file's data on these blocks, and "
                        "buffer_new makes the engine zero what the request does not cover "
                        "(dio_zero_block)"
                    ),
                )
            elif before.type in (HOLE, UNWRITTEN) and not bh.new and (
                    self._dirty_bytes(addr, hi - pos)):  # fmt: skip
                was = "a hole" if before.type == HOLE else "unwritten"
                rule, why = (
                    "new-missing",
                    (
                        f"[{pos}, {hi}) was {was} and is now mapped over blocks holding stale "
                        "data without buffer_new, so the engine does not zero what the request "
                        "does not cover (dio_zero_block) and a read returns stale data: set "
                        "new=True on blocks allocated for the call"
                    ),
                )
        if rule:
            raise violation(rule, call, got, why)
        return bh

    def _past_extent(self, inode: Inode, pos: int, addr: int, size: int) -> str:
        """Why a mapped buffer of ``size`` bytes from ``pos`` at device ``addr`` is more
        than the file's contiguous run of written blocks there, or ""."""
        for p, hi, e in extents(self._fs, inode, pos, pos + size):
            other = foreign(e, p, addr - pos, (MAPPED,))
            if other:
                return (f"your extent map holds [{p}, {hi}) as {other}, but the buffer maps "
                        f"it to device address {addr + p - pos}: get_block maps at most the "
                        "contiguous run of the file's blocks from fs_block (b_size is the most "
                        "it may map, not what it must), or the engine reads and writes blocks "
                        "this file does not own")
        return ""
