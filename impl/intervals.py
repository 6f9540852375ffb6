"""A set of disjoint half-open byte ranges, kept sorted.

`IntervalSet` stores ranges ``[start, end)`` of non-negative integers (up to ``2**64``) as
two parallel sorted lists, so its memory is proportional to the number of ranges and never
to the number of bytes they cover. Ranges are kept maximal: two ranges of the set never
overlap and never touch (``add`` merges adjacent ranges).

Every operation finds its place with `bisect` (``O(log n)``) and then touches only the
``k`` ranges it concerns; the list slice replacement behind ``add``/``remove`` moves the
tail of the lists with one ``memmove``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

__all__ = ["MAX_POS", "IntervalSet"]

MAX_POS = 1 << 64
"""Largest end a range may have (exclusive bound of the positions)."""


def _check(start: int, end: int) -> None:
    if type(start) is not int or type(end) is not int:
        raise ValueError(f"range bounds must be ints, got start={start!r}, end={end!r}")
    if start < 0 or start > end or end > MAX_POS:
        raise ValueError(f"bad range [{start}, {end}): need 0 <= start <= end <= 2**64")


class IntervalSet:
    """Sorted set of disjoint, non-adjacent half-open ranges ``[start, end)``."""

    __slots__ = ("_ends", "_starts", "_total")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._total = 0
        for start, end in ranges:
            self.add(start, end)

    # -- mutation -------------------------------------------------------------------------

    def add(self, start: int, end: int) -> None:
        """Add ``[start, end)``, merging it with every range it overlaps or touches."""
        if type(start) is not int or type(end) is not int or not 0 <= start <= end <= MAX_POS:
            _check(start, end)
        if start == end:
            return
        starts, ends = self._starts, self._ends
        i = bisect_left(ends, start)  # first range with end >= start (touching counts)
        if i < len(starts) and starts[i] <= start and end <= ends[i]:
            return  # already inside one range
        j = bisect_right(starts, end, i)  # ranges [i, j) have start <= end
        if i < j:
            self._total -= sum(ends[i:j]) - sum(starts[i:j])
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
        self._total += end - start
        starts[i:j] = [start]
        ends[i:j] = [end]

    def remove(self, start: int, end: int) -> None:
        """Remove ``[start, end)``, splitting the ranges that straddle its bounds."""
        _check(start, end)
        if start == end:
            return
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, start)  # first range with end > start
        j = bisect_left(starts, end, i)  # ranges [i, j) have start < end
        if i == j:
            return
        self._total -= min(end, ends[j - 1]) - max(start, starts[i])
        self._total -= sum(ends[i : j - 1]) - sum(starts[i + 1 : j])
        new_starts: list[int] = []
        new_ends: list[int] = []
        if starts[i] < start:
            new_starts.append(starts[i])
            new_ends.append(start)
        if ends[j - 1] > end:
            new_starts.append(end)
            new_ends.append(ends[j - 1])
        starts[i:j] = new_starts
        ends[i:j] = new_ends

    def clear(self) -> None:
        """Remove every range."""
        self._starts.clear()
        self._ends.clear()
        self._total = 0

    # -- queries --------------------------------------------------------------------------

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of the set inside ``[start, end)``, in order, clipped to it."""
        _check(start, end)
        if start == end:
            return []
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, start)
        j = bisect_left(starts, end, i)
        out = list(zip(starts[i:j], ends[i:j], strict=True))
        if out:
            first_start, first_end = out[0]
            if first_start < start:
                out[0] = (start, first_end)
            last_start, last_end = out[-1]
            if last_end > end:
                out[-1] = (last_start, end)
        return out

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not covered by the set, in order."""
        out: list[tuple[int, int]] = []
        pos = start
        for s, e in self.overlapping(start, end):
            if s > pos:
                out.append((pos, s))
            pos = e
        if pos < end:
            out.append((pos, end))
        return out

    def covers(self, start: int, end: int) -> bool:
        """Whether every position of ``[start, end)`` is in the set (true when empty)."""
        _check(start, end)
        if start == end:
            return True
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def total(self) -> int:
        """Number of positions covered."""
        return self._total

    def __contains__(self, pos: object) -> bool:
        if type(pos) is not int:
            return False
        i = bisect_right(self._starts, pos) - 1
        return i >= 0 and pos < self._ends[i]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(list(self._starts), list(self._ends), strict=True)

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> IntervalSet:
        """An independent copy."""
        new = IntervalSet()
        new._starts = list(self._starts)
        new._ends = list(self._ends)
        new._total = self._total
        return new

    def __repr__(self) -> str:
        body = ", ".join(f"[{s}, {e})" for s, e in self)
        return f"IntervalSet({body})"
