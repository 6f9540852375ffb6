"""Mappings checked against the filesystem's own extent map (a mixin of
`conformance.contract.Checked`, which has the filesystem as ``_fs`` and the lookup
``_dirty_bytes``): the same blocks and the same type as the map holds, so that a
mapping one block too long, or a preallocated extent reported as data, is named at the
call that returned it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..impl.api import F_NEW, HOLE, MAPPED, UNWRITTEN, Inode, Iomap


def extents(fs: Any, inode: Inode, pos: int, end: int) -> Iterator[tuple[int, int, Iomap]]:
    """The filesystem's extents over ``[pos, end)``: (from, to, extent), in order."""
    p = pos
    while p < end:
        e = fs.extent_at(inode, p, end - p)
        if not isinstance(e, Iomap) or e.end <= p:
            return  # not the contract's business here (snapshot reads complain)
        yield p, min(e.end, end), e
        p = min(e.end, end)


def foreign(e: Iomap, p: int, base: int, types: tuple[str, ...]) -> str:
    """Why extent ``e`` at ``p`` is not the run at device address ``base + offset`` of one
    of ``types`` (in words), or ""."""
    if e.type in types and e.addr is not None and e.addr - e.offset == base:
        return ""
    if e.type == HOLE or e.addr is None:
        return "a hole" if e.type == HOLE else e.type
    return f"{e.type} at device address {e.addr + p - e.offset}"


class ExtentChecks:
    _fs: Any
    _dirty_bytes: Any

    def _extent_agreement(self, inode: Inode, m: Iomap, pos: int,
                          write: bool) -> tuple[str, str]:  # fmt: skip
        """The mapping against the filesystem's own extent map after the call, from ``pos``
        to the mapping's end: the same blocks, the same type. Fresh blocks (IOMAP_F_NEW)
        may be staged outside the map (a COW fork) and are not compared."""
        if m.type not in (MAPPED, UNWRITTEN) or m.addr is None or F_NEW in m.flags:
            return "", ""
        base = m.addr - m.offset
        for p, hi, e in extents(self._fs, inode, pos, m.end):
            where = f"[{p}, {hi})"
            other = foreign(e, p, base, (MAPPED, UNWRITTEN) if p == pos else (m.type,))
            if other:
                owned = e.addr is not None and e.addr - e.offset == base
                harm = (f"a {e.type} extent of its own, which the engine would treat as "
                        f"{m.type}" if owned else
                        f"{other}, but the mapping sends it to device address {base + p}: "
                        f"the engine would {'write' if write else 'read'} blocks this file "
                        "does not own there")  # fmt: skip
                return "mapping-past-extent", (
                    f"the mapping runs past the extent at {pos}: your extent map holds "
                    f"{where} as {harm}; return the extent as your map has it (the engine "
                    "asks again for the rest)"
                )
            if e.type == UNWRITTEN and m.type == MAPPED and (
                    write or self._dirty_bytes(base + p, hi - p)):  # fmt: skip
                harm = ("the data written there is never converted (->end_io gets no "
                        "IOMAP_DIO_UNWRITTEN) and reads back as zeros" if write else
                        "a read returns whatever the blocks held before, not zeros")  # fmt: skip
                return "unwritten-mapped", (
                    f"your extent map holds {where} UNWRITTEN (preallocated, never written) "
                    f"but the mapping says MAPPED: {harm}; report UNWRITTEN (iomap_dio_iter: "
                    "unwritten extents read as zeros)"
                )
            if e.type == MAPPED and m.type == UNWRITTEN:
                return "mapping-type", (
                    f"your extent map holds {where} MAPPED (written data) but the mapping "
                    "says UNWRITTEN: a read returns zeros instead of the data"
                    + (", and ->end_io is asked to convert what is already written"
                       if write else "")
                )
        return "", ""
