"""Shared machinery of the reference filesystems: a block map per inode, an allocator,
and metadata that survives a crash only once it was synced.

Metadata here means: which device block backs each file block and in what state
(written, unwritten, shared), and i_size. Every change goes to the in-memory copy;
``fsync`` (or any commit) flushes the device and then makes a copy of it durable.
``crash`` brings back the durable copy, as journal replay would.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from ..api import (
    EAGAIN,
    ENOSPC,
    F_DIRTY,
    F_NEW,
    F_SHARED,
    HOLE,
    MAPPED,
    UNWRITTEN,
    DioError,
    Inode,
    Iomap,
)

WRITTEN, PREALLOC, SHARED = "written", "unwritten", "shared"
_SHARED, _NONE = frozenset({F_SHARED}), frozenset[str]()


class BlockMap(dict[int, tuple[int, str]]):
    """file block -> (device block, state); counts its changes, so that a cached
    extent lookup knows when it is stale."""

    version = 0

    def __setitem__(self, key: int, value: tuple[int, str]) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: int) -> None:
        self.version += 1
        super().__delitem__(key)

    def pop(self, key: int, *default: tuple[int, str]) -> tuple[int, str]:  # type: ignore[override]
        self.version += 1
        return super().pop(key, *default)

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def copy(self) -> BlockMap:  # type: ignore[override]
        """An equal map with the same version (a committed or restored copy)."""
        c = BlockMap(self)
        c.version = self.version
        return c


RUN_WALK = 4096  # blocks an extent lookup walks at most (amortises, bounds the cost)


@dataclass
class FileMeta:
    size: int = 0
    blocks: BlockMap = field(default_factory=BlockMap)
    # runs found since the block map last changed, sorted by start:
    # (first blk, end blk, dev of first or None, state); valid for ``runs_version``
    runs: list[tuple[int, int, int | None, str]] = field(default_factory=list)
    runs_version: int = -1
    last: tuple[int, int, Iomap] | None = None  # (first blk, last blk, mapping) of the last lookup


@dataclass
class Meta:
    files: dict[int, FileMeta] = field(default_factory=dict)
    free: list[int] = field(default_factory=list)  # freed device blocks, reused first
    # freed since the last commit: not reusable before the free is durable, or a crash
    # would give the old owner back a block that now holds someone else's data (xfs's
    # busy extents)
    busy: list[int] = field(default_factory=list)
    next_block: int = 0  # bump allocator
    refs: dict[int, int] = field(default_factory=dict)  # dev blk -> owners (reflink)


class ExtentFs:
    """A filesystem over a device: block map, allocation, durability of metadata."""

    name = "extent"

    def __init__(self, device: object, block_size: int = 4096, first_block: int = 16) -> None:
        self.device = device
        self.block_size = block_size
        self.meta = Meta(next_block=first_block)
        self.durable = Meta(next_block=first_block)
        self.inodes: dict[int, Inode] = {}
        # blocks a write allocated past EOF as written (ext4: MAPPED|NEW, the inode on
        # the orphan list): what the write did not bring inside i_size is freed at its
        # completion (ext4_truncate_failed_write), so no stale block stays in the file
        self.fresh: dict[int, set[int]] = {}
        self.dio_active: dict[int, int] = {}  # direct-I/O requests in flight, per inode
        self.durable_orphans: dict[int, set[int]] = {}  # `fresh` as the last commit saw it
        self.capacity = device.size // block_size  # type: ignore[attr-defined]

    # -- files --------------------------------------------------------------------

    def create(self) -> Inode:
        ino = max(self.meta.files, default=0) + 1
        self.meta.files[ino] = FileMeta()
        self.inodes[ino] = Inode(ino)
        return self.inodes[ino]

    def file(self, inode: Inode) -> FileMeta:
        try:
            return self.meta.files[inode.ino]
        except KeyError:
            raise LookupError(
                f"inode {inode.ino}: no such file (one created after the last commit does "
                "not survive a crash: fsync after creating it)"
            ) from None

    def sync_size(self, inode: Inode) -> None:
        """Keep the metadata's i_size equal to the inode's (after the engine moved it)."""
        self.file(inode).size = inode.size

    def truncate(self, inode: Inode, size: int) -> None:
        f = self.file(inode)
        bs = self.block_size
        for blk in [b for b in f.blocks if b * bs >= size]:
            self._release(f.blocks.pop(blk)[0])
        f.size = inode.size = size

    def fallocate(self, inode: Inode, pos: int, length: int, keep_size: bool = False) -> None:
        f = self.file(inode)
        for blk in self._blocks(pos, length):
            if blk not in f.blocks:
                f.blocks[blk] = (self._alloc(), PREALLOC)
        if not keep_size and pos + length > inode.size:
            f.size = inode.size = pos + length

    def punch(self, inode: Inode, pos: int, length: int) -> None:
        f = self.file(inode)
        for blk in self._blocks(pos, length):
            if blk in f.blocks:
                self._release(f.blocks.pop(blk)[0])

    def fsync(self, inode: Inode | None = None, pos: int = 0, length: int = 0) -> int:
        """Data and metadata made durable: flush the device, then commit. The committed
        i_size of a file is its metadata's, which only moves once the data below it is
        written (`extend`, truncate, fallocate): an in-core i_size a buffered write grew is
        committed once writeback has written that data (xfs_setfilesize at ioend), never
        before, or a commit forced by another file would expose stale blocks."""
        self.device.flush()  # type: ignore[attr-defined]
        m = self.meta
        m.free.extend(m.busy)  # the frees are part of this commit: reusable from now on
        m.busy.clear()
        self.durable = self._commit(m, self.durable)
        # inodes with blocks allocated past EOF by direct writes in flight are on the
        # orphan list in this commit (ext4_dio_write_iter: ext4_orphan_add)
        self.durable_orphans = {ino: set(b) for ino, b in self.fresh.items() if b}
        return 0

    @staticmethod
    def _commit(m: Meta, old: Meta) -> Meta:
        """A copy of ``m`` sharing nothing mutable with it; a file unchanged since ``old``
        (same block-map version and size) keeps its committed copy."""
        files = {}
        for ino, f in m.files.items():
            d = old.files.get(ino)
            if d is None or d.blocks.version != f.blocks.version or d.size != f.size:
                d = FileMeta(f.size, f.blocks.copy())
            files[ino] = d
        return Meta(files, list(m.free), list(m.busy), m.next_block, dict(m.refs))

    def crash(self) -> None:
        """After a power failure: the device keeps what was durable, and so does the
        metadata (journal replay)."""
        self.device.crash()  # type: ignore[attr-defined]
        self.fresh.clear()
        self.dio_active.clear()
        d = self.durable
        self.meta = Meta({ino: FileMeta(f.size, f.blocks.copy()) for ino, f in d.files.items()},
                         list(d.free), list(d.busy), d.next_block, dict(d.refs))  # fmt: skip
        self._orphan_cleanup()
        for ino, f in self.meta.files.items():
            self.inodes.setdefault(ino, Inode(ino)).size = f.size
        for ino in [i for i in self.inodes if i not in self.meta.files]:
            del self.inodes[ino]

    def _orphan_cleanup(self) -> None:
        """At mount after a crash: the blocks past i_size of an orphan inode are freed
        (ext4_orphan_cleanup truncates it to i_size), so blocks a direct write allocated
        past EOF, committed by another file's fsync before the write completed, never
        show their stale contents inside a later EOF."""
        bs = self.block_size
        freed = False
        for ino, blocks in self.durable_orphans.items():
            f = self.meta.files.get(ino)
            if f is None:
                continue
            eof = -(-f.size // bs)
            for blk in sorted(blocks):
                if blk >= eof and blk in f.blocks:
                    dev = f.blocks.pop(blk)[0]
                    self.meta.refs.pop(dev, None)
                    self.meta.free.append(dev)
                    freed = True
        self.durable_orphans = {}
        if freed:  # the mount's own transaction: committed, a second crash keeps it
            self.durable = self._commit(self.meta, self.durable)

    # -- allocation -----------------------------------------------------------------

    def _blocks(self, pos: int, length: int) -> range:
        bs = self.block_size
        return range(pos // bs, (pos + length + bs - 1) // bs)

    def _alloc(self) -> int:
        m = self.meta
        if m.free:
            blk = m.free.pop()
        elif m.next_block < self.capacity:
            blk = m.next_block
            m.next_block += 1
        else:
            raise DioError(ENOSPC, "device full")
        m.refs[blk] = 1
        return blk

    def _release(self, blk: int) -> None:
        refs = self.meta.refs
        refs[blk] = refs.get(blk, 1) - 1
        if refs[blk] <= 0:
            del refs[blk]
            self.meta.busy.append(blk)

    # -- iomap --------------------------------------------------------------------

    def extent_at(self, inode: Inode, pos: int, length: int) -> Iomap:
        """The longest run from ``pos`` (within the request) of one state and contiguous
        device blocks. The run found is cached until the block map changes."""
        f = self.file(inode)
        blocks = f.blocks
        bs = self.block_size
        first = pos // bs
        last = (pos + length - 1) // bs
        if f.runs_version != blocks.version:
            f.runs.clear()
            f.runs_version = blocks.version
            f.last = None
        elif f.last is not None and f.last[0] == first and f.last[1] == last:
            return f.last[2]  # the same blocks asked again (overwrites of one range)
        i = bisect.bisect_right(f.runs, (first, 1 << 64)) - 1
        if i >= 0 and f.runs[i][0] <= first < f.runs[i][1]:
            run = f.runs[i]
        else:
            run = self._walk(blocks, first, last)
            f.runs.insert(i + 1, run)
        start, end_blk, dev, state = run
        end_blk = min(end_blk, last + 1)
        offset, end = first * bs, end_blk * bs
        if dev is None:
            m = Iomap(offset, end - offset, HOLE)
        else:
            typ = UNWRITTEN if state == PREALLOC else MAPPED
            flags = _SHARED if state == SHARED else _NONE
            m = Iomap(offset, end - offset, typ, flags, (dev + first - start) * bs)
        f.last = (first, last, m)
        return m

    @staticmethod
    def _walk(blocks: BlockMap, first: int, last: int) -> tuple[int, int, int | None, str]:
        get = blocks.get
        cur = get(first)
        limit = max(last + 1, first + RUN_WALK)
        blk = first + 1
        if cur is None:
            if len(blocks) < limit - first:  # sparse: the next allocated block, not a walk
                blk = min((b for b in blocks if b > first), default=limit)
                return (first, min(blk, limit), None, "")
            while blk < limit and get(blk) is None:
                blk += 1
            return (first, blk, None, "")
        dev, state = cur
        delta = dev - first  # a contiguous run has dev == blk + delta
        while blk < limit and get(blk) == (blk + delta, state):
            blk += 1
        return (first, blk, dev, state)

    def allocate_for_write(self, inode: Inode, pos: int, length: int, flags: frozenset[str],
                           state: str) -> Iomap:  # fmt: skip
        """Allocate the holes of [pos, pos+length) in ``state``; the mapping is NEW."""
        if "NOWAIT" in flags or "OVERWRITE_ONLY" in flags:
            raise DioError(EAGAIN, "allocation needed")
        f = self.file(inode)
        bs = self.block_size
        first = pos // bs
        blk = first
        last = (pos + length - 1) // bs
        start_dev = None
        while blk <= last and blk not in f.blocks:
            dev = self._alloc()
            if start_dev is not None and dev != start_dev + (blk - first):
                self._release(dev)  # not contiguous: stop the extent here
                break
            start_dev = dev if start_dev is None else start_dev
            f.blocks[blk] = (dev, state)
            blk += 1
        assert start_dev is not None
        typ = UNWRITTEN if state == PREALLOC else MAPPED
        return Iomap(first * bs, (blk - first) * bs, typ, frozenset({F_NEW}), start_dev * bs)

    def nowait_must_span(self, m: Iomap, pos: int, length: int, flags: frozenset[str]) -> None:
        """NOWAIT and OVERWRITE_ONLY writes need one mapping that spans the whole request,
        else -EAGAIN before any I/O (xfs_direct_write_iomap_begin: ``imap_spans_range``,
        883a790a8440 "xfs: don't allow NOWAIT DIO across extent boundaries")."""
        if ("NOWAIT" in flags or "OVERWRITE_ONLY" in flags) and m.end < pos + length:
            raise DioError(EAGAIN, "NOWAIT/OVERWRITE_ONLY write over several extents")

    def meta_dirty(self, inode: Inode) -> bool:
        """The file's metadata (its block map or i_size) changed since the last commit."""
        d = self.durable.files.get(inode.ino)
        f = self.file(inode)
        return d is None or d.blocks.version != f.blocks.version or d.size != inode.size

    def write_mapping(self, inode: Inode, m: Iomap) -> Iomap:
        """A mapping for a write: IOMAP_F_DIRTY when the metadata needed to reach the data
        is not committed yet, or when the mapping spans EOF (the write may move i_size at
        completion), so that O_DSYNC does not take FUA for enough: the completion's sync
        must commit it (ext4_set_iomap: ``ext4_inode_datasync_dirty(inode) || offset +
        length > i_size_read(inode)``)."""
        if m.type in (MAPPED, UNWRITTEN) and F_NEW not in m.flags and (
                m.offset + m.length > inode.size or self.meta_dirty(inode)):  # fmt: skip
            return m._replace(flags=m.flags | {F_DIRTY})
        return m

    def allocate_for_dio(self, inode: Inode, pos: int, length: int,
                         flags: frozenset[str]) -> Iomap:  # fmt: skip
        """Blocks for a direct write into a hole, as ext4_iomap_alloc does: unwritten
        inside i_size (converted at completion for what was written, so a failed write
        leaves zeros), written past EOF (freed at completion unless i_size covers them)."""
        bs = self.block_size
        eof = -(-inode.size // bs) * bs
        if pos < eof:
            return self.allocate_for_write(inode, pos, min(length, eof - pos), flags, PREALLOC)
        m = self.allocate_for_write(inode, pos, length, flags, WRITTEN)
        self.fresh.setdefault(inode.ino, set()).update(
            range(m.offset // bs, (m.offset + m.length) // bs))
        return m

    def write_done(self, inode: Inode, pos: int, size: int, error: int,
                   flags: frozenset[str]) -> None:  # fmt: skip
        """What ->end_io does for the data written (xfs_dio_write_end_io): writes only,
        nothing on error or for no bytes: convert what was unwritten, move i_size; then,
        for a direct-I/O request (not a writeback), `dio_done`."""
        if "WRITE" in flags and not error and size:
            if "UNWRITTEN" in flags:
                self.convert(inode, pos, size)
            self.extend(inode, pos, size)
        if "WRITEBACK" not in flags:  # a direct-I/O request's completion
            self.dio_done(inode)

    def dio_start(self, inode: Inode) -> None:
        """A direct-I/O request begins (iomap_dio_rw calls it before the first mapping)."""
        self.dio_active[inode.ino] = self.dio_active.get(inode.ino, 0) + 1

    def dio_done(self, inode: Inode) -> None:
        """A direct-I/O request completed (from ->end_io): once none is in flight, the
        blocks allocated past EOF that i_size does not cover are freed. Waiting for the
        inode to be quiet stands for ext4's exclusive lock around extending writes."""
        n = self.dio_active.get(inode.ino, 1) - 1
        if n > 0:
            self.dio_active[inode.ino] = n
            return
        self.dio_active.pop(inode.ino, None)
        self.trim_fresh(inode)

    def trim_fresh(self, inode: Inode) -> None:
        """Blocks allocated past EOF by direct writes that i_size does not cover now are
        freed (ext4_truncate_failed_write)."""
        blocks = self.fresh.pop(inode.ino, None)
        if not blocks:
            return
        bs = self.block_size
        eof = -(-inode.size // bs)
        f = self.file(inode)
        for blk in sorted(blocks):
            if blk >= eof and blk in f.blocks:
                self._release(f.blocks.pop(blk)[0])

    def convert(self, inode: Inode, pos: int, size: int) -> None:
        """Unwritten blocks of [pos, pos+size) become written."""
        f = self.file(inode)
        for blk in self._blocks(pos, size):
            if blk in f.blocks and f.blocks[blk][1] == PREALLOC:
                f.blocks[blk] = (f.blocks[blk][0], WRITTEN)

    def extend(self, inode: Inode, pos: int, size: int) -> None:
        """Data was written at ``[pos, pos + size)``: i_size covers it, in core and in the
        metadata (a writeback of data a buffered write put past the old on-disk size)."""
        end = pos + size
        if end > inode.size:
            inode.size = end
        f = self.file(inode)
        if end > f.size:
            f.size = min(end, inode.size)
