"""The operations of a conformance run: immutable values, each a line of a story.

A run is a list of these, applied in order to a `Harness` (model, oracle and
implementation side by side). Every operation prints as valid Python (``repr``), so a
shrunk failing list is also a ready-to-run reproduction, and as a sentence
(``describe``), which is what Hypothesis's ``note()`` shows for a failing example.

Files are named by their index in the harness (0, 1, ...), never by inode number, so
that a list means the same thing on any filesystem. Race control is explicit: a direct
I/O request carries a ``plan``, one entry per race point the engine passes (after a bio
is submitted, before a mapping, before the submitter drops its reference, while it
waits, and a write's completion: before ->end_io, before the post-write invalidation):
``None`` lets the point pass, ``Pick(k, status)`` completes the ``k``-th bio in flight
(modulo their number) with ``status`` -- at a completion point, where no bio of the
request is left, it is a buffered read of the request's range by another task. An
exhausted plan means: nothing completes until the submitter waits, then the oldest
bio, with status 0. Shrinking a plan towards
``()`` is shrinking towards the uneventful schedule.
"""

from __future__ import annotations

from attrs import field, frozen

from ..model.errno import ERRNO_NAMES

__all__ = [
    "BufferedRead", "BufferedWrite", "CompleteBio", "Crash", "DirectRead", "DirectWrite",
    "Fallocate", "FileWrite", "Fsync", "MmapDirty", "Pick", "Punch", "Reflink", "Truncate",
    "Unpin",
]  # fmt: skip
IOCB_FLAGS = ("DSYNC", "SYNC", "NOWAIT", "ATOMIC")


def _errno_name(status: int) -> str:
    return ERRNO_NAMES.get(status, str(status)) if status else "ok"


def _flags(flags: tuple[str, ...]) -> str:
    return f" [{'|'.join(flags)}]" if flags else ""


@frozen
class Pick:
    """At a race point: complete the ``k``-th bio in flight with ``status``."""

    k: int = field()
    status: int = 0

    @k.validator
    def _k(self, _a: object, value: int) -> None:
        if value < 0:
            raise ValueError(f"Pick.k must be >= 0, got {value}")

    def describe(self) -> str:
        return f"bio#{self.k}:{_errno_name(self.status)}"


Plan = tuple[Pick | None, ...]


def _plan(plan: Plan) -> str:
    if not plan:
        return ""
    return " races(" + ", ".join("-" if p is None else p.describe() for p in plan) + ")"


@frozen
class DirectWrite:
    """An O_DIRECT write through the engine (iomap_dio_rw / __blockdev_direct_IO) of
    ``length`` bytes of write ``wid``'s pattern."""

    file: int
    pos: int
    length: int
    wid: int
    flags: tuple[str, ...] = ()  # kiocb: DSYNC, SYNC, NOWAIT, ATOMIC
    dio: tuple[str, ...] = ()  # iomap dio flags: PARTIAL, FSBLOCK_ALIGNED, ...
    sync: bool = True
    fault_at: int | None = None  # the user buffer faults from this offset
    done_before: int = 0
    plan: Plan = ()

    def describe(self) -> str:
        extra = "" if self.sync else " async"
        if self.fault_at is not None:
            extra += f" fault@{self.fault_at}"
        if self.done_before:
            extra += f" done_before={self.done_before}"
        return (f"direct write #{self.wid} of file {self.file} [{self.pos}, "
                f"{self.pos + self.length}){_flags(self.flags + self.dio)}{extra}"
                f"{_plan(self.plan)}")  # fmt: skip


