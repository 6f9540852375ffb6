"""The callback contract, checked call by call.

`checked(factory)` wraps a filesystem factory (device -> filesystem) so that every
callback the engines and the page cache call is validated as it returns: ``iomap_begin``,
``iomap_end``, ``end_io`` and ``submit_io`` (the iomap engine, fs/iomap/direct-io.c) and
``get_block`` (the legacy engine, fs/direct-io.c). A violation raises `ContractError`,
whose message names the rule (``[new-missing]``...), the callback, the call with its
arguments, what the callback returned and why that is wrong, citing the seed code that
relies on the rule; the conformance harness reports it as a failure of kind
``contract``.

Only what is wrong for every filesystem is flagged. Where a verdict depends on what the
blocks hold (a mapping without IOMAP_F_NEW over blocks the call just allocated is fine
when the filesystem zeroed them itself), the device is read: the rule is broken only
when the blocks hold something other than zeros, which a read could then expose. The
rest of what a filesystem can get wrong (data lost after a crash, stale data after a
failed write, a wrong i_size) is the oracle's to find: the checks here only make the
usual mistakes fail at the call that makes them, with a message that names it.

Rule ids, as `RULES` lists them, appear in every message; ``docs/check-your-filesystem.md``
explains each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..impl.api import (
    DELALLOC,
    F_ATOMIC_BIO,
    F_DIRTY,
    F_NEW,
    F_SHARED,
    HOLE,
    INLINE,
    MAPPED,
    UNWRITTEN,
    Inode,
    Iomap,
)
from .contract_base import flags_text as _flags
from .contract_base import fmt_iomap, violation
from .contract_commit import CommitChecks
from .contract_extent import ExtentChecks
from .contract_legacy import GetBlockChecks

TYPES = frozenset({HOLE, DELALLOC, MAPPED, UNWRITTEN, INLINE})
FLAGS = frozenset({F_NEW, F_DIRTY, F_SHARED, F_ATOMIC_BIO})
CALLBACKS = ("iomap_begin", "iomap_end", "end_io", "submit_io", "get_block")

RULES: dict[str, str] = {
    "not-an-iomap": "iomap_begin returns an Iomap (or raises DioError)",
    "unknown-type": "the mapping type is HOLE, DELALLOC, MAPPED, UNWRITTEN or INLINE",
    "unknown-flag": "mapping flags are NEW, DIRTY, SHARED or ATOMIC_BIO",
    "empty-mapping": "a mapping has a positive length (iomap_iter_done)",
    "not-covering": "the mapping covers the position asked for (iomap_iter_done)",
    "unaligned": "offset, length and addr of a block mapping are fs-block multiples",
    "no-addr": "a MAPPED or UNWRITTEN mapping has a device address",
    "outside-device": "the mapped device range lies inside the device",
    "hole-for-write": "a write never gets a HOLE or DELALLOC mapping (iomap_dio_iter)",
    "alloc-under-nowait": "IOMAP_NOWAIT: no allocation; -EAGAIN instead",
    "nowait-partial": "a NOWAIT or OVERWRITE_ONLY write gets one mapping spanning the whole "
                      "request, or -EAGAIN",
    "overwrite-only": "IOMAP_OVERWRITE_ONLY: no allocation, no UNWRITTEN mapping for a write "
                      "not aligned to the block size",
    "mapping-past-extent": "a mapping covers only blocks the file's extent map gives it there",
    "unwritten-mapped": "an extent the map holds UNWRITTEN is mapped UNWRITTEN, not MAPPED",
    "mapping-type": "a mapping's type is the extent map's (MAPPED data is not UNWRITTEN)",
    "new-missing": "blocks allocated for the call are flagged IOMAP_F_NEW (or zeroed)",
    "reuse-before-commit": "blocks freed are not allocated again before the free is committed",
    "new-over-data": "IOMAP_F_NEW only on fresh blocks, never on blocks holding file data",
    "early-convert": "unwritten extents are converted by end_io, after the data is written",
    "dirty-missing": "IOMAP_F_DIRTY on a write that moves i_size (no FUA-only O_DSYNC)",
    "shared-overwrite": "a write never overwrites shared blocks in place (copy on write)",
    "size-before-data": "i_size moves only in end_io, after the data (never in iomap_begin)",
    "bad-return": "iomap_end and end_io return 0 or a negative errno",
    "error-swallowed": "end_io passes an I/O error on (it must not return 0 for it)",
    "size-not-updated": "end_io of a successful write moves i_size past the data",
    "size-past-data": "end_io moves i_size no further than the bytes written (pos + size)",
    "not-converted": "end_io with IOMAP_DIO_UNWRITTEN converts what was written",
    "not-remapped": "end_io with IOMAP_DIO_COW remaps the written range off shared blocks",
    "submit-missing": "submit_io submits the bio exactly once (sched.submit(bio))",
    "not-a-buffer-head": "get_block returns a BufferHead (or raises DioError)",
    "bh-too-long": "get_block maps at most the b_size asked for",
    "bh-past-extent": "get_block maps only the contiguous run the extent map holds",
}


class _CountingSched:
    """The scheduler handed to ``submit_io``: counts the submissions of one bio."""

    def __init__(self, sched: Any) -> None:
        self._sched = sched
        self.count = 0

    def submit(self, bio: Any) -> None:
        self.count += 1
        self._sched.submit(bio)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sched, name)


class Checked(CommitChecks, ExtentChecks, GetBlockChecks):
    """A filesystem whose callbacks are checked against the contract as they return.

    Everything else (``block_size``, ``extent_at``, ``truncate``...) is the wrapped
    filesystem's own (``create``, ``fsync`` and ``crash`` are passed on, and recorded:
    `CommitChecks`); a callback the filesystem does not have stays missing,
    so the engines behave exactly as with the filesystem alone.
    """

    def __init__(self, fs: Any, device: Any) -> None:
        object.__setattr__(self, "_fs", fs)
        object.__setattr__(self, "_device", device)
        for name in CALLBACKS:
            if callable(getattr(fs, name, None)):
                object.__setattr__(self, name, getattr(self, "_" + name))
        self._commit_init()

    def __getattr__(self, name: str) -> Any:
        fs = object.__getattribute__(self, "_fs")
        if name == "name" and not hasattr(fs, "name"):
            return type(fs).__name__
        return getattr(fs, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._fs, name, value)

    def __repr__(self) -> str:
        return f"Checked({self._fs!r})"

    @property
    def wrapped(self) -> Any:
        """The filesystem under test."""
        return self._fs

    # -- helpers -----------------------------------------------------------------------

    def _lookup(self, inode: Inode, pos: int, length: int) -> Iomap | None:
        """The file's extent at ``pos`` as the filesystem reports it (before a call)."""
        m = self._fs.extent_at(inode, pos, max(length, 1))
        return m if isinstance(m, Iomap) and m.length > 0 and m.offset <= pos < m.end else None

    def _dirty_bytes(self, addr: int, length: int) -> bool:
        """The device holds something other than zeros in ``[addr, addr + length)``."""
        lbs = self._device.logical_block_size
        lo, hi = addr - addr % lbs, -(-(addr + length) // lbs) * lbs
        data = self._device.read(lo, hi - lo)[addr - lo : addr - lo + length]
        return data.count(0) != len(data)

    def _scan(
        self, inode: Inode, pos: int, end: int, want: Callable[[Iomap], bool]
    ) -> Iomap | None:
        """The first extent of ``[pos, end)`` (rounded out to blocks) with ``want``."""
        bs = self._fs.block_size
        p, end = pos - pos % bs, -(-end // bs) * bs
        while p < end:
            m = self._fs.extent_at(inode, p, end - p)
            if not isinstance(m, Iomap) or m.end <= p:
                return None  # not the contract's business here (snapshot reads complain)
            if want(m):
                return m
            p = m.end
        return None

    # -- iomap_begin -------------------------------------------------------------------

    def _iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        write = "WRITE" in flags
        size = inode.size
        before = self._lookup(inode, pos, length)
        m = self._fs.iomap_begin(inode, pos, length, flags)
        call = f"iomap_begin(ino={inode.ino}, pos={pos}, length={length}, flags={_flags(flags)})"
        if not isinstance(m, Iomap):
            raise violation("not-an-iomap", call, f"returned {m!r}",
                            "->iomap_begin fills a struct iomap: return an Iomap")  # fmt: skip
        got = f"returned {fmt_iomap(m)}"
        rule, why = self._shape(m, pos, length, write, flags)
        if not rule and inode.size != size:
            rule, why = (
                "size-before-data",
                (
                    f"it moved i_size from {size} to {inode.size} before any data was written; "
                    "i_size moves in ->end_io once the data is there (xfs_dio_write_end_io), or "
                    "a crash or a failed write shows a size the data never reached"
                ),
            )
        if not rule and F_NEW in m.flags:
            why = self._reused(inode, m)
            rule = "reuse-before-commit" if why else ""
        if not rule:
            rule, why = self._extent_agreement(inode, m, pos, write)
        if not rule and before is not None:
            rule, why = self._against(before, m, pos, write)
        if not rule and write and "DIRECT" in flags:
            rule, why = self._durability(before, m, pos, length, size, inode)
        if rule:
            raise violation(rule, call, got, why)
        return m

    def _shape(self, m: Iomap, pos: int, length: int, write: bool,
               flags: frozenset[str]) -> tuple[str, str]:  # fmt: skip
        """Problems visible in the mapping alone."""
        bs = self._fs.block_size
        if m.type not in TYPES:
            return "unknown-type", f"{m.type!r} is not one of {sorted(TYPES)}"
        unknown = set(m.flags) - FLAGS
        if unknown:
            return "unknown-flag", (f"flags {sorted(unknown)} mean nothing to the engine "
                                    f"(known: {sorted(FLAGS)}), so it ignores them")  # fmt: skip
        if m.length <= 0:
            return "empty-mapping", "a mapping of no bytes: iomap_iter_done warns (length == 0)"
        if not m.offset <= pos < m.end:
            return "not-covering", (
                f"the mapping [{m.offset}, {m.end}) does not cover pos {pos}; iomap_iter "
                "uses it from pos on (iomap_iter_done: WARN_ON_ONCE(iomap->offset > pos), "
                "offset + length <= pos), so the I/O would land on the wrong blocks"
            )
        if m.type == INLINE:
            return "", ""
        if m.offset % bs or m.length % bs:
            return "unaligned", (
                f"offset {m.offset} and length {m.length} must be multiples of the block size "
                f"{bs}: the engine zeroes sub-block edges within the block from the mapping "
                "(iomap_dio_bio_iter: pad = pos & (fs_block_size - 1))"
            )
        if m.type in (MAPPED, UNWRITTEN):
            if m.addr is None:
                return "no-addr", f"a {m.type} mapping needs the device address of its offset"
            if m.addr % bs:
                return "unaligned", f"addr {m.addr} is not a multiple of the block size {bs}"
            dev = self._device.size
            if m.addr < 0 or m.addr + m.length > dev:
                return "outside-device", (f"[{m.addr}, {m.addr + m.length}) is outside the "
                                          f"device [0, {dev})")  # fmt: skip
        if write and m.type in (HOLE, DELALLOC):
            return "hole-for-write", (
                f"a {m.type} mapping for a write: iomap_dio_iter fails it with -EIO "
                "(WARN_ON_ONCE for HOLE; DELALLOC is a collision with buffered writes); "
                "allocate blocks (UNWRITTEN or MAPPED, with IOMAP_F_NEW), or raise "
                "DioError(-ENOTBLK) for a buffered fallback, or -EAGAIN under NOWAIT"
            )
        if (write and "DIRECT" in flags and flags & {"NOWAIT", "OVERWRITE_ONLY"}
                and m.end < pos + length):  # fmt: skip
            mode = "IOMAP_NOWAIT" if "NOWAIT" in flags else "IOMAP_OVERWRITE_ONLY"
            return "nowait-partial", (
                f"a {mode} write of [{pos}, {pos + length}) got a mapping that ends at {m.end}: "
                "the engine writes this part, and when the next mapping fails with -EAGAIN "
                "the caller is told -EAGAIN over data that changed (xfs 883a790a8440: "
                "imap_spans_range; btrfs_dio_iomap_begin: NOWAIT and len < length); "
                "raise DioError(EAGAIN) unless one mapping covers the whole request"
            )
        if write and "OVERWRITE_ONLY" in flags and (
                F_NEW in m.flags or (m.type == UNWRITTEN and (pos | length) % bs)):  # fmt: skip
            what = ("blocks allocated for it (IOMAP_F_NEW)" if F_NEW in m.flags else
                    f"an UNWRITTEN mapping, for a write not aligned to the block size {bs}")
            return "overwrite-only", (
                f"an IOMAP_OVERWRITE_ONLY write of [{pos}, {pos + length}) got {what}: the "
                "caller holds the inode lock shared and counts on a pure overwrite; an "
                "allocation, or the sub-block zeroing of an unwritten block, races another "
                "unaligned write to the same block and zeroes its data (iomap-operations.rst; "
                "xfs_direct_write_iomap_begin: -EAGAIN for unwritten and unaligned); raise "
                "DioError(EAGAIN)"
            )
        if write and F_NEW in m.flags and "NOWAIT" in flags:
            return "alloc-under-nowait", (
                "IOMAP_F_NEW under IOMAP_NOWAIT: allocating blocks may block; raise "
                "DioError(-EAGAIN) and the caller retries without NOWAIT"
            )
        return "", ""

    def _against(self, before: Iomap, m: Iomap, pos: int, write: bool) -> tuple[str, str]:
        """Problems visible by comparing the mapping with the file's extent before the
        call, and with what the blocks hold."""
        if m.type not in (MAPPED, UNWRITTEN) or m.addr is None:
            return "", ""
        lo, hi = max(before.offset, m.offset, pos), min(before.end, m.end)
        if lo >= hi:
            return "", ""
        addr = m.addr + lo - m.offset
        same = before.addr is not None and before.addr - before.offset == m.addr - m.offset
        new = F_NEW in m.flags
        where = f"[{lo}, {hi})"
        if before.type == MAPPED and same and new and F_SHARED not in before.flags:
            return "new-over-data", (
                f"{where} was already MAPPED to these blocks, and IOMAP_F_NEW makes the engine "
                "zero the parts of each block the write does not cover (iomap_dio_bio_iter: "
                "need_zeroout), destroying the file's data there; NEW is for fresh blocks"
            )
        if write and before.type == MAPPED and same and F_SHARED in before.flags:
            return "shared-overwrite", (
                f"{where} is on blocks shared with another file (reflink), mapped for an "
                "in-place write: the other file would change too; stage new blocks and "
                "return them with IOMAP_F_SHARED, remapped in ->end_io (IOMAP_DIO_COW)"
            )
        if m.type != MAPPED or before.type not in (HOLE, UNWRITTEN):
            return "", ""
        if before.type == UNWRITTEN and same and self._dirty_bytes(addr, hi - lo):
            return "early-convert", (
                f"{where} was UNWRITTEN and is now MAPPED, before the data is written, over "
                "blocks that do not hold zeros: a failed or torn write, or a crash after the "
                "metadata commits, exposes stale data. Return the UNWRITTEN mapping and "
                "convert in ->end_io when its flags hold UNWRITTEN (xfs_dio_write_end_io)"
            )
        if before.type == HOLE and not new and self._dirty_bytes(addr, hi - lo):
            if not write:
                return "new-missing", (
                    f"{where} was a hole and is mapped for a read over blocks that were "
                    "never written: the read would return stale data"
                )
            return "new-missing", (
                f"{where} was a hole: the blocks were allocated for this write, hold stale "
                "data, and the mapping lacks IOMAP_F_NEW, so the engine does not zero the "
                "parts of each block the write does not cover (iomap_dio_bio_iter: "
                "need_zeroout) and skips completion work: set IOMAP_F_NEW on fresh blocks"
            )
        return "", ""

    def _durability(self, before: Iomap | None, m: Iomap, pos: int, length: int,
                    size: int, inode: Inode | None = None) -> tuple[str, str]:  # fmt: skip
        """A direct write's mapping that lets an O_DSYNC write complete with FUA alone
        (MAPPED, none of NEW, SHARED, DIRTY, on a device that takes FUA or has no write
        cache: iomap_dio_bio_iter's use_fua) while the write needs metadata committed:
        blocks this call allocated or converted, or an i_size the write moves."""
        dev = self._device
        if m.type != MAPPED or m.flags & {F_NEW, F_SHARED, F_DIRTY}:
            return "", ""
        if dev.write_cache and not dev.fua:
            return "", ""  # never FUA here: NEED_SYNC stays and generic_write_sync commits
        fua = ("to the engine that is a pure overwrite: an O_DSYNC write goes out FUA and "
               "completes with no fsync (iomap_dio_bio_iter: use_fua), so ")  # fmt: skip
        if before is not None and before.type in (HOLE, UNWRITTEN) and (
                max(before.offset, m.offset, pos) < min(before.end, m.end)):  # fmt: skip
            what = "allocated" if before.type == HOLE else "converted from unwritten"
            return "new-missing" if before.type == HOLE else "early-convert", (
                f"the blocks at [{pos}, {min(before.end, m.end)}) were {what} by this call "
                f"and the mapping has none of IOMAP_F_NEW, SHARED, DIRTY: {fua}the new "
                "extent is never committed and a crash loses acknowledged data; set "
                "IOMAP_F_NEW on blocks allocated for the call"
            )
        dirty, how = self._metadata_dirty(inode) if inode is not None else (None, "")
        if dirty:
            return "dirty-missing", (
                f"the file's metadata is not committed (i_size {size} or its block map: "
                f"{how}) and the "
                f"mapping has none of IOMAP_F_NEW, SHARED, DIRTY: {fua}what is needed to read "
                "this write back is never committed and a crash loses acknowledged data; set "
                "IOMAP_F_DIRTY while the metadata is dirty (ext4_set_iomap: "
                "ext4_inode_datasync_dirty)"
            )
        if pos + length > size and m.end >= pos + length:
            return "dirty-missing", (
                f"the write ends at {pos + length}, past i_size {size}, and the mapping has "
                f"none of IOMAP_F_NEW, SHARED, DIRTY: {fua}the i_size its completion sets "
                "is never committed and a crash loses acknowledged data; set IOMAP_F_DIRTY "
                "for writes past EOF (xfs_direct_write_iomap_begin, ext4_set_iomap)"
            )
        return "", ""

    # -- the other iomap callbacks -----------------------------------------------------

    def _iomap_end(self, inode: Inode, pos: int, length: int, written: int,
                   flags: frozenset[str], iomap: Iomap) -> int:  # fmt: skip
        size = inode.size
        ret = self._fs.iomap_end(inode, pos, length, written, flags, iomap)
        call = (f"iomap_end(ino={inode.ino}, pos={pos}, length={length}, written={written}, "
                f"flags={_flags(flags)}, iomap={fmt_iomap(iomap)})")  # fmt: skip
        if isinstance(ret, bool) or not isinstance(ret, int) or ret > 0:
            raise violation("bad-return", call, f"returned {ret!r}",
                            "->iomap_end returns 0 or a negative errno")  # fmt: skip
        if "DIRECT" in flags and inode.size != size:
            raise violation("size-before-data", call, f"moved i_size from {size} to {inode.size}",
                            "a direct write's i_size moves in ->end_io, once all its data "
                            "is written, not per mapping")  # fmt: skip
        return ret

    def _submit_io(self, inode: Inode, bio: Any, pos: int, sched: Any) -> None:
        size = inode.size
        counting = _CountingSched(sched)
        self._fs.submit_io(inode, bio, pos, counting)
        call = (f"submit_io(ino={inode.ino}, bio #{bio.index} {bio.op} addr={bio.addr} "
                f"len={bio.length}, pos={pos})")  # fmt: skip
        if counting.count != 1:
            n = counting.count
            got = f"submitted the bio {n} times" if n else "did not submit the bio"
            why = ("->submit_io must pass the bio on exactly once (submit_bio; here "
                   "sched.submit(bio)), or the request never completes")  # fmt: skip
            raise violation("submit-missing", call, got, why)
        if inode.size != size:
            got = f"moved i_size from {size} to {inode.size}"
            raise violation("size-before-data", call, got, "the bio is not even written yet")

    def _end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        before = inode.size
        ret = self._fs.end_io(inode, pos, size, error, flags)
        call = (f"end_io(ino={inode.ino}, pos={pos}, size={size}, error={error}, "
                f"flags={_flags(flags)})")  # fmt: skip
        got = f"returned {ret!r}"
        if isinstance(ret, bool) or not isinstance(ret, int) or ret > 0:
            why = "->end_io returns 0 or a negative errno (iomap_dio_complete: it replaces error)"
            raise violation("bad-return", call, got, why)
        if error and not ret:
            why = (f"the I/O failed with {error}, and returning 0 makes iomap_dio_complete "
                   f"report {size} bytes done; return the error (or another one)")  # fmt: skip
            raise violation("error-swallowed", call, got, why)
        if "WRITE" in flags and inode.size > max(before, pos + max(size, 0)):
            why = (f"{size} bytes were written from {pos} (size is the bytes done, which may "
                   f"be fewer than asked for: a short write), so i_size may move to "
                   f"{pos + max(size, 0)} at most; [{max(before, pos + max(size, 0))}, "
                   f"{inode.size}) was never written and reads as zeros or stale data; move "
                   "i_size to pos + size (xfs_dio_write_end_io)")  # fmt: skip
            raise violation("size-past-data", call,
                            f"{got} and moved i_size from {before} to {inode.size}", why)
        if "WRITE" not in flags or error or ret or size <= 0:
            return ret
        end = pos + size
        if "WRITEBACK" not in flags and inode.size < end:
            why = (f"[{pos}, {end}) was written: ->end_io moves i_size up to {end} "
                   "(xfs_dio_write_end_io), nothing else does for a direct write")  # fmt: skip
            raise violation("size-not-updated", call, f"{got} and left i_size at {inode.size}",
                            why)  # fmt: skip
        m = None
        if "UNWRITTEN" in flags:
            m = self._scan(inode, pos, end, lambda e: e.type == UNWRITTEN)
            rule, why = (
                "not-converted",
                (
                    f"[{pos}, {end}) was written through an UNWRITTEN mapping "
                    "(IOMAP_DIO_UNWRITTEN): ->end_io converts it to written, or the data reads "
                    "back as zeros "
                    "(xfs_dio_write_end_io: xfs_iomap_write_unwritten)"
                ),
            )
        if m is None and "COW" in flags:
            m = self._scan(inode, pos, end, lambda e: F_SHARED in e.flags)
            rule, why = (
                "not-remapped",
                (
                    f"[{pos}, {end}) was written to new blocks (IOMAP_DIO_COW): ->end_io remaps "
                    "the file onto them (xfs_reflink_end_cow), or the data is lost"
                ),
            )
        if m is not None:
            raise violation(rule, call, f"{got} and left {fmt_iomap(m)}", why)
        return ret


class CheckedFactory:
    """``factory`` (device -> filesystem) with every callback checked (`Checked`).

    A callable object rather than a function, so that it stays unbound when stored as a
    class attribute (the conformance machine keeps its factory on the class)."""

    def __init__(self, factory: Callable[[Any], Any]) -> None:
        self.factory = factory

    def __call__(self, device: Any) -> Checked:
        return Checked(self.factory(device), device)

    def __repr__(self) -> str:
        return f"checked({getattr(self.factory, '__qualname__', self.factory)!r})"


def checked(factory: Callable[[Any], Any]) -> CheckedFactory:
    """``factory`` with every callback checked against the contract."""
    return CheckedFactory(factory)
