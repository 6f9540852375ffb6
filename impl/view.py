"""What a World's file holds, read without side effects.

A read through the engine or the page cache would change what it observes (a direct read
writes dirty pages back, a buffered read fills the cache, both move request numbers and
the trace), so the adapters (``impl/file_backend.py``, ``impl/engine_backend.py``) look
at the World's state directly: cached pages where the page cache has them (what any read
returns first), else the filesystem's blocks read from the device as they are now
(completed writes included, durable or not), holes and unwritten blocks as zeros,
nothing past i_size.
"""

from __future__ import annotations

from typing import Any

from .api import MAPPED, Inode


def fs_bytes(fs: Any, device: Any, inode: Inode, start: int, end: int) -> bytes:
    """[start, end) from the filesystem's block map and the device (no page cache)."""
    out = bytearray(end - start)
    lbs = device.logical_block_size
    p = start
    while p < end:
        m = fs.extent_at(inode, p, end - p)
        n = min(m.offset + m.length, end) - p
        if n <= 0:
            raise RuntimeError(f"extent_at({p}) returned [{m.offset}, {m.offset + m.length})")
        if m.type == MAPPED and m.addr is not None:
            addr = m.addr + p - m.offset
            lo = addr - addr % lbs
            hi = -(-(addr + n) // lbs) * lbs
            out[p - start : p - start + n] = device.read(lo, hi - lo)[addr - lo : addr - lo + n]
        p += n
    return bytes(out)


def read_view(world: Any, inode: Inode, start: int, end: int) -> bytes:
    """What a read of ``[start, end)`` would return now (stops at i_size)."""
    end = min(end, inode.size)
    if start >= end:
        return b""
    pages = world.pc.pages(inode) if world.pc is not None else {}
    if not pages:
        return fs_bytes(world.fs, world.device, inode, start, end)
    ps = world.page_size
    out = bytearray()
    p = start
    while p < end:
        index, off = divmod(p, ps)
        n = min(ps - off, end - p)
        page = pages.get(index)
        if page is not None:
            out += page.data[off : off + n]
        else:  # up to the next cached page in one go
            stop = p + n
            while stop < end and (stop // ps) not in pages:
                stop = min(end, (stop // ps + 1) * ps)
            out += fs_bytes(world.fs, world.device, inode, p, stop)
            n = stop - p
        p += n
    return bytes(out)


def data_ranges(world: Any, inode: Inode, start: int, end: int) -> list[tuple[int, int]]:
    """Where in ``[start, end)`` the World may hold anything but zeros: its allocated
    blocks and its cached pages (sparse: never walks holes)."""
    out: list[tuple[int, int]] = []
    bs = world.fs.block_size
    blocks = block_map(world, inode)
    first, last = start // bs, -(-end // bs)
    if last - first <= 4 * len(blocks):
        keys = [b for b in range(first, last) if b in blocks]
    else:
        keys = sorted(b for b in blocks if first <= b < last)
    out += [(b * bs, (b + 1) * bs) for b in keys]
    if world.pc is not None:
        ps = world.page_size
        out += [(i * ps, (i + 1) * ps) for i in world.pc.pages(inode) if start < (i + 1) * ps
                and i * ps < end]  # fmt: skip
    return [(max(s, start), min(e, end)) for s, e in out]


def block_map(world: Any, inode: Inode) -> Any:
    """The file's block map (file block -> device block); empty for a filesystem of
    callbacks that keeps none."""
    return getattr(world.fs.file(inode), "blocks", {})
