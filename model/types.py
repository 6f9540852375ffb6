"""Value types shared by the engine models: what goes in and what comes out.

Everything here is an immutable attrs value. The engines (``iomap.py``, ``legacy.py``)
are resumable state machines in the style of h11: ``step(state)`` returns the next
*action*, which is either a request for an input (``Need*``), an output (``Emit``),
``Blocked`` (waiting for bio completions) or ``Finished``. Inputs are given back with
``feed(state, input)``; ``BioEnd`` and ``Fault`` may be fed at any time, which is how a
caller states a race.
"""

from __future__ import annotations

from typing import Literal

import attrs
from attrs import field, frozen

from .bioset import BioSet
from .errno import ERRNO_NAMES

LOFF_MAX = (1 << 63) - 1  # largest loff_t

Op = Literal["read", "write"]
OPS = ("read", "write")

IOCB_FLAGS = frozenset({"DSYNC", "SYNC", "NOWAIT", "ATOMIC", "HIPRI"})
IOMAP_DIO_FLAGS = frozenset(
    {"FORCE_WAIT", "OVERWRITE_ONLY", "PARTIAL", "FSBLOCK_ALIGNED", "BUF_WRITETHROUGH"}
)
# flags argument of __blockdev_direct_IO (legacy engine only); a dioconf extension
LEGACY_DIO_FLAGS = frozenset({"LOCKING", "SKIP_HOLES"})

MAP_TYPES = frozenset({"HOLE", "MAPPED", "UNWRITTEN", "INLINE", "DELALLOC"})
IOMAP_MAP_FLAGS = frozenset({"NEW", "SHARED", "DIRTY", "ATOMIC_BIO"})
# buffer_head bits a legacy get_block may set besides buffer_new; a dioconf extension
LEGACY_MAP_FLAGS = frozenset({"NEW", "BOUNDARY", "DEFER_COMPLETION"})

CompletionContext = Literal["submitter", "inline", "workqueue"]


