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

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from attrs import frozen
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from ..model.types import LOFF_MAX
from .ops import Pick, Plan

T = TypeVar("T")
EIO, EAGAIN = -5, -11
FAR = LOFF_MAX + 1 - (1 << 20)  # 1 MiB below the loff_t limit (2**63)
# a bio fails one time in four: -EIO, or -EAGAIN (BLK_STS_AGAIN) one time in three of those
STATUSES = st.sampled_from((0, 0, 0, EIO, 0, 0, EIO, 0, 0, EAGAIN, 0, 0))
_INDEX: dict[int, SearchStrategy[int]] = {}
# Every index is drawn below 100. Hypothesis sometimes draws an integer constant it found
# in the source of the local modules loaded (never one below 100 in magnitude); which
# modules are loaded differs between `dioconf run` and a pytest process, and so would the
# derandomized ci examples. Below 100 they are the same everywhere.
CHOICES = 100


def drawer(data: Any) -> Any:
    """``data.draw`` without its per-draw bookkeeping (a note of every value drawn, a
    check that the strategy does not use ``random``): the rules say what they drew in
    their own notes, and the strategies here use no ``random``. Drawing through the
    underlying ``ConjectureData`` is what ``DataObject.draw`` does after its checks
    (semi-stable API; without it, the plain ``data.draw``)."""
    cd = getattr(data, "conjecture_data", None)
    return cd.draw if cd is not None else data.draw


def pick(draw: Any, options: Sequence[T]) -> T:
    """One of ``options`` (the first is where shrinking goes)."""
    n = len(options)
    s = _INDEX.get(n)
    if s is None:
        if n > CHOICES:
            raise ValueError(f"pick: {n} options, more than {CHOICES}: split the draw")
        s = _INDEX[n] = st.integers(0, n - 1)
    return options[draw(s)]


def choose(draw: Any, *tables: Sequence[Any]) -> tuple[Any, ...]:
    """One option of each table from a single draw (an index into their product, the
    first table varying fastest): fewer draws, so less of Hypothesis's per-draw cost;
    index 0, where shrinking goes, is the first option of every table. The product must
    stay within `CHOICES`."""
    i = pick(draw, range(math.prod(len(t) for t in tables)))
    out = []
    for t in tables:
        i, r = divmod(i, len(t))
        out.append(t[r])
    return tuple(out)


_DELTAS = (0, -1, 1, -2, 2)


