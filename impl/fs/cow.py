"""Copy-on-write reference filesystems.

``ReflinkFs`` (xfs-like reflink): ``reflink`` shares blocks between files. A direct
write over shared blocks gets new blocks staged in a COW fork and a mapping flagged
IOMAP_F_SHARED; ``end_io`` (IOMAP_DIO_COW) remaps the file onto them and releases the
old ones. A sub-block write over shared blocks falls back to buffered I/O (-ENOTBLK),
as xfs does for unaligned COW writes.

``BtrfsLikeFs`` (after btrfs-direct-io.c): every write goes to new blocks (always
COW); misaligned direct I/O and compressed or inline extents fall back to buffered
I/O (-ENOTBLK; -EAGAIN under NOWAIT); ``submit_io`` counts the bytes submitted and
``iomap_end`` returns -ENOTBLK when a mapping was not fully submitted
(btrfs_dio_iomap_end).
"""

from __future__ import annotations

from typing import Any

from ..api import (
    EAGAIN,
    EFAULT,
    ENOTBLK,
    F_NEW,
    F_SHARED,
    HOLE,
    MAPPED,
    UNWRITTEN,
    Bio,
    DioError,
    Inode,
    Iomap,
)
from .base import SHARED, WRITTEN, ExtentFs


class ReflinkFs(ExtentFs):
    name = "reflink"
    short_write_fallback = False  # xfs_file_dio_write: only -ENOTBLK falls back

    def __init__(self, device: object, block_size: int = 4096, first_block: int = 16) -> None:
        super().__init__(device, block_size, first_block)
        self.cow_fork: dict[tuple[int, int], int] = {}  # (ino, file blk) -> staged dev blk

    def reflink(self, src: Inode, dst: Inode) -> None:
        """dst becomes a copy of src that shares its blocks."""
        s, d = self.file(src), self.file(dst)
        for blk in list(d.blocks):
            self._release(d.blocks.pop(blk)[0])
        for blk, (dev, state) in list(s.blocks.items()):
            if state not in (WRITTEN, SHARED):
                continue  # unwritten: reads as zeros, as a hole in dst does; not shared
            s.blocks[blk] = (dev, SHARED)
            d.blocks[blk] = (dev, SHARED)
            self.meta.refs[dev] = self.meta.refs.get(dev, 1) + 1
        d.size = dst.size = src.size

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m = self.extent_at(inode, pos, length)
        if "WRITE" not in flags:
            return m
        self.nowait_must_span(m, pos, length, flags)  # xfs's rule (ExtentFs)
        bs = self.block_size
        if "OVERWRITE_ONLY" in flags and (F_SHARED in m.flags or (
                m.type == UNWRITTEN and (pos | length) & (bs - 1))):  # fmt: skip
            # xfs_direct_write_iomap_begin: no COW and no unaligned unwritten write for a
            # pure overwrite (-EAGAIN: the caller retries with the lock held exclusive)
            raise DioError(EAGAIN, "not a pure overwrite")
        if m.type == HOLE:
            return self.allocate_for_dio(inode, pos, m.end - pos, flags)
        if F_SHARED not in m.flags:
            return self.write_mapping(inode, m)
        if (pos | length) & (bs - 1):
            raise DioError(ENOTBLK, "unaligned write over shared blocks: buffered fallback")
        if "NOWAIT" in flags:
            raise DioError(EAGAIN, "copy on write needs allocation")
        first = pos // bs
        staged = self._stage(inode, first, min(m.end, pos + length) // bs - first)
        return Iomap(first * bs, len(staged) * bs, MAPPED, frozenset({F_SHARED, F_NEW}),
                     staged[0] * bs)  # fmt: skip

    def _stage(self, inode: Inode, first: int, count: int) -> list[int]:
        """New, contiguous device blocks for file blocks from ``first`` (as many of
        ``count`` as come contiguous), held in the COW fork until end_io."""
        staged: list[int] = []
        for _ in range(count):
            dev = self._alloc()
            if staged and dev != staged[0] + len(staged):
                self._release(dev)
                break
            staged.append(dev)
        for i, dev in enumerate(staged):
            self.cow_fork[(inode.ino, first + i)] = dev
        return staged

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        if "WRITE" in flags and "COW" in flags:
            # alone: no other direct-I/O request of the inode in flight (a writeback is
            # not one of them; a direct request counts itself)
            alone = self.dio_active.get(inode.ino, 0) <= (0 if "WRITEBACK" in flags else 1)
            self._remap(inode, pos, size if not error else 0, alone)
        self.write_done(inode, pos, size, error, flags)
        return error

    def _remap(self, inode: Inode, pos: int, size: int, alone: bool = True) -> None:
        """Move the written part of the COW fork into the file; cancel the rest, once no
        other direct-I/O request of the inode is in flight (its staged blocks are in the
        fork too: xfs_reflink_cancel_cow_range cancels the request's own range only)."""
        f = self.file(inode)
        bs = self.block_size
        # every block the written bytes touch (writeback passes a size clipped to i_size)
        done = range(pos // bs, -(-(pos + size) // bs)) if size else range(0)
        for key in [k for k in self.cow_fork if k[0] == inode.ino]:
            blk = key[1]
            if blk not in done and not alone:
                continue
            dev = self.cow_fork.pop(key)
            if blk in done:
                old = f.blocks.get(blk)
                f.blocks[blk] = (dev, WRITTEN)
                if old is not None:
                    self._release(old[0])
            else:
                self._release(dev)
        self._unshare_singles()

    def _unshare_singles(self) -> None:
        """Blocks one file alone owns stop being shared: in core and in the last commit
        too. While the commit still shares a block, a write to it copies on write: an
        in-place overwrite would land in the other file's block once a crash brings the
        commit back (the refcount decrement is not durable yet)."""
        owners = self._committed_owners()
        for ino, f in self.meta.files.items():
            for blk, (dev, state) in list(f.blocks.items()):
                if (state == SHARED and self.meta.refs.get(dev, 1) <= 1
                        and owners.get(dev, {ino}) <= {ino}):  # fmt: skip
                    f.blocks[blk] = (dev, WRITTEN)

    def _committed_owners(self) -> dict[int, set[int]]:
        """Device block -> the files the last commit gives it (computed once per commit:
        ``durable`` is replaced, never changed in place, at each one)."""
        memo = getattr(self, "_owners_memo", None)
        if memo is None or memo[0] is not self.durable:
            owners: dict[int, set[int]] = {}
            for ino, d in self.durable.files.items():
                for dev, _ in d.blocks.values():
                    owners.setdefault(dev, set()).add(ino)
            memo = self._owners_memo = (self.durable, owners)
        return memo[1]

    def fsync(self, inode: Inode | None = None, pos: int = 0, length: int = 0) -> int:
        ret = super().fsync(inode, pos, length)
        self._unshare_singles()  # the commit made the remaps and decrements durable
        return ret

    def crash(self) -> None:
        self.cow_fork.clear()
        super().crash()


class BtrfsLikeFs(ReflinkFs):
    name = "btrfs-like"
    profile = "seed-btrfs"  # traces replay with the btrfs glue (btrfs_dio_iomap_end)

    def __init__(self, device: object, block_size: int = 4096, first_block: int = 16) -> None:
        super().__init__(device, block_size, first_block)
        self.special: dict[tuple[int, int], str] = {}  # (ino, blk) -> "compressed"/"inline"
        self.submitted: dict[int, int] = {}  # ino -> bytes submitted (dio_data->submitted)

    def mark(self, inode: Inode, pos: int, length: int, kind: str) -> None:
        """Make [pos, pos+length) a compressed or inline extent (direct I/O falls back)."""
        for blk in self._blocks(pos, length):
            self.special[(inode.ino, blk)] = kind

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        bs = self.block_size
        if (inode.ino, pos // bs) in self.special:
            # btrfs_dio_iomap_begin: the extent at pos is compressed/inline: not for dio
            raise DioError(EAGAIN if "NOWAIT" in flags else ENOTBLK, "compressed/inline extent")
        # the mapping ends where a compressed/inline extent begins
        want = pos + length
        stop = next(
            (b * bs for b in self._blocks(pos, length) if (inode.ino, b) in self.special),
            pos + length,
        )
        length = stop - pos
        if "WRITE" not in flags:
            m = self.extent_at(inode, pos, length)
            if "NOWAIT" in flags and m.end < want:
                # btrfs_dio_iomap_begin: NOWAIT over several extents -> -EAGAIN, no
                # partial I/O ("(flags & IOMAP_NOWAIT) && len < length")
                raise DioError(EAGAIN, "NOWAIT read over several extents")
            return m
        if (pos | length) & (bs - 1):
            raise DioError(ENOTBLK, "misaligned: check_direct_IO sends it to buffered I/O")
        if "NOWAIT" in flags or "OVERWRITE_ONLY" in flags:
            raise DioError(EAGAIN, "a COW write allocates")
        # always COW: new blocks for the whole range, remapped at completion
        f = self.file(inode)
        first = pos // bs
        staged = self._stage(inode, first, (pos + length) // bs - first)
        shared = any(f.blocks.get(first + i) is not None for i in range(len(staged)))
        flags_out = frozenset({F_NEW} | ({F_SHARED} if shared else set()))
        return Iomap(first * bs, len(staged) * bs, MAPPED, flags_out, staged[0] * bs)

    def direct_write(self, world: Any, inode: Inode, pos: int, data: bytes,
                     flags: frozenset[str], fault_at: int | None,
                     inaccessible: bool = False) -> int:  # fmt: skip
        """btrfs_direct_write: direct I/O with a no-fault iterator, retried after
        faulting the pages in while it makes progress (done_before is cumulative), the
        rest through buffered I/O; NOWAIT never falls back. An ``inaccessible`` buffer
        (PROT_NONE) cannot be faulted in: the retry meets the fault again."""
        written, prev_left, fault = 0, 0, fault_at
        page = world.page_size
        while True:
            r = world.pwrite(inode, pos + written, data[written:], flags=flags,
                             dio={"PARTIAL"}, fault_at=fault, done_before=written)  # fmt: skip
            ret = r.ret
            if ret > 0:
                written = ret  # iomap returns a cumulative value
            left = len(data) - written
            if left > 0 and (ret == EFAULT or ret > 0):
                if left == prev_left:
                    ret = ENOTBLK
                else:  # fault_in_iov_iter_readable (its failure is ignored)
                    if fault_at is None or not inaccessible:
                        fault = None
                    else:  # the retry's buffer starts at ``written``
                        fault = max(0, fault_at - written) // page * page
                    prev_left = left
                    continue
            break
        if (ret < 0 and ret != ENOTBLK) or left == 0:
            return ret if ret < 0 else written
        stop = fault_at - written if inaccessible and fault_at is not None else None
        n = world.buffered_fallback(inode, pos + written, data[written:], flags, fault_at=stop)
        return n if n < 0 else written + n  # btrfs_direct_write: "err < 0 ? err : written"

    def dio_start(self, inode: Inode) -> None:
        """A request begins (btrfs_dio_read/write: a fresh struct btrfs_dio_data)."""
        super().dio_start(inode)
        self.submitted[inode.ino] = 0

    def submit_io(self, inode: Inode, bio: Bio, pos: int, sched: object) -> None:
        self.submitted[inode.ino] = self.submitted.get(inode.ino, 0) + bio.length
        sched.submit(bio)  # type: ignore[attr-defined]

    def iomap_end(self, inode: Inode, pos: int, length: int, written: int,
                  flags: frozenset[str], iomap: Iomap) -> int:  # fmt: skip
        if "DIRECT" not in flags:
            return 0  # btrfs_dio_iomap_end belongs to the direct-I/O iomap_ops only
        if "WRITE" not in flags and iomap.type == HOLE:
            return 0
        if self.submitted.get(inode.ino, 0) < length:
            return ENOTBLK
        return 0

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        self.submitted.pop(inode.ino, None)
        if "WRITE" in flags:
            flags = flags | {"COW"}  # every btrfs write is a COW remap
        return super().end_io(inode, pos, size, error, flags)