def _power_of_two(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
        raise ValueError(f"{attribute.name} must be a positive power of two, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative integer, got {value!r}")


def _errno(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value >= 0:
        raise ValueError(f"{attribute.name} must be a negative errno, got {value!r}")


def _status(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value > 0:
        raise ValueError(f"{attribute.name} must be 0 or a negative errno, got {value!r}")


def _subset(allowed: frozenset[str]):
    def check(_inst: object, attribute: attrs.Attribute, value: frozenset[str]) -> None:
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(
                f"{attribute.name}: unknown flag(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )

    return check


@frozen
class Geometry:
    """Filesystem and device geometry (trace header ``geometry``)."""

    fs_block_size: int = field(validator=_power_of_two)
    logical_block_size: int = field(validator=_power_of_two)
    page_size: int = field(validator=_power_of_two)
    write_cache: bool = True  # bdev_write_cache(): the device has a volatile cache
    fua: bool = False  # bdev_fua(): the device supports REQ_FUA

    def __attrs_post_init__(self) -> None:
        if self.logical_block_size < 512:
            raise ValueError(f"logical_block_size must be >= 512, got {self.logical_block_size}")
        if self.logical_block_size > self.fs_block_size:
            raise ValueError(
                f"logical_block_size {self.logical_block_size} exceeds "
                f"fs_block_size {self.fs_block_size}"
            )


@frozen
class Request:
    """A direct I/O request entering the engine (trace event ``begin``)."""

    op: str = field(validator=attrs.validators.in_(OPS))
    pos: int = field(validator=_non_negative)  # ki_pos
    len: int = field(validator=_non_negative)  # iov_iter_count()
    done_before: int = field(default=0, validator=_non_negative)
    iocb: frozenset[str] = field(
        default=frozenset(), converter=frozenset, validator=_subset(IOCB_FLAGS)
    )
    dio: frozenset[str] = field(
        default=frozenset(),
        converter=frozenset,
        validator=_subset(IOMAP_DIO_FLAGS | LEGACY_DIO_FLAGS),
    )
    sync: bool = True  # is_sync_kiocb()
    # f_mapping->nrpages != 0 when the request completes (dioconf extension, default
    # false): decides deferred completion of async writes (iomap_dio_done, dio_bio_end_aio)
    cached_pages: bool = False

    def __attrs_post_init__(self) -> None:
        if self.pos + self.len > LOFF_MAX:
            raise ValueError(f"pos {self.pos} + len {self.len} overflows loff_t")

    @property
    def is_write(self) -> bool:
        return self.op == "write"

    @property
    def is_dsync(self) -> bool:
        # iocb_is_dsync(); IOCB_SYNC always comes with IOCB_DSYNC (kiocb_set_rw_flags)
        return bool(self.iocb & {"DSYNC", "SYNC"})


@frozen
class Mapping:
    """What ``->iomap_begin`` (iomap) or ``get_block`` (legacy) answered."""

    offset: int = field(validator=_non_negative)
    length: int = field(validator=_non_negative)
    type: str = field(validator=attrs.validators.in_(MAP_TYPES))
    flags: frozenset[str] = field(
        default=frozenset(),
        converter=frozenset,
        validator=_subset(IOMAP_MAP_FLAGS | LEGACY_MAP_FLAGS),
    )
    addr: int | None = None  # device byte address of `offset`; None for holes

    @property
    def end(self) -> int:
        return self.offset + self.length


@frozen
class MapError:
    """``->iomap_begin`` / ``get_block`` returned a negative errno."""

    errno: int = field(validator=_errno)


# --------------------------------------------------------------------------- inputs


@frozen
class InvalidateResult:
    """Result of kiocb_invalidate_pages() before a write (0 or -errno)."""

    ret: int = field(validator=_status)


@frozen
class WritebackResult:
    """Result of kiocb_write_and_wait() before a read (0 or -errno); dioconf extension."""

    ret: int = field(validator=_status)


@frozen
class Cut:
    """How many bytes the next data bio carries (the user buffer's memory decides)."""

    len: int = field(validator=_non_negative)


@frozen
class BioEnd:
    """Bio number ``index`` of this request completed with ``status``."""

    index: int = field(validator=_non_negative)
    status: int = field(default=0, validator=_status)


@frozen
class Fault:
    """From user-buffer byte ``at`` on, pages cannot be pinned (get_user_pages fails with
    ``errno``). With -EFAULT (the default: a page that cannot be faulted in) they cannot
    be copied either; with another errno, e.g. -EINTR (a fatal signal is pending, which
    GUP checks), copying still works: only pinning fails."""

    at: int = field(validator=_non_negative)
    errno: int = field(default=-14, validator=_errno)


@frozen
class DefaultCuts:
    """Answer this cut with the engine's own proposal, and, while they carry exactly the
    same length (full bios of BIO_MAX_VECS pages), the next ones of the same extent: at
    most ``limit`` bios in all (None: no limit). The same as feeding ``Cut(proposal.len)``
    that many times with nothing between; they come out as one ``BioRun`` (iomap only)."""

    limit: int | None = field(default=None)

    @limit.validator
    def _positive(self, _attribute: attrs.Attribute, value: int | None) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"limit must be a positive integer or None, got {value!r}")


@frozen
class BioEndAll:
    """Every bio in flight completes with ``status``, in submission order: the same as
    ``BioEnd(i, status)`` for each of them, lowest index first (iomap only)."""

    status: int = field(default=0, validator=_status)


@frozen
class InodeSize:
    """Another task changed the inode's size: ``i_size_read()`` returns ``size`` from now
    on (an extending write's ->end_io, btrfs's i_size_write at mapping time). The inode
    is shared by every request in flight (iomap only)."""

    size: int = field(validator=_non_negative)


Input = (
    InvalidateResult
    | WritebackResult
    | Mapping
    | MapError
    | Cut
    | DefaultCuts
    | BioEnd
    | BioEndAll
    | Fault
    | InodeSize
)

# --------------------------------------------------------------------------- outputs


@frozen
class Bio:
    index: int  # 0-based count of this request's bios
    op: str
    addr: int  # device byte address (sector * 512)
    len: int
    fua: bool = False
    zero: bool = False  # a pure sub-block zeroing bio
    atomic: bool = False  # REQ_ATOMIC
    rule: str = ""  # seed function that issued it


@frozen
class Flush:
    """Completion issued a cache flush / data sync (generic_write_sync)."""

    rule: str = ""


@frozen
class Queued:
    """The submitter got -EIOCBQUEUED."""

    rule: str = ""


@frozen
class Complete:
    ret: int
    pos_after: int  # ki_pos after completion
    i_size: int  # inode size after completion
    ctx: str = "submitter"  # who ran the completion: submitter / inline / workqueue
    end_io_flags: frozenset[str] = frozenset()  # UNWRITTEN / COW passed to ->end_io
    invalidated: bool = False  # page cache invalidated after the write
    rule: str = ""  # how ret was derived


@frozen
class BioRun:
    """``count`` data bios submitted one after the other with nothing between them (the
    answer to ``DefaultCuts``): bio ``first + j`` is ``len`` bytes at ``addr + j * len``."""

    first: int  # index of the first bio of the run
    count: int
    op: str
    addr: int  # device byte address of the first bio
    len: int  # bytes of each bio
    fua: bool = False
    atomic: bool = False
    rule: str = ""

    def bio(self, j: int) -> Bio:
        """The ``j``-th bio of the run (0-based)."""
        if not 0 <= j < self.count:
            raise IndexError(j)
        addr = self.addr + j * self.len
        return Bio(self.first + j, self.op, addr, self.len, self.fua, atomic=self.atomic,
                   rule=self.rule)  # fmt: skip

    def bios(self) -> list[Bio]:
        """Every bio of the run, one by one (only for runs small enough to list)."""
        return [self.bio(j) for j in range(self.count)]


Output = Bio | BioRun | Flush | Queued | Complete

# --------------------------------------------------------------------------- actions


@frozen
class NeedInvalidate:
    pos: int
    len: int
    rule: str = "__iomap_dio_rw: kiocb_invalidate_pages"


@frozen
class NeedWriteback:
    pos: int
    len: int
    rule: str = "__iomap_dio_rw: kiocb_write_and_wait"


@frozen
class NeedMap:
    """The engine asks the filesystem to map ``pos`` (for ``length`` bytes).

    For the legacy engine ``pos`` is the start of the filesystem block asked for
    (fs_startblk << i_blkbits), ``length`` is b_size, and ``create`` is get_block's
    create argument.
    """

    pos: int
    length: int
    write: bool
    create: bool | None = None
    rule: str = ""


@frozen
class NeedCut:
    """The engine is about to build a data bio; ``proposal`` is its own default cut.

    A caller may answer ``Cut(n)`` for any ``0 < n <= max_len`` with
    ``n % align == 0`` (or exactly ``max_len`` when ``exact``).
    """

    proposal: Bio
    max_len: int
    align: int
    exact: bool = False
    rule: str = ""


@frozen
class Emit:
    output: Output


@frozen
class Blocked:
    """Nothing can happen until one of ``outstanding`` bios completes (any iterable of
    indices is taken; ``outstanding.first`` is the oldest)."""

    outstanding: BioSet = field(converter=BioSet.of)
    rule: str = ""


@frozen
class Finished:
    pass


Action = NeedInvalidate | NeedWriteback | NeedMap | NeedCut | Emit | Blocked | Finished


class ModelUsageError(Exception):
    """The caller fed the model something it did not ask for, or an impossible input
    (a mapping that does not cover the position asked for, a bio index never issued).
    This is the caller's fault, not a divergence."""


def errno_name(value: int) -> str:
    name = ERRNO_NAMES.get(value)
    return f"{value} ({name})" if name else str(value)
