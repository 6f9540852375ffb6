"""Property-test your own filesystem callbacks: the public API.

You write a filesystem as a Python object with the callbacks of the iomap direct-I/O
engine (``iomap_begin``, and optionally ``iomap_end``, ``end_io``, ``submit_io``) or of
the legacy engine (``get_block``), and a factory ``factory(device) -> filesystem``.
``dioconf check pkg.module:factory`` (or `check_filesystem` / `assert_conforms`) then
drives it with random direct and buffered I/O, racing completions, failed bios and
crashes, checks every callback against its contract as it returns, and checks what the
files hold against the model's oracle: no stale data, every acknowledged O_DSYNC write
still there after a crash, the results and i_size the model predicts.

The quickest way in is to subclass `BlockFs`, which keeps the block map, allocates,
and makes metadata durable at ``fsync`` (and only then) so that ``crash`` is honest;
you write only the callbacks::

    from dioconf.fsapi import EAGAIN, HOLE, UNWRITTEN, BlockFs, DioError

    class MyFs(BlockFs):
        name = "myfs"

        def iomap_begin(self, inode, pos, length, flags):
            m = self.lookup(inode, pos, length)
            if "WRITE" not in flags:
                return m                              # reads: holes and unwritten read as zeros
            if flags & {"NOWAIT", "OVERWRITE_ONLY"} and m.end < pos + length:
                raise DioError(EAGAIN, "spans several extents")  # one mapping, or none
            if m.type == HOLE:
                if flags & {"NOWAIT", "OVERWRITE_ONLY"}:
                    raise DioError(EAGAIN, "allocation needed")
                return self.allocate(inode, pos, m.end - pos)   # UNWRITTEN, IOMAP_F_NEW
            if m.type == UNWRITTEN and "OVERWRITE_ONLY" in flags:
                raise DioError(EAGAIN, "not a pure overwrite")
            return self.write_mapping(inode, m, pos, length)  # IOMAP_F_DIRTY: see its doc

        def end_io(self, inode, pos, size, error, flags):
            if "WRITE" in flags and not error and size:
                if "UNWRITTEN" in flags:
                    self.convert_unwritten(inode, pos, size)
                self.extend(inode, pos, size)         # i_size, after the data
            return error

    def factory(device):
        return MyFs(device)

The seed code the contract comes from is fs/iomap/direct-io.c (``iomap_dio_bio_iter``,
``iomap_dio_iter``, ``iomap_dio_complete``), fs/iomap/iter.c (``iomap_iter_done``),
Documentation/filesystems/iomap/operations.rst and fs/direct-io.c (``get_more_blocks``,
``dio_zero_block``). ``docs/check-your-filesystem.md`` is the five-minute guide.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .impl.api import (
    DELALLOC,
    EAGAIN,
    EFAULT,
    EINVAL,
    EIO,
    ENOSPC,
    ENOTBLK,
    EOPNOTSUPP,
    F_ATOMIC_BIO,
    F_DIRTY,
    F_NEW,
    F_SHARED,
    HOLE,
    INLINE,
    IOMAP_ATOMIC,
    IOMAP_DIRECT,
    IOMAP_NOWAIT,
    IOMAP_OVERWRITE_ONLY,
    IOMAP_WRITE,
    MAPPED,
    UNWRITTEN,
    Bio,
    ContractError,
    DioError,
    Inode,
    Iomap,
)
from .impl.fs.base import PREALLOC, WRITTEN, ExtentFs
from .impl.fs.getblock import BufferHead

if TYPE_CHECKING:
    from .conformance.check import CheckReport

__all__ = [
    "DELALLOC", "DIO_COW", "DIO_UNWRITTEN", "DIO_WRITE", "EAGAIN", "EFAULT", "EINVAL", "EIO",
    "ENOSPC", "ENOTBLK", "EOPNOTSUPP", "F_ATOMIC_BIO", "F_DIRTY", "F_NEW", "F_SHARED", "HOLE",
    "INLINE", "IOMAP_ATOMIC", "IOMAP_DIRECT", "IOMAP_NOWAIT", "IOMAP_OVERWRITE_ONLY",
    "IOMAP_WRITE", "IOMAP_WRITEBACK", "IOMAP_WRITETHROUGH", "MAPPED", "UNWRITTEN", "Bio",
    "BlockFs", "BufferHead", "ContractError", "Device", "DioError", "FileState",
    "GetBlockFilesystem", "Inode", "Iomap", "IomapFilesystem", "IomapOptionalCallbacks",
    "SuiteOperations", "assert_conforms", "check_filesystem",
]  # fmt: skip
# also `CheckReport` and `FactoryError`, loaded on first use (module __getattr__ below)

# ->iomap_begin flags besides those of impl.api: the page cache calls with {"WRITE"} (no
# DIRECT) to write dirty pages back, and this for RWF_WRITETHROUGH's allocation (RFC)
IOMAP_WRITETHROUGH = "WRITETHROUGH"
# ->end_io flags (dio->flags as iomap_dio_complete passes them)
DIO_WRITE, DIO_UNWRITTEN, DIO_COW = "WRITE", "UNWRITTEN", "COW"
IOMAP_WRITEBACK = "WRITEBACK"  # end_io of a page-cache writeback, not of a direct request


class Device(Protocol):
    """The block device a factory gets: a sparse image with a volatile write cache.

    Never-written sectors read as a recognisable stale pattern, which is how the suite
    tells stale data from zeros. A plain ``write`` is durable only after ``flush``; a
    ``fua`` write when it completes; ``crash`` (the suite's) keeps only what is durable.
    Addresses and lengths are bytes, multiples of ``logical_block_size``.
    """

    size: int
    logical_block_size: int

    def read(self, addr: int, length: int) -> bytearray: ...

    def write(
        self, addr: int, data: bytes | bytearray | memoryview, *, fua: bool = False
    ) -> None: ...

    def flush(self) -> None: ...

    def crash(self) -> None:
        """Power failure: every write not yet durable is lost (a filesystem's own
        ``crash`` calls it first, then goes back to its committed metadata)."""
        ...


class FileState(Protocol):
    """What ``file(inode)`` returns: the suite reads ``blocks``, the file blocks (offset //
    block_size) that have storage, to know where a file may hold data without reading
    all of it."""

    blocks: Container[int]


@runtime_checkable
class SuiteOperations(Protocol):
    """What the suite needs besides the engine callbacks (`BlockFs` has all of it).

    The suite creates files, changes their extents as fallocate(2), punch hole and
    truncate(2) do, makes everything durable with fsync(2), pulls the power with
    ``crash`` and looks at the files' contents through ``extent_at`` and the device,
    never through the callbacks (a read has side effects).
    """

    name: str  # the filesystem's name, written into the traces
    block_size: int  # bytes; 4096 (the suite's geometries include 4 KiB logical blocks)

    def create(self) -> Inode:
        """A new, empty file (``Inode(ino)``; ``ino`` unique)."""
        ...

    def file(self, inode: Inode) -> FileState:
        """The file's state; see `FileState`."""
        ...

    def extent_at(self, inode: Inode, pos: int, length: int) -> Iomap:
        """A side-effect-free lookup: the extent holding ``pos`` now, as a mapping that
        covers ``pos`` and may end before ``pos + length`` (HOLE, MAPPED or UNWRITTEN;
        SHARED for reflinked blocks). The suite reads the file with it, and the contract
        checker compares what a callback returns with what was there before the call."""
        ...

    def truncate(self, inode: Inode, size: int) -> None:
        """truncate(2): free the blocks from ``size`` on, ``inode.size = size``. The
        suite has zeroed the rest of the block that holds the new EOF already (the VFS
        side, as xfs_setattr_size does with iomap_zero_range): do not zero it here."""
        ...

    def fallocate(self, inode: Inode, pos: int, length: int, keep_size: bool = False) -> None:
        """fallocate(2) mode 0 or KEEP_SIZE: unwritten blocks where there are holes (they
        read as zeros); without ``keep_size``, i_size grows to ``pos + length``."""
        ...

    def punch(self, inode: Inode, pos: int, length: int) -> None:
        """fallocate(PUNCH_HOLE | KEEP_SIZE) of whole blocks: free them."""
        ...

    def fsync(self, inode: Inode | None = None) -> int:
        """Make data and metadata durable: flush the device (``device.flush()``) first,
        then commit the metadata (block map, i_size) so that ``crash`` brings it back.
        The suite calls ``fsync(inode)`` for fsync(2) of one file and ``fsync(None)``
        for a sync of everything (``BlockFs.fsync`` also takes a byte range, which the
        suite never passes). A commit may take every file's metadata with it (a
        journal does): the contract checker assumes so unless ``metadata_dirty`` says
        otherwise. Returns 0 or a negative errno.

        The committed i_size of a file: what the oracle lets a crash bring back is any
        i_size the file had in core since its last fsync, and also, per the kernel:
        the end of a completed direct write clamped to the in-core size (xfs_new_eof
        at unwritten conversion, ext4's i_disksize at the write's completion), and the
        end of each page written back, clamped likewise (xfs_setfilesize at ioend).
        So move the committed i_size only once the data below it is on the device."""
        ...

    def crash(self) -> None:
        """Power failure: call ``device.crash()`` and go back to the last committed
        metadata, as journal replay would; every ``Inode`` the suite holds must then show
        the committed i_size (update them in place). A file created since the last
        commit does not survive (the suite fsyncs after creating its files)."""
        ...


@runtime_checkable
class IomapFilesystem(SuiteOperations, Protocol):
    """A filesystem for the iomap engine (fs/iomap/direct-io.c).

    ``iomap_begin`` is required; ``iomap_end``, ``end_io``, ``submit_io`` and
    ``dio_start`` are optional (leave them out rather than writing empty ones: the
    engine behaves as the kernel does without them). The contract of each is what
    `dioconf.conformance.contract` checks, call by call.
    """

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        """Map the file from ``pos`` (for up to ``length`` bytes), or raise
        ``DioError(errno)`` with one of the (negative) errno constants, e.g.
        ``DioError(EAGAIN)``.

        ``flags``: DIRECT for direct I/O (the page cache calls without it: ``{"WRITE"}``
        for writeback, ``{"WRITE", "WRITETHROUGH"}``, and no flags to fill pages), WRITE
        for writes, and NOWAIT, OVERWRITE_ONLY, ATOMIC. The contract:

        - the mapping covers ``pos``: ``offset <= pos < offset + length``, ``length > 0``
          (iomap_iter_done); it may end before ``pos + length`` (the engine asks again);
        - offset, length and addr are multiples of ``block_size``; MAPPED and UNWRITTEN
          have ``addr``, the device byte address of ``offset``, inside the device;
        - a write never gets HOLE or DELALLOC (iomap_dio_iter: -EIO): allocate, or raise
          -ENOTBLK (the caller falls back to buffered I/O) or -EAGAIN under NOWAIT;
        - blocks allocated for the call carry IOMAP_F_NEW (``F_NEW``): the engine then
          zeroes what the write does not cover of each block and completes with work
          (iomap_dio_bio_iter: need_zeroout); NEW never on blocks holding file data;
        - allocating under NOWAIT is not allowed: raise DioError(EAGAIN); under
          OVERWRITE_ONLY neither (iomap-operations.rst: "Allocating blocks and zeroing
          partial blocks is not allowed"), nor an UNWRITTEN mapping;
        - a NOWAIT or OVERWRITE_ONLY direct write gets one mapping spanning the whole
          request, or DioError(EAGAIN) before any I/O: never part of it and then -EAGAIN
          from the next call, which tells the caller nothing happened over changed data
          (xfs_direct_write_iomap_begin: imap_spans_range, 883a790a8440);
        - unwritten extents stay UNWRITTEN until ``end_io`` converts them, after the data
          is written; never convert here (a failed write or a crash would expose stale
          data);
        - IOMAP_F_DIRTY when metadata needed to read the data back (block map, i_size)
          is not committed yet: without NEW, SHARED or DIRTY, an O_DSYNC write to a
          MAPPED extent goes out FUA and no fsync follows;
        - blocks shared with another file are never written in place: map new blocks
          with IOMAP_F_SHARED, remapped by ``end_io`` (IOMAP_DIO_COW);
        - i_size is not touched (it moves in ``end_io``).
        """
        ...


class IomapOptionalCallbacks(Protocol):
    """The optional callbacks of an `IomapFilesystem`, documented here."""

    def iomap_end(self, inode: Inode, pos: int, length: int, written: int,
                  flags: frozenset[str], iomap: Iomap) -> int:  # fmt: skip
        """After each mapping was used (``written`` bytes of ``length``): 0, or a
        negative errno, which ends the request when nothing was written (iomap_iter).
        i_size is not touched here."""
        ...

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        """Completion of a direct request (iomap_dio_complete), reads included, and of a
        page-cache writeback (flags hold WRITEBACK; ``size`` clipped to i_size).

        ``flags``: WRITE for writes; UNWRITTEN when a mapping was unwritten (convert
        ``[pos, pos + size)``, rounded out to blocks); COW when a mapping was SHARED
        (remap the file onto the new blocks). For a write that succeeded (``error == 0``,
        ``size > 0``) it converts, remaps and moves i_size up to ``pos + size``; on error
        it does none of it and returns the error. Returns 0 or a negative errno, which
        replaces the result; never 0 for an error."""
        ...

    def submit_io(self, inode: Inode, bio: Bio, pos: int, sched: Any) -> None:
        """Submit ``bio`` (file offset ``pos``): call ``sched.submit(bio)`` exactly once."""
        ...

    def dio_start(self, inode: Inode) -> None:
        """A direct request starts (before its first ``iomap_begin``): per-request state.
        Requests of one file may overlap in time: an async request can be in flight
        while others run (keep per-request state per request, not per inode)."""
        ...

    def metadata_dirty(self, inode: Inode) -> bool:
        """Whether the file's metadata (block map, i_size) changed since it was last
        committed (``BlockFs`` has it). The contract checker's ``[dirty-missing]`` asks
        it; without it, the checker compares i_size and the extent map with what they
        were at the last ``fsync`` of any file (define it if you commit elsewhere)."""
        ...

    def reflink(self, src: Inode, dst: Inode) -> None:
        """FICLONE: ``dst`` becomes a copy of ``src`` sharing its blocks (then
        ``extent_at`` reports them with IOMAP_F_SHARED, and a write to them must copy on
        write: new blocks flagged SHARED|NEW, remapped by ``end_io`` on COW). Define it
        and the suite clones files too."""
        ...


@runtime_checkable
class GetBlockFilesystem(SuiteOperations, Protocol):
    """A filesystem for the legacy engine (``__blockdev_direct_IO``, fs/direct-io.c).

    Optional: ``dio_flags`` (what you pass to __blockdev_direct_IO: ``{"LOCKING",
    "SKIP_HOLES"}`` as ext2 does) and ``write_failed(inode, to)`` (ext2_write_failed:
    free blocks a failed write allocated past i_size).
    """

    def get_block(self, inode: Inode, fs_block: int, b_size: int, create: bool) -> BufferHead:
        """Map file block ``fs_block`` for up to ``b_size`` bytes.

        A hole (``create`` false) is ``BufferHead(False, size=n)``; a mapped run is
        ``BufferHead(True, blocknr, n, new=...)`` with ``blocknr`` in fs blocks, ``n`` at
        most ``b_size``, a multiple of the block size, covering ``fs_block``. With
        ``create``, holes are allocated and reported ``new=True`` (dio_zero_block zeroes
        what the request does not write); never ``new`` on blocks holding data."""
        ...

    def extend(self, inode: Inode, pos: int, size: int) -> None:
        """The caller's i_size update after a write of ``size`` bytes at ``pos``."""
        ...


class BlockFs(ExtentFs):
    """A base class that does the bookkeeping: subclass it and write the callbacks.

    It keeps, per file, a block map (file block -> device block, written or unwritten)
    and i_size; allocates device blocks; makes metadata durable at ``fsync`` (device
    flush, then commit) and nowhere else, and brings the committed copy back at
    ``crash``; implements ``create``, ``file``, ``extent_at``, ``truncate``,
    ``fallocate`` (unwritten blocks), ``punch``, ``fsync`` and ``crash``. Blocks are
    ``block_size`` bytes (4096); freed blocks are reused only after the free is
    committed. The helpers below are what callbacks use.
    """

    name = "blockfs"

    def __init__(self, device: Any, block_size: int = 4096) -> None:
        super().__init__(device, block_size)

    def lookup(self, inode: Inode, pos: int, length: int) -> Iomap:
        """The extent at ``pos``: HOLE, MAPPED or UNWRITTEN (SHARED flag for reflinked
        blocks), from ``pos``'s block to at most the block of ``pos + length - 1``."""
        return self.extent_at(inode, pos, length)

    def allocate(self, inode: Inode, pos: int, length: int, *, unwritten: bool = True) -> Iomap:
        """Allocate blocks for the hole at ``pos`` (where ``lookup`` says HOLE; up to
        ``pos + length``, as far as the hole goes and the allocator gives contiguous
        blocks) and return their mapping, flagged IOMAP_F_NEW: UNWRITTEN (``end_io``
        converts what was written), or MAPPED with ``unwritten=False`` (then a failed
        write leaves them holding stale data: prefer unwritten). Raises
        DioError(ENOSPC) when the device is full."""
        state = PREALLOC if unwritten else WRITTEN
        return self.allocate_for_write(inode, pos, length, frozenset(), state)

    def convert_unwritten(self, inode: Inode, pos: int, size: int) -> None:
        """Unwritten blocks touched by ``[pos, pos + size)`` become written."""
        self.convert(inode, pos, size)

    def extend(self, inode: Inode, pos: int, size: int) -> None:
        """i_size = max(i_size, ``pos + size``), in the inode and the block map."""
        super().extend(inode, pos, size)

    def metadata_dirty(self, inode: Inode) -> bool:
        """The file's block map or i_size changed since the last commit."""
        return self.meta_dirty(inode)

    def write_mapping(self, inode: Inode, m: Iomap, pos: int, length: int) -> Iomap:  # type: ignore[override]
        """``m`` for a direct write of ``[pos, pos + length)``, with IOMAP_F_DIRTY added
        when the file's metadata is not committed, or when the write ends past i_size
        (its completion moves i_size), as xfs_direct_write_iomap_begin and ext4_set_iomap
        do: then an O_DSYNC write completes with an fsync, not with FUA alone."""
        if m.type == MAPPED and not m.flags & {F_NEW, F_SHARED} and pos + length > inode.size:
            return m._replace(flags=m.flags | {F_DIRTY})
        return super().write_mapping(inode, m)


Factory = Callable[[Any], Any]


def check_filesystem(factory: Factory | str, *, profile: str | None = None,
                     settings: Any = None, engine: str | None = None,
                     examples: int | None = None, seed: int | None = None,
                     out_dir: str = "dioconf-failures") -> CheckReport:  # fmt: skip
    """Check a filesystem: ``factory`` is a callable (device -> filesystem) or its
    ``"pkg.module:factory"`` path. With neither ``profile`` nor ``settings``, the
    current Hypothesis settings profile (``settings.default``: its max_examples,
    step count, derandomize and example database) decides the run; ``profile`` takes
    a ``dioconf run`` profile (ci, dev, nightly) instead. Raises
    ``dioconf.fsapi.FactoryError`` when the factory cannot be loaded or built."""
    from .conformance.check import run_check

    return run_check(factory, profile=profile, hypothesis_settings=settings, engine=engine,
                     examples=examples, seed=seed, out_dir=out_dir)  # fmt: skip


def assert_conforms(factory: Factory | str, **kwargs: Any) -> CheckReport:
    """`check_filesystem`, raising AssertionError with the failure (kind, message, the
    shrunk operations, trace and reproduction) when a problem was found::

        def test_my_fs_conforms():
            assert_conforms("mypkg.myfs:factory")
    """
    report = check_filesystem(factory, **kwargs)
    if not report.ok:
        raise AssertionError(report.describe())
    return report


def __getattr__(name: str) -> Any:
    """`CheckReport` (what `check_filesystem` returns) and `FactoryError` (a factory that
    cannot be imported or built), loaded with the suite on first use."""
    if name in ("CheckReport", "FactoryError"):
        from .conformance import check

        return getattr(check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
