"""An immutable, sparse map from half-open byte ranges to values.

``IntervalMap`` maps every position of ``[0, 2**63)`` to a value; positions it does not
store hold its ``default``. It stores disjoint ranges ``[start, end)`` as three parallel
sorted tuples, so its size is the number of stored ranges, never the number of bytes.
Entries are kept canonical: no stored range holds the default, and two touching ranges never
hold equal values (they are merged). Two maps with the same contents are therefore equal.

Every change returns a new map; the work is ``O(log n)`` to find the place plus one tuple
copy (``O(n)`` in C).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from attrs import field, frozen

__all__ = ["END", "IntervalMap"]

END = 1 << 63
"""Exclusive bound of the positions (one past the largest loff_t byte)."""

V = TypeVar("V")
W = TypeVar("W")

Piece = tuple[int, int, V]


def _check_range(start: int, end: int) -> None:
    if type(start) is not int or type(end) is not int or not 0 <= start <= end <= END:
        raise ValueError(f"bad range [{start!r}, {end!r}): need 0 <= start <= end <= 2**63")


@frozen
class IntervalMap(Generic[V]):
    """Sparse map ``[start, end) -> value`` over ``[0, 2**63)``; absent means ``default``."""

    default: V
    starts: tuple[int, ...] = field(default=(), repr=False)
    ends: tuple[int, ...] = field(default=(), repr=False)
    values: tuple[V, ...] = field(default=(), repr=False)

    # -- queries --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of stored ranges."""
        return len(self.starts)

    def items(self) -> Iterator[Piece]:
        """Stored ranges ``(start, end, value)`` in order."""
        return zip(self.starts, self.ends, self.values, strict=True)

    def get(self, pos: int) -> V:
        """The value at ``pos``."""
        i = bisect_right(self.starts, pos) - 1
        return self.values[i] if i >= 0 and pos < self.ends[i] else self.default

    def _span(self, start: int, end: int) -> tuple[int, int]:
        """Indexes ``[i, j)`` of the stored ranges that overlap ``[start, end)``."""
        i = bisect_right(self.ends, start)  # first range with end > start
        return i, bisect_left(self.starts, end, i)  # ranges before j have start < end

    def stored(self, start: int, end: int) -> list[Piece]:
        """Stored ranges overlapping ``[start, end)``, clipped to it."""
        _check_range(start, end)
        if start == end:
            return []
        i, j = self._span(start, end)
        starts, ends, values = self.starts, self.ends, self.values
        return [(max(starts[k], start), min(ends[k], end), values[k]) for k in range(i, j)]

    def pieces(self, start: int, end: int) -> list[Piece]:
        """``[start, end)`` cut into ranges of one value each, the default ranges included."""
        out: list[Piece] = []
        pos = start
        for s, e, v in self.stored(start, end):
            if s > pos:
                out.append((pos, s, self.default))
            out.append((s, e, v))
            pos = e
        if pos < end:
            out.append((pos, end, self.default))
        return out

    # -- changes --------------------------------------------------------------------------

    def splice(
        self, start: int, end: int, pieces: Sequence[Piece], merge: bool = True
    ) -> IntervalMap[V]:
        """``[start, end)`` replaced by ``pieces`` (sorted, disjoint, inside it); gaps: default.

        ``merge=False`` keeps the boundaries of the new pieces even where a neighbour holds
        an equal value (the map is then no longer canonical: equal contents may compare
        unequal)."""
        _check_range(start, end)
        if start == end:
            return self
        starts, ends, values = self.starts, self.ends, self.values
        i, j = self._span(start, end)
        lo = i - 1 if i > 0 and ends[i - 1] == start else i  # a touching left neighbour
        hi = j + 1 if j < len(starts) and starts[j] == end else j  # a touching right one
        window: list[Piece] = [(starts[k], ends[k], values[k]) for k in range(lo, i)]
        if i < j and starts[i] < start:
            window.append((starts[i], start, values[i]))
        pos = start
        for s, e, v in pieces:
            if s < pos or e > end or s > e:
                raise ValueError(f"piece [{s}, {e}) is out of order or outside [{start}, {end})")
            pos = e
            if s < e and v != self.default:
                window.append((s, e, v))
        if i < j and ends[j - 1] > end:
            window.append((end, ends[j - 1], values[j - 1]))
        window.extend((starts[k], ends[k], values[k]) for k in range(j, hi))
        merged: list[Piece] = []
        for s, e, v in window:
            if merge and merged and merged[-1][1] == s and merged[-1][2] == v:
                merged[-1] = (merged[-1][0], e, v)
            else:
                merged.append((s, e, v))
        return IntervalMap(
            self.default,
            starts[:lo] + tuple(p[0] for p in merged) + starts[hi:],
            ends[:lo] + tuple(p[1] for p in merged) + ends[hi:],
            values[:lo] + tuple(p[2] for p in merged) + values[hi:],
        )

    def assign(self, start: int, end: int, value: V) -> IntervalMap[V]:
        """``[start, end)`` set to ``value``."""
        return self.splice(start, end, [(start, end, value)])

    def update(
        self, start: int, end: int, fn: Callable[[V], V], merge: bool = True
    ) -> IntervalMap[V]:
        """Each value in ``[start, end)`` (the default too) replaced by ``fn(value)``
        (``merge``: see `splice`)."""
        _check_range(start, end)
        pieces = [(s, e, fn(v)) for s, e, v in self.pieces(start, end)]
        return self.splice(start, end, pieces, merge)

    def truncate(self, at: int) -> IntervalMap[V]:
        """Everything at and after ``at`` reset to the default."""
        return self.splice(at, END, [])

    def copy_from(self, other: IntervalMap[V], start: int, end: int) -> IntervalMap[V]:
        """``[start, end)`` set to what ``other`` holds there."""
        _check_range(start, end)
        return self.splice(start, end, other.stored(start, end))

    def join(
        self,
        other: IntervalMap[W],
        start: int,
        end: int,
        fn: Callable[[V, W], V],
        merge: bool = True,
    ) -> IntervalMap[V]:
        """Each position of ``[start, end)`` set to ``fn(self value, other value)``
        (``merge``: see `splice`)."""
        _check_range(start, end)
        mine, theirs = self.pieces(start, end), other.pieces(start, end)
        out: list[Piece] = []
        a = b = 0
        pos = start
        while pos < end:
            _, ae, av = mine[a]
            _, be, bv = theirs[b]
            stop = min(ae, be)
            out.append((pos, stop, fn(av, bv)))
            pos = stop
            a += ae == stop
            b += be == stop
        return self.splice(start, end, out, merge)
