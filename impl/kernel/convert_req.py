"""The request being converted, and the constants and helpers of the converter
(``convert.py``, ``convert_around.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from attrs import define, field

EIO = -5
EAGAIN = -11
EFAULT = -14
EINTR = -4
PIN_ERRORS = (EFAULT, EINTR)  # what bio_iov_iter_get_pages fails with, as a fault
ENOTBLK = -15
OBSERVED = ["bio", "flush", "queued", "complete"]  # a trace's header
NO_FLUSH = ["bio", "queued", "complete"]  # a request whose flushes are not told apart
EBUSY = -16
ENOSPC = -28
IOCB_FLAGS = ("DSYNC", "SYNC", "NOWAIT", "ATOMIC", "HIPRI")
DIO_FLAGS = {"DIO_FORCE_WAIT": "FORCE_WAIT", "DIO_OVERWRITE_ONLY": "OVERWRITE_ONLY",
             "DIO_PARTIAL": "PARTIAL"}  # fmt: skip
MAP_FLAGS = ("NEW", "SHARED", "DIRTY", "ATOMIC_BIO")  # the others do not drive the engine


class Sink(Protocol):
    """Where final lines go: a list, or a spool file (record.py) for long recordings."""

    def append(self, item: tuple[int, dict[str, Any]], /) -> None: ...
    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]: ...


@define
class Req:
    req: int
    pid: int
    pos: int
    len: int
    begin: dict[str, Any]
    iters: list[tuple[int, int]] = field(factory=list)  # (pos, status) of iomap_iter
    asked: bool = False  # the last iomap_iter called ->iomap_begin, no dstmap yet
    map_errors: list[dict[str, Any]] = field(factory=list)
    invalidated: bool = False  # an invalidate_fail was traced
    # bios are the dio's only between a mapping and the next iomap_iter call; others
    # from the same task are the filesystem's (e.g. a buffered fallback's writeback)
    mapped: bool = False
    extent: tuple[int, int] = (0, 0)  # device bytes of the current mapping
    map_end: int = 0  # file offset where the current mapping ends
    fault_ev: dict[str, Any] | None = None  # its fault line, traced or inferred
    queued: bool = False
    done: bool = False
    closed: bool = False  # returned early: nothing more can be traced for it
    end_ts: float = 0.0  # when it completed
    nbios: int = 0  # bio events so far
    held: list[dict[str, Any]] = field(factory=list)  # failed bio_end lines (see _emit)
    ended: int = 0  # bio_end events so far
    flushes: int = 0  # cache flushes on the device before its last bio ended
    alike: bool = False  # its completion may have been another's alike (same range, result)

    @property
    def final(self) -> bool:
        """Its lines can no longer change."""
        return self.done or self.closed


def moved_to(r: Req, ret: int, ki_pos: int) -> bool:
    """iomap_dio_complete (L143-153): a positive result moved ki_pos by the bytes done
    and then had done_before added, so ki_pos == pos + ret - done_before."""
    return ret > 0 and r.pos + ret - r.begin["done_before"] == ki_pos


def iocb_list(flags: frozenset[str]) -> list[str]:
    out = [f for f in IOCB_FLAGS if f in flags]
    if "SYNC" in out and "DSYNC" not in out:
        out.insert(0, "DSYNC")
    return out
