"""What a filesystem gives the direct-I/O engines, and what they exchange.

A filesystem is an object with the iomap callbacks (``iomap_begin``, optional
``iomap_end``, ``end_io``, ``submit_io``) or, for the legacy engine, ``get_block``.
Errors travel as ``DioError`` carrying a negative errno, as the kernel's callbacks
return them. Nothing here depends on the model: the implementation is compared with the
model, so it must compute its answers on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

EIO, EAGAIN, EFAULT, ENOTBLK, EBUSY, EINVAL = -5, -11, -14, -15, -16, -22
ENOSPC, EOPNOTSUPP, EIOCBQUEUED = -28, -95, -529

HOLE, DELALLOC, MAPPED, UNWRITTEN, INLINE = "HOLE", "DELALLOC", "MAPPED", "UNWRITTEN", "INLINE"
# iomap->flags
F_NEW, F_DIRTY, F_SHARED, F_ATOMIC_BIO = "NEW", "DIRTY", "SHARED", "ATOMIC_BIO"
# iomap_iter flags passed to ->iomap_begin
IOMAP_WRITE, IOMAP_DIRECT, IOMAP_NOWAIT = "WRITE", "DIRECT", "NOWAIT"
IOMAP_OVERWRITE_ONLY, IOMAP_ATOMIC = "OVERWRITE_ONLY", "ATOMIC"


class DioError(Exception):
    """A callback failed with a negative errno (``-EAGAIN``, ``-ENOTBLK``, ...)."""

    def __init__(self, errno: int, why: str = "") -> None:
        if errno >= 0:
            raise ValueError(f"DioError needs a negative errno, got {errno}")
        super().__init__(f"{errno}{': ' + why if why else ''}")
        self.errno = errno


class ContractError(Exception):
    """A callback broke its contract (a mapping that does not cover the position, an
    unaligned address, HOLE for a write...): the message names the callback, the call
    and what was wrong."""


class Iomap(NamedTuple):
    """One mapping, as ->iomap_begin returns it (struct iomap): an immutable value."""

    offset: int
    length: int
    type: str
    flags: frozenset[str] = frozenset()
    addr: int | None = None  # device byte address of ``offset``
    inline: bytearray | None = None  # INLINE: the data, starting at ``offset``

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass
class Inode:
    ino: int
    size: int = 0  # i_size
    cached_pages: int = 0  # nrpages of its page cache (the page cache keeps it current)


_SYNC_FLAGS = frozenset({"DSYNC", "SYNC"})


@dataclass(slots=True)
class Kiocb:
    pos: int
    flags: frozenset[str] = frozenset()  # DSYNC, SYNC, NOWAIT, ATOMIC, HIPRI
    complete: Callable[[int], None] | None = None  # ki_complete; None: synchronous

    @property
    def is_sync(self) -> bool:
        return self.complete is None

    @property
    def dsync(self) -> bool:
        return not self.flags.isdisjoint(_SYNC_FLAGS)


@dataclass(eq=False, slots=True)
class Bio:
    index: int  # 0-based count of its request's bios
    op: str  # "read" or "write"
    addr: int
    data: memoryview  # what to write, or where to read into
    fua: bool = False
    zero: bool = False
    atomic: bool = False
    status: int = 0
    end_io: Callable[[Bio], None] | None = None
    private: object = None

    @property
    def length(self) -> int:
        return len(self.data)


class IomapFilesystem(Protocol):
    block_size: int

    def iomap_begin(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        """Map ``pos`` (for up to ``length`` bytes); raise DioError to fail."""
        ...

    def iomap_end(
        self, inode: Inode, pos: int, length: int, written: int, flags: frozenset[str],
        iomap: Iomap,
    ) -> int:  # fmt: skip
        """Called after each mapping was used; a negative errno fails the iteration when
        nothing was written."""
        ...

    def end_io(self, inode: Inode, pos: int, size: int, error: int, flags: frozenset[str]) -> int:
        """Direct I/O completion (``->end_io``), for reads and writes alike: ``flags``
        holds WRITE for a write, UNWRITTEN/COW when the mapping needs conversion or
        remapping. Convert, remap, move i_size; return an error to replace the result,
        or 0."""
        ...
