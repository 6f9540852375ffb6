"""Hypothesis strategies for the conformance machine, aimed at the edges.

Offsets are drawn as a base near something that matters (0, a block or page boundary,
the current i_size rounded either way, the loff_t limit) plus a small signed delta in
logical blocks, sectors or bytes; lengths favour one logical block, one fs block, a bio's
worth of pages and the odd sizes in between. Everything a request can vary is drawn here
(flags, faults, done_before, the race plan), so the shrinker minimises all of it.

A choice among n options is drawn as an index from a strategy made once per n (`pick`):
building a ``sampled_from`` per draw cost more than the operation it chose. An index
shrinks towards 0, so the first option of each tuple is the simplest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ..model.types import LOFF_MAX
from .ops import Pick, Plan

T = TypeVar("T")
EIO, EAGAIN = -5, -11
FAR = LOFF_MAX + 1 - (1 << 20)  # 1 MiB below the loff_t limit (2**63)
# a bio fails one time in four: -EIO, or -EAGAIN (BLK_STS_AGAIN) one time in three of those
STATUSES = st.sampled_from((0, 0, 0, EIO, 0, 0, EIO, 0, 0, EAGAIN, 0, 0))
SYNC = st.sampled_from((True, True, True, False))  # async requests one time in four
_INDEX: dict[int, SearchStrategy[int]] = {}
_DELTA = st.integers(-2, 2)
BOOL = st.booleans()


def pick(draw: Any, options: Sequence[T]) -> T:
    """One of ``options`` (the first is where shrinking goes)."""
    n = len(options)
    s = _INDEX.get(n)
    if s is None:
        s = _INDEX[n] = st.integers(0, n - 1)
    return options[draw(s)]


def offset(draw: Any, size: int, bs: int, lbs: int, page: int,
           edges: tuple[int, ...] = ()) -> int:  # fmt: skip
    """A file offset near a boundary that matters: block, page and i_size boundaries
    (i_size less one logical block: an overlapping append when EOF is unaligned), the
    loff_t limit, and ``edges`` (where the file's data starts and ends)."""
    base = pick(draw, (
        0, 0, bs, page, 4 * bs, size, size, size - lbs, size - size % bs,
        -(-size // bs) * bs, 16 * bs, 256 * page, FAR, *edges, *edges,
    ))  # fmt: skip
    unit = pick(draw, (lbs, lbs, bs, 512, 1))
    delta = draw(_DELTA) * unit
    return max(0, min(base + delta, FAR + 64 * bs))


def new_size(draw: Any, size: int, bs: int, lbs: int, page: int,
             edges: tuple[int, ...] = ()) -> int:  # fmt: skip
    """A size to truncate to: an offset as above, and one time in three moved off the
    logical-block grid by an odd number of bytes (i_size inside a dio block)."""
    new = offset(draw, size, bs, lbs, page, edges)
    if pick(draw, (False, False, True)):
        new = max(0, new + pick(draw, (1, lbs - 1, lbs // 2 + 1, -1)))
    return new


def length(draw: Any, bs: int, lbs: int, page: int) -> int:
    """A request length: one logical block, blocks, a bio's worth of pages, odd sizes."""
    return int(pick(draw, (
        lbs, lbs, 2 * lbs, bs, bs, 2 * bs, 3 * bs + lbs, 8 * bs, 256 * page + bs,
        lbs + 1, 100,
    )))  # fmt: skip


# a plan entry as one integer: below 12 nothing completes at that point; else bio k of
# those in flight completes with a status, 0 three times in five, -EIO or -EAGAIN once
_ENTRIES = st.lists(st.integers(0, 31), max_size=6)
_ENTRY_STATUS = (0, 0, 0, EIO, EAGAIN)
_FAIL_AT = st.integers(0, 3)


def _entry(e: int) -> Pick | None:
    return None if e < 12 else Pick((e - 12) % 4, _ENTRY_STATUS[(e - 12) // 4])


def plan(draw: Any, sync: bool = True) -> Plan:
    """Completions at the race points of one request (see `conformance.ops`); one time
    in four the shortcut "bio 0 fails at point k" (an error racing later mappings). An
    async request has none one time in two: its bios stay in flight for the ``complete``
    rule (and the submitter drops its reference first)."""
    if not sync and pick(draw, (True, False)):
        return ()
    if pick(draw, (False, False, False, True)):
        return (None,) * draw(_FAIL_AT) + (Pick(0, EIO),)
    return tuple(_entry(e) for e in draw(_ENTRIES))


def _combos(pool: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """No flag (three times, the simplest first), each flag alone, each pair."""
    pairs = tuple((a, b) for i, a in enumerate(pool) for b in pool[i + 1 :])
    return ((), (), (), *((f,) for f in pool), *pairs)


_WRITE_FLAGS = ("DSYNC", "SYNC", "NOWAIT", "ATOMIC")
_IOCB = {
    (w, a): _combos(_WRITE_FLAGS[: 4 if a else 3] if w else ("NOWAIT",))
    for w in (False, True)
    for a in (False, True)
}
_DIO = {False: _combos(("FORCE_WAIT", "PARTIAL")),
        True: _combos(("FORCE_WAIT", "OVERWRITE_ONLY", "PARTIAL"))}  # fmt: skip


def iocb_flags(draw: Any, write: bool, atomic: bool = True) -> tuple[str, ...]:
    """RWF_* flags, at most two (ATOMIC only where the filesystem takes atomic writes)."""
    return pick(draw, _IOCB[write, atomic])


def dio_flags(draw: Any, write: bool) -> tuple[str, ...]:
    """IOMAP_DIO_* flags the caller passes, at most two."""
    return pick(draw, _DIO[write])


_FAULT = st.integers(0, 4)


def fault_at(draw: Any, n: int, page: int, data: int | None = None) -> int | None:
    """Where the user buffer stops being pinnable, if it does (one request in five): a
    page multiple, after some progress more often than not. ``data``: bytes of the
    request inside i_size (a read), so that a fault after progress there is drawn too."""
    if draw(_FAULT):
        return None
    pages = max(1, n // page)
    inside = max(1, min(pages - 1, (data or 0) // page))
    return pick(draw, (1, 0, pages // 2 or 1, inside, pages)) * page
