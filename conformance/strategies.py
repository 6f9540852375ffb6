"""Hypothesis strategies for the conformance machine, aimed at the edges.

Offsets are drawn as a base near something that matters (0, a block or page boundary,
the current i_size rounded either way, the loff_t limit) plus a small signed delta in
logical blocks, sectors or bytes; lengths favour one logical block, one fs block, a bio's
worth of pages and the odd sizes in between. Everything a request can vary is drawn here
(flags, faults, done_before, the race plan), so the shrinker minimises all of it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from ..model.types import LOFF_MAX
from .ops import Pick, Plan

EIO, EAGAIN = -5, -11
FAR = LOFF_MAX + 1 - (1 << 20)  # 1 MiB below the loff_t limit (2**63)
STATUSES = st.sampled_from((0, 0, 0, EIO))
SYNC = st.sampled_from((True, True, True, False))  # async requests one time in four


def offset(draw: Any, size: int, bs: int, lbs: int, page: int,
           edges: tuple[int, ...] = ()) -> int:  # fmt: skip
    """A file offset near a boundary that matters: block, page and i_size boundaries,
    the loff_t limit, and ``edges`` (where the file's data ends and holes begin)."""
    base = draw(st.sampled_from((
        0, 0, bs, page, 4 * bs, size, size, size - size % bs, -(-size // bs) * bs,
        16 * bs, 256 * page, FAR, *edges, *edges,
    )))  # fmt: skip
    unit = draw(st.sampled_from((lbs, lbs, bs, 512, 1)))
    delta = draw(st.integers(-2, 2)) * unit
    return max(0, min(base + delta, FAR + 64 * bs))


def length(draw: Any, bs: int, lbs: int, page: int) -> int:
    """A request length: one logical block, blocks, a bio's worth of pages, odd sizes."""
    n = draw(st.sampled_from((
        lbs, lbs, 2 * lbs, bs, bs, 2 * bs, 3 * bs + lbs, 8 * bs, 256 * page + bs,
        lbs + 1, 100,
    )))  # fmt: skip
    return int(n)


def plan(draw: Any, max_len: int = 6) -> Plan:
    """Completions at the race points of one request (see `conformance.ops`)."""
    entry = st.one_of(st.none(), st.builds(Pick, st.integers(0, 3), STATUSES))
    return tuple(draw(st.lists(entry, max_size=max_len)))


def iocb_flags(draw: Any, write: bool, atomic: bool = True) -> tuple[str, ...]:
    """RWF_* flags (ATOMIC only where the filesystem takes atomic writes at all)."""
    pool = ["NOWAIT"] + (["DSYNC", "SYNC"] + (["ATOMIC"] if atomic else []) if write else [])
    picked = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
    order = ("DSYNC", "SYNC", "NOWAIT", "ATOMIC")
    return tuple(f for f in order if f in picked)


def dio_flags(draw: Any, write: bool) -> tuple[str, ...]:
    pool = ["PARTIAL", "FORCE_WAIT"] + (["OVERWRITE_ONLY"] if write else [])
    picked = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
    return tuple(sorted(picked))


def fault_at(draw: Any, n: int, page: int) -> int | None:
    """Where the user buffer stops being pinnable, if it does (a page multiple; after
    some progress more often than not)."""
    if draw(st.integers(0, 5)):
        return None
    pages = max(1, n // page)
    return draw(st.sampled_from((0, 1, 1, pages // 2 or 1, pages))) * page
