"""State of one file in the oracle (``oracle.py``): values, candidate maps and transitions.

A byte's value is ``Value(wid, shift)``: the bytes write ``wid`` put at ``offset + shift``
(``shift`` is non-zero for data a reflink moved), or ``ZERO``. ``FileOracle``'s methods are
the operations' effects on one file; arguments were validated by ``Oracle``.
"""

from __future__ import annotations

from attrs import field, frozen

from .evolve import evolve
from .oracle_map import IntervalMap
from .pattern import label, pattern

__all__ = [
    "SECTOR",
    "ZERO",
    "ZERO_SET",
    "FileOracle",
    "Value",
    "expected_bytes",
    "match_piece",
]

SECTOR = 512  # bios are atomic at this granularity: a read may be torn between sectors
RECENT = 8  # operations remembered per file for failure messages


@frozen(order=True)
class Value:
    """Write ``wid``'s data moved by ``shift``: its bytes at ``x`` were written at ``x + shift``."""

    wid: int
    shift: int = 0

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.wid < 1 << 32 or (self.wid == 0 and self.shift != 0):
            raise ValueError(f"bad value: wid {self.wid}, shift {self.shift}")

    def moved(self, d: int) -> Value:
        """This value after a reflink copied it from ``x + d`` to ``x``."""
        return self if self.wid == 0 or d == 0 else Value(self.wid, self.shift + d)

    def __repr__(self) -> str:
        return "ZERO" if self.wid == 0 else f"Value({self.wid}, {self.shift})"


ZERO = Value(0, 0)
ZERO_SET = frozenset({ZERO})
_EMPTY: IntervalMap[frozenset[Value]] = IntervalMap(ZERO_SET)
_NOT_CRASHED: IntervalMap[bool] = IntervalMap(False)

Piece = tuple[int, int, frozenset[Value]]


def expected_bytes(value: Value, start: int, length: int) -> bytes:
    """The bytes ``value`` puts at ``[start, start + length)``."""
    if value.wid == 0:
        return bytes(length)
    return pattern(value.wid, start + value.shift, length)


