"""IntervalSet: hand cases, and a property test against a set of positions."""

from __future__ import annotations

import pytest
from dioconf.impl.intervals import MAX_POS, IntervalSet
from hypothesis import given
from hypothesis import strategies as st


def ranges(s: IntervalSet) -> list[tuple[int, int]]:
    return list(s)


def test_empty() -> None:
    s = IntervalSet()
    assert ranges(s) == [] and len(s) == 0 and s.total() == 0 and not s
    assert s.overlapping(0, 10) == []
    assert s.gaps(0, 10) == [(0, 10)]
    assert s.gaps(5, 5) == []
    assert 0 not in s


def test_add_merges_overlapping_and_adjacent() -> None:
    s = IntervalSet()
    s.add(10, 20)
    s.add(30, 40)
    assert ranges(s) == [(10, 20), (30, 40)]
    s.add(20, 25)  # touches the first
    assert ranges(s) == [(10, 25), (30, 40)]
    s.add(25, 30)  # fills the gap exactly: one range
    assert ranges(s) == [(10, 40)]
    s.add(0, 5)
    s.add(50, 60)
    s.add(3, 55)  # swallows everything around it
    assert ranges(s) == [(0, 60)]
    assert s.total() == 60 and len(s) == 1
    s.add(7, 7)  # empty: no effect
    assert ranges(s) == [(0, 60)]


def test_remove_splits() -> None:
    s = IntervalSet([(0, 100)])
    s.remove(10, 20)
    assert ranges(s) == [(0, 10), (20, 100)]
    s.remove(0, 10)
    assert ranges(s) == [(20, 100)]
    s.remove(90, 200)
    assert ranges(s) == [(20, 90)]
    s.add(95, 99)
    s.remove(50, 97)
    assert ranges(s) == [(20, 50), (97, 99)]
    s.remove(0, 1000)
    assert ranges(s) == [] and s.total() == 0
    s.remove(3, 3)
    assert ranges(s) == []


def test_overlapping_and_gaps_are_clipped() -> None:
    s = IntervalSet([(10, 20), (30, 40), (50, 60)])
    assert s.overlapping(15, 55) == [(15, 20), (30, 40), (50, 55)]
    assert s.overlapping(20, 30) == []
    assert s.overlapping(0, 100) == [(10, 20), (30, 40), (50, 60)]
    assert s.gaps(15, 55) == [(20, 30), (40, 50)]
    assert s.gaps(0, 100) == [(0, 10), (20, 30), (40, 50), (60, 100)]
    assert s.gaps(31, 39) == []
    assert s.covers(31, 39) and s.covers(10, 20) and not s.covers(10, 21)
    assert s.covers(25, 25)


def test_contains_iter_len_total_copy_clear() -> None:
    s = IntervalSet([(0, 4), (8, 12)])
    assert 0 in s and 3 in s and 4 not in s and 8 in s and 12 not in s
    assert "3" not in s
    assert len(s) == 2 and s.total() == 8
    c = s.copy()
    s.add(4, 8)
    assert ranges(c) == [(0, 4), (8, 12)] and ranges(s) == [(0, 12)]
    assert c != s and c == IntervalSet([(8, 12), (0, 4)])
    s.clear()
    assert ranges(s) == [] and s.total() == 0 and len(c) == 2
    assert repr(c) == "IntervalSet([0, 4), [8, 12))"


def test_huge_positions_cost_nothing() -> None:
    s = IntervalSet()
    s.add(0, MAX_POS)
    s.remove(1 << 40, (1 << 40) + 512)
    assert len(s) == 2 and s.total() == MAX_POS - 512
    assert s.gaps(0, MAX_POS) == [(1 << 40, (1 << 40) + 512)]
    assert MAX_POS - 1 in s


@pytest.mark.parametrize(("start", "end"), [(5, 4), (-1, 3), (0, MAX_POS + 1), (-5, -1)])
def test_bad_ranges_are_rejected_with_the_values(start: int, end: int) -> None:
    s = IntervalSet()
    for op in (s.add, s.remove, s.overlapping, s.gaps):
        with pytest.raises(ValueError, match=str(start)):
            op(start, end)


def test_non_int_bounds_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be ints"):
        IntervalSet().add(1.0, 2)  # type: ignore[arg-type]


# -- property test against a naive model -----------------------------------------------------

SPAN = 64
bounds = st.tuples(st.integers(0, SPAN), st.integers(0, SPAN)).map(sorted).map(tuple)
ops = st.lists(st.tuples(st.sampled_from(["add", "remove"]), bounds), max_size=40)


def runs(positions: set[int], start: int, end: int) -> list[tuple[int, int]]:
    """Maximal runs of ``positions`` inside ``[start, end)``."""
    out: list[tuple[int, int]] = []
    for p in range(start, end):
        if p in positions:
            if out and out[-1][1] == p:
                out[-1] = (out[-1][0], p + 1)
            else:
                out.append((p, p + 1))
    return out


@given(ops=ops, query=bounds)
def test_matches_a_set_of_positions(
    ops: list[tuple[str, tuple[int, int]]], query: tuple[int, int]
) -> None:
    s = IntervalSet()
    model: set[int] = set()
    for op, (a, b) in ops:
        if op == "add":
            s.add(a, b)
            model |= set(range(a, b))
        else:
            s.remove(a, b)
            model -= set(range(a, b))
        # Invariants: sorted, disjoint, never touching, non-empty; total and len agree.
        rs = ranges(s)
        assert all(x < y for x, y in rs)
        assert all(rs[i][1] < rs[i + 1][0] for i in range(len(rs) - 1))
        assert rs == runs(model, 0, SPAN)
        assert s.total() == len(model) and len(s) == len(rs)
    qa, qb = query
    assert s.overlapping(qa, qb) == runs(model, qa, qb)
    assert s.gaps(qa, qb) == runs(set(range(qa, qb)) - model, qa, qb)
    assert s.covers(qa, qb) == (set(range(qa, qb)) <= model)
    for p in range(SPAN + 1):
        assert (p in s) == (p in model)
    c = s.copy()
    c.clear()
    assert ranges(s) == runs(model, 0, SPAN)
