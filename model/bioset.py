"""``BioSet``: the in-flight bios of one request, as sorted runs of consecutive indices.

A request numbers its bios 0, 1, 2, ... in submission order and they complete in any
order. A frozenset of indices copied at every submission and completion, and sorted at
every wait, made replay quadratic in the number of bios (``dioconf bench replay``). Runs
keep the usual cases (bios submitted in order, completed in order, in reverse or all at
once) at constant cost per operation, and a run of 2**42 bios is one pair of integers.
Immutable: every operation returns a new set.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

from attrs import field, frozen

Run = tuple[int, int]  # [lo, hi): bios lo .. hi-1


def _runs_of(indices: Iterable[int]) -> tuple[Run, ...]:
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ValueError(f"a bio index must be a non-negative integer, got {i!r}")
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return tuple((lo, hi) for lo, hi in runs)


@frozen
class BioSet:
    """Sorted, disjoint, non-adjacent runs ``[lo, hi)`` of bio indices."""

    runs: tuple[Run, ...] = ()
    size: int = field(default=0, eq=False)  # number of bios, cached

    @classmethod
    def of(cls, indices: Iterable[int] | BioSet) -> BioSet:
        """A set from any iterable of indices (a ``BioSet`` is returned as is)."""
        if isinstance(indices, BioSet):
            return indices
        runs = _runs_of(indices)
        return cls(runs, sum(hi - lo for lo, hi in runs))

    @classmethod
    def span(cls, lo: int, hi: int) -> BioSet:
        """Bios ``lo`` .. ``hi - 1``."""
        return cls(((lo, hi),), hi - lo) if hi > lo else cls()

    # -- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.runs:
            yield from range(lo, hi)

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        k = bisect_right(self.runs, (index, 1 << 128)) - 1
        return k >= 0 and self.runs[k][0] <= index < self.runs[k][1]

    @property
    def first(self) -> int:
        """The lowest index: the oldest bio in flight (ValueError when empty)."""
        if not self.runs:
            raise ValueError("no bio in flight")
        return self.runs[0][0]

    def describe(self, limit: int = 16) -> str:
        """``[0, 1, 2]``, or runs ``[0..1023, 2048..4095]`` when there are many bios."""
        if self.size <= limit:
            return "[" + ", ".join(str(i) for i in self) + "]"
        shown = ", ".join(f"{lo}..{hi - 1}" for lo, hi in self.runs[:limit])
        more = f", ... ({len(self.runs) - limit} more runs)" if len(self.runs) > limit else ""
        return f"[{shown}{more}] ({self.size} bios)"

    # -- changing --------------------------------------------------------------------

    def add_span(self, lo: int, hi: int) -> BioSet:
        """Bios ``lo`` .. ``hi - 1`` enter; they must be newer than every bio in the set
        (bios are numbered in submission order)."""
        if hi <= lo:
            return self
        runs = self.runs
        if runs and lo < runs[-1][1]:
            raise ValueError(f"bios {lo}..{hi - 1} are not newer than bio {runs[-1][1] - 1}")
        if runs and runs[-1][1] == lo:
            return BioSet((*runs[:-1], (runs[-1][0], hi)), self.size + hi - lo)
        return BioSet((*runs, (lo, hi)), self.size + hi - lo)

    def add(self, index: int) -> BioSet:
        return self.add_span(index, index + 1)

    def remove(self, index: int) -> BioSet:
        """The set without ``index`` (KeyError when it is not in the set)."""
        runs = self.runs
        k = bisect_right(runs, (index, 1 << 128)) - 1
        if k < 0 or not runs[k][0] <= index < runs[k][1]:
            raise KeyError(index)
        lo, hi = runs[k]
        middle = tuple((a, b) for a, b in ((lo, index), (index + 1, hi)) if b > a)
        return BioSet((*runs[:k], *middle, *runs[k + 1 :]), self.size - 1)


EMPTY = BioSet()