def match_piece(start: int, end: int, cands: frozenset[Value], data: bytes) -> list[Piece]:
    """Which candidates ``data`` (read at ``[start, end)``) matches, per sector.

    The whole range is compared against each candidate first; on a miss it is cut at
    absolute 512-byte boundaries. Returns ``(a, b, matching)`` ranges covering
    ``[start, end)``; consecutive sectors with the same matching set are merged, and an
    empty set marks bytes no candidate explains.
    """
    exps = {v: expected_bytes(v, start, end - start) for v in cands}
    whole = frozenset(v for v, x in exps.items() if data == x)
    if whole:
        return [(start, end, whole)]
    out: list[Piece] = []
    a = start
    while a < end:
        b = min(end, (a // SECTOR + 1) * SECTOR)
        chunk = data[a - start : b - start]
        m = frozenset(v for v, x in exps.items() if chunk == x[a - start : b - start])
        if out and out[-1][2] == m:
            out[-1] = (out[-1][0], b, m)
        else:
            out.append((a, b, m))
        a = b
    return out


def _add_zero(values: frozenset[Value]) -> frozenset[Value]:
    return values | ZERO_SET


def _union(mine: frozenset[Value], theirs: frozenset[Value]) -> frozenset[Value]:
    return mine | theirs


@frozen(slots=False)
class FileOracle:
    """What one file may hold now and after a crash (see ``oracle.py``)."""

    sizes: frozenset[int] = frozenset({0})
    now: IntervalMap[frozenset[Value]] = _EMPTY
    since_sync: IntervalMap[frozenset[Value]] = _EMPTY
    sizes_since_sync: frozenset[int] = frozenset({0})
    # ranges whose `now` came from crash() and were neither rewritten nor settled since
    crashed: IntervalMap[bool] = _NOT_CRASHED
    recent: tuple[str, ...] = field(default=(), eq=False, repr=False)

    def noted(self, note: str) -> FileOracle:
        """This state with ``note`` added to the recent operations."""
        return evolve(self, recent=(*self.recent[1 - RECENT :], note))

    def _record(self, *ranges: tuple[int, int]) -> FileOracle:
        """``now`` may have changed in ``ranges``: a crash may give those values too.

        The ranges keep their own boundaries in ``since_sync`` even next to an equal
        candidate set: bytes with different histories may come back from different
        candidates inside one sector (a truncate zeroed one byte of a written sector,
        then writeback wrote the block: the crash may give the sector mixed)."""
        since, crashed = self.since_sync, self.crashed
        for a, b in ranges:
            if a < b:
                since = since.join(self.now, a, b, _union, merge=False)
                if crashed:
                    crashed = crashed.assign(a, b, False)
        sizes = self.sizes_since_sync | self.sizes
        return evolve(self, since_sync=since, crashed=crashed, sizes_since_sync=sizes)

    def _grow(self, end: int) -> tuple[FileOracle, tuple[int, int]]:
        """i_size becomes at least ``end``, and the range whose contents that changes.

        Space past the old EOF reads as zeros. With several candidate sizes, a byte between
        the smallest and ``end`` may be past the real EOF (zero) or not (old contents).
        """
        lo, hi = min(self.sizes), max(self.sizes)
        if end <= lo:
            return self, (0, 0)
        now = self.now if hi == lo else self.now.update(lo, min(end, hi), _add_zero)
        return evolve(self, now=now, sizes=frozenset(max(s, end) for s in self.sizes)), (lo, end)

    def grown(self, end: int) -> FileOracle:
        """fallocate without KEEP_SIZE up to ``end``."""
        f, band = self._grow(end)
        return f._record(band)

    def direct_write(
        self, start: int, end: int, wid: int, ret: int, durable: bool, granule: int = 0
    ) -> FileOracle:
        """Write ``wid`` of ``[start, end)`` returned ``ret`` (see ``Oracle.direct_write``)."""
        new = frozenset({Value(wid)})
        if ret < 0:  # any sector of the range inside i_size may or may not have landed
            return self._failed_write(start, end, new)
        stop = start + ret
        if ret == 0:
            return self
        f, band = self._grow(stop)
        f = evolve(f, now=f.now.assign(start, stop, new))._record(band, (start, stop))
        if durable:  # the sync committed a size covering the data (crash rule dsync-durable)
            since = f.since_sync.copy_from(f.now, start, stop)
            # (the in-core sizes are all >= stop now; the commit may have taken stop itself)
            sizes = frozenset(s for s in f.sizes_since_sync if s >= stop) | f.sizes | {stop}
            return evolve(f, since_sync=since, sizes_since_sync=sizes)
        ends = [stop]  # a direct write's ->end_io moves the on-disk size (size-at-dio-end)
        if granule:  # written back a page at a time: the size at each page's ioend
            # (from the page before: a write past EOF zeroes and dirties the old EOF page)
            ends += range(max(granule, start - start % granule), stop + granule, granule)
        return f.disk_size_at(ends)

    def disk_size_at(self, ends: list[int]) -> FileOracle:
        """Data up to each of ``ends`` reached the disk: a commit may find the on-disk size
        moved to ``min(end, i_size)`` (`crash_rules`: size-at-dio-end, size-at-writeback)."""
        floor = min(self.sizes_since_sync)
        extra = frozenset(c for e in ends for s in self.sizes if (c := min(e, s)) > floor)
        if extra <= self.sizes_since_sync:
            return self
        return evolve(self, sizes_since_sync=self.sizes_since_sync | extra)

    def _failed_write(self, start: int, end: int, new: frozenset[Value]) -> FileOracle:
        """A write that failed or never completed: any sector of it may have landed. Now,
        that shows inside i_size; after a crash, also inside a durable i_size larger than
        the current one (the crash undoes a truncate, the landed sectors are there)."""
        stop = min(end, max(self.sizes))
        f = self
        if start < stop:
            f = evolve(f, now=f.now.update(start, stop, lambda vs: vs | new))._record((start, stop))
        lo, hi = max(start, stop), min(end, max(self.sizes_since_sync))
        if lo < hi:  # (boundaries kept: the bytes on either side have other histories)
            since = f.since_sync.update(lo, hi, lambda vs: vs | new, merge=False)
            f = evolve(f, since_sync=since)
        return f

    def truncate(self, size: int) -> FileOracle:
        """ftruncate: contents past ``size`` dropped, growth reads as zeros."""
        lo, hi = min(self.sizes), max(self.sizes)
        now = self.now
        if lo < hi and size > lo:
            now = now.update(lo, min(size, hi), _add_zero)
        f = evolve(self, now=now.truncate(size), sizes=frozenset({size}))
        return f._record((min(lo, size), max(hi, size)))

    def may_be_zeroed(self, start: int, end: int) -> FileOracle:
        """``[start, end)`` (inside EOF) may also read as zeros now."""
        stop = min(end, max(self.sizes))
        if start >= stop:
            return self
        f = evolve(self, now=self.now.update(start, stop, lambda vs: vs | ZERO_SET))
        return f._record((start, stop))

    def punch(self, start: int, end: int) -> FileOracle:
        """Hole punch of ``[start, end)``; nothing past EOF changes."""
        stop = min(end, max(self.sizes))
        if start >= stop:
            return self
        return evolve(self, now=self.now.assign(start, stop, ZERO_SET))._record((start, stop))

    def reflinked(self, start: int, end: int, pieces: list[Piece]) -> FileOracle:
        """``[start, end)`` replaced by ``pieces`` (a reflink's moved source values)."""
        if start == end:
            return self
        f, band = self._grow(end)
        return evolve(f, now=f.now.splice(start, end, pieces))._record(band, (start, end))

    def crashed_copy(self) -> FileOracle:
        """The file after a crash: any of the values since the last sync, any such size."""
        hi = max(self.sizes_since_sync)
        now = self.since_sync.truncate(hi)
        return evolve(
            self,
            now=now,
            since_sync=now,
            sizes=self.sizes_since_sync,
            crashed=_NOT_CRASHED.assign(0, hi, True) if hi else _NOT_CRASHED,
        )

    def story(self, ino: int) -> str:
        """A few lines for a failure message."""
        lines = [f"inode {ino}: i_size {_sizes(self.sizes)}; now {_entries(self.now)}"]
        if self.since_sync != self.now or self.sizes_since_sync != self.sizes:
            lines.append(
                f"  after a crash: i_size {_sizes(self.sizes_since_sync)}; "
                f"{_entries(self.since_sync)}"
            )
        if self.recent:
            lines.append("  recent: " + "; ".join(self.recent))
        return "\n".join(lines)


def _sizes(sizes: frozenset[int]) -> str:
    return " or ".join(map(str, sorted(sizes)))


def _entries(m: IntervalMap[frozenset[Value]], limit: int = 8) -> str:
    if not len(m):
        return "all zeros"
    shown = [
        f"[{s}, {e}) " + " or ".join(label(v.wid, v.shift, s) for v in sorted(vs))
        for s, e, vs in list(m.items())[:limit]
    ]
    more = f", and {len(m) - limit} more ranges" if len(m) > limit else ""
    return ", ".join(shown) + more + " (zeros elsewhere)"