def offset(draw: Any, size: int, bs: int, lbs: int, page: int,
           edges: tuple[int, ...] = ()) -> int:  # fmt: skip
    """A file offset near a boundary that matters: block, page and i_size boundaries
    (i_size less one logical block: an overlapping append when EOF is unaligned), the
    loff_t limit, and ``edges`` (where the file's data starts and ends)."""
    base = pick(draw, (
        0, 0, bs, page, 4 * bs, size, size, size - lbs, size - size % bs,
        -(-size // bs) * bs, 16 * bs, 256 * page, FAR, *edges, *edges,
    ))  # fmt: skip
    unit, delta = choose(draw, _units(bs, lbs), _DELTAS)
    return max(0, min(base + delta * unit, FAR + 64 * bs))


def new_size(draw: Any, size: int, bs: int, lbs: int, page: int,
             edges: tuple[int, ...] = ()) -> int:  # fmt: skip
    """A size to truncate to: an offset as above, and one time in three moved off the
    logical-block grid by an odd number of bytes (i_size inside a dio block)."""
    new = offset(draw, size, bs, lbs, page, edges)
    if pick(draw, (False, False, True)):
        new = max(0, new + pick(draw, (1, lbs - 1, lbs // 2 + 1, -1)))
    return new


def lengths(bs: int, lbs: int, page: int) -> tuple[int, ...]:
    """Request lengths: one logical block, blocks, a bio's worth of pages, odd sizes."""
    return (
        lbs, lbs, 2 * lbs, bs, bs, 2 * bs, 3 * bs + lbs, 8 * bs, 256 * page + bs,
        lbs + 1, 100,
    )  # fmt: skip


def length(draw: Any, bs: int, lbs: int, page: int) -> int:
    """A request length (`lengths`)."""
    return pick(draw, lengths(bs, lbs, page))


def offset_base(draw: Any, size: int, bs: int, lbs: int, page: int,
                edges: tuple[int, ...] = ()) -> int:  # fmt: skip
    """The base of `offset` alone (the delta comes from a request's `Knobs`)."""
    return pick(draw, (
        0, 0, bs, page, 4 * bs, size, size, size - lbs, size - size % bs,
        -(-size // bs) * bs, 16 * bs, 256 * page, FAR, *edges, *edges,
    ))  # fmt: skip


def _units(bs: int, lbs: int) -> tuple[int, ...]:
    """An offset delta's units: logical block (twice), block, sector, byte."""
    return (lbs, lbs, bs, 512, 1)



@frozen
class Knobs:
    """What a direct request varies that does not depend on the file: drawn as one rule
    argument (Hypothesis draws those without the per-draw bookkeeping of ``st.data()``)
    and mapped onto the file's geometry by the rule."""

    iocb: tuple[str, ...]  # RWF_* flags (a legacy rule drops ATOMIC)
    sync: bool
    dio: tuple[str, ...]  # IOMAP_DIO_* flags (a legacy rule drops them)
    done_i: int  # into the rule's done_before table
    fault_i: int  # into `fault_from`'s table
    len_i: int  # into `lengths`
    unit_i: int  # the offset delta's unit: logical block, block, sector, byte
    delta: int  # the offset delta, in units
    plan: Plan

    def offset(self, base: int, bs: int, lbs: int) -> int:
        return max(0, min(base + self.delta * _units(bs, lbs)[self.unit_i], FAR + 64 * bs))


@st.composite
def _knobs(draw: Any, write: bool) -> Knobs:
    iocb, sync = choose(draw, _IOCB[write, True], _SYNC_T)
    dio, done_i = choose(draw, _DIO[write], range(5))
    len_i, unit_i = choose(draw, range(11), range(5))
    fault_i, delta = choose(draw, range(20), _DELTAS)
    return Knobs(iocb, sync, dio, done_i, fault_i, len_i, unit_i, delta, plan(draw, sync))


def fault_from(i: int, n: int, page: int, data: int | None = None) -> int | None:
    """`fault_at`'s choice ``i`` for a request of ``n`` bytes."""
    pages = max(1, n // page)
    inside = max(1, min(pages - 1, (data or 0) // page))
    at = (*(None,) * 15, 1, 0, pages // 2 or 1, inside, pages)[i]
    return None if at is None else at * page


# a plan: its length (0 to 6 race points), then its entries, the first race point first.
# An entry below 12 completes nothing at its point; else bio k of those in flight
# completes with a status: 0 three times in five, -EIO or -EAGAIN once. (Nothing after
# the plan's end completes either.)
_ENTRY_STATUS = (0, 0, 0, EIO, EAGAIN)
_ENTRIES = range(32)
# what kind of plan: a drawn list, none at all (async only, one time in two: bios stay in
# flight for the `complete` rule, and the submitter drops its reference first), or one
# time in four (of the rest) the shortcut "bio 0 fails at race point k" (an error racing
# the next mapping)
_SYNC_KINDS = (*("list",) * 12, 0, 1, 2, 3)
_ASYNC_KINDS = (*("none",) * 16, *("list",) * 12, 0, 1, 2, 3)
_LENGTHS = range(7)


def _entry(e: int) -> Pick | None:
    return None if e < 12 else Pick((e - 12) % 4, _ENTRY_STATUS[(e - 12) // 4])


def plan(draw: Any, sync: bool = True) -> Plan:
    """Completions at the race points of one request (see `conformance.ops`)."""
    kind = pick(draw, _SYNC_KINDS if sync else _ASYNC_KINDS)
    if kind == "none":
        return ()
    if kind != "list":
        return (None,) * kind + (Pick(0, EIO),)
    return tuple(_entry(pick(draw, _ENTRIES)) for _ in range(pick(draw, _LENGTHS)))


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


_SYNC_T = (True, True, True, False)  # async requests one time in four


def iocb_flags(draw: Any, write: bool, atomic: bool = True) -> tuple[str, ...]:
    """RWF_* flags, at most two (ATOMIC only where the filesystem takes atomic writes)."""
    return pick(draw, _IOCB[write, atomic])


def fault_at(draw: Any, n: int, page: int, data: int | None = None) -> int | None:
    """Where the user buffer stops being pinnable, if it does (one request in four): a
    page multiple, after some progress more often than not. ``data``: bytes of the
    request inside i_size (a read), so that a fault after progress there is drawn too."""
    return fault_from(pick(draw, range(20)), n, page, data)


WRITE_KNOBS = _knobs(True)
READ_KNOBS = _knobs(False)
