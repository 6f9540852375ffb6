"""File-level verdicts on a direct write once it has returned (`conformance.harness`):
a NOWAIT write answered -EAGAIN changed nothing; no cached page of a completed write's
range is older than the write."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ops import DirectWrite

if TYPE_CHECKING:
    from .harness import Harness


def bio_statuses(h: Harness, req: int) -> set[int]:
    """The statuses the bios of request ``req`` completed with (so far)."""
    return {e["status"] for e in h.backend.events_since(0)
            if e["ev"] == "bio_end" and e.get("req") == req}  # fmt: skip


def check_unchanged(h: Harness, op: DirectWrite) -> None:
    """A NOWAIT write the filesystem refused with -EAGAIN changed nothing: the caller
    retries it without NOWAIT (or not at all), so data written before the refusal is a
    change the caller was told did not happen (883a790a8440: xfs submitted part of a
    NOWAIT write, then failed the next mapping with -EAGAIN)."""
    f = h.files[op.file]
    end = min(op.pos + op.length, f.size)
    if op.pos >= end:
        return
    problems = h.oracle.check_read(f.ino, op.pos, h.backend.read_view(f.ino, op.pos, end))
    if problems:
        h.fail("contents", f"NOWAIT write #{op.wid} [{op.pos}, {op.pos + op.length}) returned "
                           "-EAGAIN but changed the file (a NOWAIT write must span one "
                           "mapping or be refused before any I/O): "
                           + "; ".join(str(p) for p in problems[:3]))  # fmt: skip


def check_cache_fresh(h: Harness, op: DirectWrite, n: int) -> None:
    """Once a direct write has completed, no cached page of its range holds data older
    than the write: pages cached before it or while it ran (a racing buffered read) are
    invalidated after ->end_io (iomap_dio_complete: kiocb_invalidate_post_direct_write,
    "has to be after ->end_io()"). A pinned page cannot be invalidated ("tough"): the
    seed allows it, so it is skipped."""
    if not h.caps.page_cache_pins or n <= 0:
        return
    f = h.files[op.file]
    ps = h.page_size
    start, end = op.pos, min(op.pos + n, f.size)
    for index, page in sorted(h.backend.cached_pages(f.ino).items()):
        a, b = max(start, index * ps), min(end, (index + 1) * ps)
        if a >= b or page.pinned:
            continue
        data = bytes(page.data[a - index * ps : b - index * ps])
        problems = h.oracle.check_read(f.ino, a, data)
        if problems:
            h.fail("contents", f"a cached page of [{a}, {b}) holds data older than direct "
                               f"write #{op.wid}, which has completed (the page cache must be "
                               "invalidated after ->end_io, iomap_dio_complete): "
                               + "; ".join(str(p) for p in problems[:3]))  # fmt: skip
