"""Operations while an async direct request is in flight, as a real application has them.

While one request is left in flight (the harness's ``pending``), the next operations
may be anything a program can do in the meantime, with the kernel's own rules:

- buffered and direct reads, anywhere; fsync; mmap faults and unpins;
- direct, buffered and ``pwrite`` writes to other ranges and other files: not to the
  pages of the request in flight (concurrent writes to one range leave any mix, which no
  oracle can pin down), and not past the EOF of its file (i_size would move under it;
  the model keeps i_size per request for now: issue 13);
- other direct requests, synchronous only (one request in flight at a time);
- truncate, fallocate, punch and reflink first wait for the direct I/O in flight
  (``inode_dio_wait``: every bio completes, in order, with status 0).

The bios of the request in flight complete only when a ``complete`` operation says so
(or at an ``inode_dio_wait``): the race plans of the other requests pick among their
own bios. Until it completes, a write in flight may or may not have landed, sector by
sector: the oracle keeps both for its range (`widen`).
"""

from __future__ import annotations

from typing import Any

from .ops import (
    BufferedWrite,
    DirectRead,
    DirectWrite,
    Fallocate,
    FileWrite,
    MmapDirty,
    Op,
    Punch,
    Reflink,
    Truncate,
)

WAITS_FOR_DIO = (Truncate, Fallocate, Punch, Reflink)  # inode_dio_wait first
WRITES = (DirectWrite, FileWrite, BufferedWrite, MmapDirty)


def _span(op: Any, grain: int) -> tuple[int, int]:
    """The range ``op`` touches, rounded out to ``grain`` (blocks and pages)."""
    pos = op.pos
    end = pos + max(1, getattr(op, "length", 1))
    return pos - pos % grain, -(-end // grain) * grain


def conflict(h: Any, op: Op) -> str:
    """Why ``op`` may not run while ``h.pending`` is in flight, or "" (see the module)."""
    p = h.pending
    if p is None or not isinstance(op, (*WRITES, DirectRead)):
        return ""
    if isinstance(op, DirectWrite | DirectRead):
        if not op.sync:
            return "a second async request while one is in flight"
        if isinstance(op, DirectRead):
            return ""
    if op.file != p.op.file:
        return ""
    grain = max(h.block_size, h.page_size)
    a0, a1 = _span(op, grain)
    b0, b1 = _span(p.op, grain)
    if a0 < b1 and b0 < a1:
        return f"it writes the pages of request {p.req}, in flight"
    if not isinstance(op, MmapDirty) and op.pos + op.length > h.files[op.file].size:
        return f"it would move the i_size of file {op.file} under request {p.req}, in flight"
    return ""


def widen(h: Any) -> None:
    """A write in flight may or may not have landed, sector by sector: the oracle keeps
    both for its range (again after every operation, whose reads narrow it)."""
    p = h.pending
    if p is not None and isinstance(p.op, DirectWrite):
        op = p.op
        h.oracle = h.oracle.direct_write(p.ino, op.pos, op.length, op.wid, -1, durable=False)


def own_bios(h: Any, inflight: list[Any]) -> list[Any]:
    """The bios in flight that are not the pending request's (a race plan's to pick)."""
    p = h.pending
    if p is None or not p.bios:
        return inflight
    theirs = {id(b) for b in p.bios}  # (held in p.bios: no id is reused meanwhile)
    return [b for b in inflight if id(b) not in theirs]