@frozen
class DirectRead:
    """An O_DIRECT read through the engine."""

    file: int
    pos: int
    length: int
    flags: tuple[str, ...] = ()
    dio: tuple[str, ...] = ()
    sync: bool = True
    fault_at: int | None = None
    done_before: int = 0
    plan: Plan = ()

    def describe(self) -> str:
        extra = "" if self.sync else " async"
        if self.fault_at is not None:
            extra += f" fault@{self.fault_at}"
        if self.done_before:
            extra += f" done_before={self.done_before}"
        return (f"direct read of file {self.file} [{self.pos}, {self.pos + self.length})"
                f"{_flags(self.flags + self.dio)}{extra}{_plan(self.plan)}")  # fmt: skip


@frozen
class FileWrite:
    """pwrite(2) on an O_DIRECT descriptor: the filesystem's direct write with its
    fallbacks to buffered I/O (-ENOTBLK, short writes)."""

    file: int
    pos: int
    length: int
    wid: int
    flags: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"pwrite(O_DIRECT) #{self.wid} of file {self.file} [{self.pos}, "
                f"{self.pos + self.length}){_flags(self.flags)}")  # fmt: skip


@frozen
class BufferedWrite:
    file: int
    pos: int
    length: int
    wid: int

    def describe(self) -> str:
        end = self.pos + self.length
        return f"buffered write #{self.wid} of file {self.file} [{self.pos}, {end})"


@frozen
class BufferedRead:
    file: int
    pos: int
    length: int

    def describe(self) -> str:
        return f"buffered read of file {self.file} [{self.pos}, {self.pos + self.length})"


@frozen
class MmapDirty:
    """A shared mapping dirties the page at ``pos`` and pins it (GUP): invalidating
    it fails (-EBUSY) until `Unpin`, so a direct write over it falls back (-ENOTBLK)."""

    file: int
    pos: int

    def describe(self) -> str:
        return f"mmap, dirty and pin the page of file {self.file} at {self.pos}"


@frozen
class Unpin:
    """Every pinned page of the file is unpinned (munmap)."""

    file: int

    def describe(self) -> str:
        return f"unpin the pages of file {self.file}"


@frozen
class Fallocate:
    file: int
    pos: int
    length: int
    keep_size: bool = False

    def describe(self) -> str:
        keep = " keep_size" if self.keep_size else ""
        return f"fallocate file {self.file} [{self.pos}, {self.pos + self.length}){keep}"


@frozen
class Punch:
    file: int
    pos: int
    length: int

    def describe(self) -> str:
        return f"punch hole in file {self.file} [{self.pos}, {self.pos + self.length})"


@frozen
class Truncate:
    file: int
    size: int

    def describe(self) -> str:
        return f"truncate file {self.file} to {self.size}"


@frozen
class Reflink:
    """FICLONE: ``dst`` becomes a copy of ``src`` sharing its blocks."""

    src: int
    dst: int

    def describe(self) -> str:
        return f"reflink file {self.src} onto file {self.dst}"


@frozen
class Fsync:
    file: int

    def describe(self) -> str:
        return f"fsync file {self.file}"


@frozen
class CompleteBio:
    """Complete the ``k``-th bio in flight (modulo their number) with ``status``.

    ``plan``: the race points of the completion this may run (a write's: before
    ->end_io, then before the post-write invalidation); a ``Pick`` there is a buffered
    read of the request's range by another task."""

    k: int
    status: int = 0
    plan: Plan = ()

    def describe(self) -> str:
        races = "".join(
            f", read racing at {('->end_io', 'the invalidation')[i]}"
            for i, p in enumerate(self.plan[:2]) if p is not None
        )
        return f"complete in-flight bio #{self.k} with {_errno_name(self.status)}{races}"


@frozen
class Crash:
    """Power failure, then remount: bios in flight and everything not durable are lost."""

    def describe(self) -> str:
        return "crash and remount"


Op = (
    DirectWrite | DirectRead | FileWrite | BufferedWrite | BufferedRead | Fallocate | Punch
    | Truncate | Reflink | Fsync | CompleteBio | Crash | MmapDirty | Unpin
)  # fmt: skip
REQUESTS = (DirectWrite, DirectRead)
