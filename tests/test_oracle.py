"""The file-level oracle: contents, sizes, crashes, narrowing, checks; and its interval map.

Expected bytes are built here from the pattern's definition (``pattern(wid, pos, n)`` is the
data write ``wid`` puts at ``pos``), never read back from the oracle.
"""

from __future__ import annotations

import random

import pytest
from dioconf.model.oracle import ZERO, Oracle, Problem, Value
from dioconf.model.oracle_map import END, IntervalMap
from dioconf.model.pattern import pattern
from hypothesis import given
from hypothesis import strategies as st

LOFF_MAX = (1 << 63) - 1
KIB4 = 4096


def p(wid: int, pos: int, n: int) -> bytes:
    return pattern(wid, pos, n)


def stale(sector: int) -> bytes:
    return (b"STALE!!!" + sector.to_bytes(8, "big")) * 32


def one_file(*writes: tuple[int, int, int]) -> Oracle:
    """Inode 1 with certain direct writes ``(pos, length, wid)``."""
    o = Oracle().create(1)
    for pos, n, wid in writes:
        o = o.direct_write(1, pos, n, wid, n, durable=False)
    return o


def kinds(problems: list[Problem]) -> list[tuple[int, int, str]]:
    return [(q.start, q.end, q.kind) for q in problems]


# --------------------------------------------------------------------------- interval map


def entries(m: IntervalMap) -> list[tuple[int, int, object]]:
    return list(m.items())


def test_map_split_and_merge() -> None:
    m = IntervalMap(0).assign(0, 100, "a")
    m = m.assign(40, 60, "b")
    assert entries(m) == [(0, 40, "a"), (40, 60, "b"), (60, 100, "a")]
    assert entries(m.assign(40, 60, "a")) == [(0, 100, "a")]  # merged back into one
    assert m.get(39) == "a" and m.get(40) == "b" and m.get(100) == 0
    assert entries(m.assign(0, 100, 0)) == []  # the default is not stored


def test_map_touching_ranges_merge_only_when_equal() -> None:
    m = IntervalMap(0).assign(0, 10, "a").assign(10, 20, "a")
    assert entries(m) == [(0, 20, "a")]
    m = m.assign(20, 30, "b")
    assert entries(m) == [(0, 20, "a"), (20, 30, "b")]
    m = m.assign(30, 40, "a")
    assert entries(m) == [(0, 20, "a"), (20, 30, "b"), (30, 40, "a")]
    assert entries(m.assign(20, 30, "a")) == [(0, 40, "a")]


def test_map_edges_at_the_loff_t_limit() -> None:
    m = IntervalMap(0).assign(LOFF_MAX, END, "x")
    assert entries(m) == [(LOFF_MAX, 1 << 63, "x")]
    assert m.get(LOFF_MAX) == "x" and m.get(LOFF_MAX - 1) == 0
    m = m.assign(LOFF_MAX - 1, LOFF_MAX, "x")
    assert entries(m) == [(LOFF_MAX - 1, 1 << 63, "x")]
    with pytest.raises(ValueError, match="bad range"):
        m.assign(LOFF_MAX, END + 1, "y")
    with pytest.raises(ValueError, match="bad range"):
        m.assign(-1, 5, "y")


def test_map_empty_ranges_change_nothing() -> None:
    m = IntervalMap(0).assign(10, 20, "a")
    assert m.assign(15, 15, "b") == m
    assert m.pieces(15, 15) == [] and m.stored(30, 30) == []
    assert m.update(5, 5, lambda v: "z") == m


def test_map_pieces_updates_and_joins() -> None:
    m = IntervalMap(0).assign(10, 20, 1).assign(30, 40, 2)
    assert m.pieces(0, 50) == [(0, 10, 0), (10, 20, 1), (20, 30, 0), (30, 40, 2), (40, 50, 0)]
    assert m.stored(15, 35) == [(15, 20, 1), (30, 35, 2)]
    updated = [(10, 15, 1), (15, 20, 11), (20, 30, 10), (30, 35, 12), (35, 40, 2)]
    assert entries(m.update(15, 35, lambda v: v + 10)) == updated
    assert entries(m.truncate(35)) == [(10, 20, 1), (30, 35, 2)]
    other = IntervalMap(0).assign(0, 100, 5)
    joined = [(0, 10, 5), (10, 20, 6), (20, 25, 5), (30, 40, 2)]
    assert entries(m.join(other, 0, 25, lambda a, b: a + b)) == joined
    assert entries(m.copy_from(other, 18, 32)) == [(10, 18, 1), (18, 32, 5), (32, 40, 2)]


# --------------------------------------------------------------------------- writes


def test_write_then_read() -> None:
    o = one_file((0, KIB4, 1))
    assert o.check_size(1, KIB4) == []
    assert o.check_read(1, 0, p(1, 0, KIB4)) == []
    assert o.check_read(1, 1000, p(1, 1000, 100)) == []
    assert o.contents(1) == [(0, KIB4, frozenset({Value(1)}))]
    bad = o.check_read(1, 0, p(2, 0, KIB4))
    assert kinds(bad) == [(0, KIB4, "mismatch")]
    assert "write #2" in bad[0].message and "write #1" in bad[0].message
    assert bad[0].message.endswith(".")
    assert kinds(o.check_size(1, 0)) == [(0, KIB4, "size")]


def test_overwrite() -> None:
    o = one_file((0, 8192, 1), (KIB4, KIB4, 2))
    assert o.check_read(1, 0, p(1, 0, KIB4) + p(2, KIB4, KIB4)) == []
    assert kinds(o.check_read(1, 0, p(1, 0, 8192))) == [(KIB4, 8192, "mismatch")]
    assert o.check_size(1, 8192) == []


def test_short_write_changes_only_what_it_reports() -> None:
    o = one_file((0, 8192, 1)).direct_write(1, 0, 8192, 2, KIB4, durable=False)
    assert o.check_read(1, 0, p(2, 0, KIB4) + p(1, KIB4, KIB4)) == []
    assert o.check_size(1, 8192) == []
    o = Oracle().create(1).direct_write(1, 0, 8192, 3, 512, durable=False)
    assert o.check_size(1, 512) == [] and o.check_read(1, 0, p(3, 0, 512)) == []
    assert o.direct_write(1, 8192, 512, 4, 0, durable=True) == o  # nothing written


def test_failed_write_may_or_may_not_have_landed() -> None:
    o = one_file((0, 8192, 1)).direct_write(1, 0, 8192, 2, -5, durable=True)
    assert o.check_size(1, 8192) == []
    assert o.check_read(1, 0, p(1, 0, 8192)) == []  # nothing landed
    assert o.check_read(1, 0, p(2, 0, 8192)) == []  # everything landed
    assert o.check_read(1, 0, p(2, 0, 512) + p(1, 512, 7680)) == []  # torn between sectors
    assert kinds(o.check_read(1, 0, p(3, 0, 8192))) == [(0, 8192, "mismatch")]
    # torn inside a sector: bios are sector-atomic
    assert kinds(o.check_read(1, 0, p(2, 0, 256) + p(1, 256, 7936))) == [(0, 512, "mismatch")]


def test_failed_write_past_eof_changes_nothing() -> None:
    o = one_file((0, KIB4, 1))
    assert o.direct_write(1, KIB4, KIB4, 2, -5, durable=False).contents(1) == o.contents(1)
    o = o.direct_write(1, 2048, KIB4, 2, -5, durable=False)
    assert o.check_size(1, KIB4) == []
    assert o.contents(1) == [
        (0, 2048, frozenset({Value(1)})),
        (2048, KIB4, frozenset({Value(1), Value(2)})),
    ]


def test_growth_exposes_zeros() -> None:
    o = Oracle().create(1).buffered_write(1, 0, 100, 1)
    o = o.direct_write(1, 8192, KIB4, 2, KIB4, durable=False)
    assert o.check_size(1, 12288) == []
    want = p(1, 0, 100) + bytes(8092) + p(2, 8192, KIB4)
    assert o.check_read(1, 0, want) == []
    # adjacent bad ranges of one kind make one problem
    assert kinds(o.check_read(1, 0, p(1, 0, 12288))) == [(100, 12288, "mismatch")]


def test_truncate_down_then_up_reads_zeros() -> None:
    o = one_file((0, 8192, 1)).truncate(1, 100)
    assert o.check_size(1, 100) == [] and o.check_read(1, 0, p(1, 0, 100)) == []
    o = o.truncate(1, 8192)
    assert o.check_read(1, 0, p(1, 0, 100) + bytes(8092)) == []
    assert kinds(o.check_read(1, 0, p(1, 0, 8192))) == [(100, 8192, "mismatch")]
    o = one_file((0, 8192, 1)).truncate(1, 100).direct_write(1, KIB4, KIB4, 2, KIB4, durable=False)
    assert o.check_read(1, 0, p(1, 0, 100) + bytes(3996) + p(2, KIB4, KIB4)) == []


def test_punch() -> None:
    o = one_file((0, 16384, 1)).punch(1, KIB4, KIB4)
    assert o.check_size(1, 16384) == []
    assert o.check_read(1, 0, p(1, 0, KIB4) + bytes(KIB4) + p(1, 8192, 8192)) == []
    assert kinds(o.check_read(1, 0, p(1, 0, 16384))) == [(KIB4, 8192, "mismatch")]
    o = o.punch(1, 12288, 1 << 40)  # past EOF: the size stays
    assert o.check_size(1, 16384) == []
    assert o.check_read(1, 12288, bytes(KIB4)) == []


def test_fallocate() -> None:
    o = one_file((0, KIB4, 1))
    assert o.fallocate(1, 0, 1 << 20, keep_size=True).check_size(1, KIB4) == []
    o = o.fallocate(1, 0, 8192, keep_size=False)
    assert o.check_size(1, 8192) == []
    assert o.check_read(1, 0, p(1, 0, KIB4) + bytes(KIB4)) == []


def test_reflink_moves_data_with_a_shift() -> None:
    o = one_file((0, 8192, 1)).create(2).reflink(1, KIB4, 2, 0, KIB4)
    assert o.check_size(2, KIB4) == []
    assert o.contents(2) == [(0, KIB4, frozenset({Value(1, KIB4)}))]
    assert o.check_read(2, 0, p(1, KIB4, KIB4)) == []  # the bytes written at 4096
    assert kinds(o.check_read(2, 0, p(1, 0, KIB4))) == [(0, KIB4, "mismatch")]
    # a clone of the clone: shifts add up
    o = o.create(3).reflink(2, 1024, 3, 512, 1024)
    assert o.check_size(3, 1536) == []
    assert o.check_read(3, 0, bytes(512) + p(1, 5120, 1024)) == []
    # within one file, to past its EOF
    o = o.reflink(1, 0, 1, 8192, KIB4)
    assert o.check_size(1, 12288) == []
    assert o.check_read(1, 8192, p(1, 0, KIB4)) == []
    # the source changing later does not change the clone
    o = o.direct_write(1, KIB4, KIB4, 9, KIB4, durable=False)
    assert o.check_read(2, 0, p(1, KIB4, KIB4)) == []


# --------------------------------------------------------------------------- crashes


def test_dsync_write_survives_a_crash() -> None:
    o = Oracle().create(1).direct_write(1, 0, KIB4, 1, KIB4, durable=True).crash()
    assert o.check_size(1, KIB4) == []
    assert kinds(o.check_size(1, 0)) == [(0, KIB4, "size")]
    assert o.check_read(1, 0, p(1, 0, KIB4)) == []
    lost = o.check_read(1, 0, bytes(KIB4))
    assert kinds(lost) == [(0, KIB4, "lost")]
    assert "crash" in lost[0].message


def test_plain_write_may_vanish_in_a_crash() -> None:
    o = Oracle().create(1).direct_write(1, 0, KIB4, 1, KIB4, durable=True)
    o = o.direct_write(1, 0, KIB4, 2, KIB4, durable=False).crash()
    assert o.check_read(1, 0, p(1, 0, KIB4)) == []  # old
    assert o.check_read(1, 0, p(2, 0, KIB4)) == []  # new
    assert o.check_read(1, 0, p(2, 0, 512) + p(1, 512, 3584)) == []  # some sectors of each
    assert kinds(o.check_read(1, 0, bytes(KIB4))) == [(0, KIB4, "lost")]
    assert o.check_size(1, KIB4) == []
    # without any sync, the file may also be empty again
    o = one_file((0, KIB4, 1)).crash()
    assert o.check_size(1, 0) == [] and o.check_size(1, KIB4) == []
    assert o.check_read(1, 0, bytes(KIB4)) == [] and o.check_read(1, 0, p(1, 0, KIB4)) == []


def test_fsync_makes_everything_durable() -> None:
    o = one_file((0, KIB4, 1)).fsync(1).crash()
    assert o.check_size(1, KIB4) == [] and kinds(o.check_size(1, 0)) == [(0, KIB4, "size")]
    assert o.check_read(1, 0, p(1, 0, KIB4)) == []
    assert kinds(o.check_read(1, 0, bytes(KIB4))) == [(0, KIB4, "lost")]


def test_durable_write_makes_its_size_durable_too() -> None:
    o = one_file((0, KIB4, 1)).direct_write(1, KIB4, KIB4, 2, KIB4, durable=True).crash()
    assert o.check_size(1, 8192) == [] and o.check_size(1, KIB4) != []
    assert o.check_read(1, 0, bytes(KIB4) + p(2, KIB4, KIB4)) == []
    assert o.check_read(1, 0, p(1, 0, KIB4) + p(2, KIB4, KIB4)) == []


def test_crash_with_several_sizes() -> None:
    o = one_file((0, KIB4, 1)).fsync(1)
    o = o.direct_write(1, KIB4, KIB4, 2, KIB4, durable=False).truncate(1, 2048).crash()
    for size in (2048, KIB4, 8192):
        assert o.check_size(1, size) == []
    for size in (0, 6000, 12288):
        assert kinds(o.check_size(1, size)) == [(min(size, 2048), max(size, 8192), "size")]
    assert o.check_read(1, 0, p(1, 0, 2048)) == []
    assert kinds(o.check_read(1, 0, bytes(2048))) == [(0, 2048, "lost")]
    # [2048, 4096) may be zeros (truncated) or write #1, [4096, 8192) zeros or write #2
    assert o.check_read(1, 0, p(1, 0, 2048) + bytes(6144)) == []
    assert o.check_read(1, 0, p(1, 0, KIB4) + p(2, KIB4, KIB4)) == []
    # the oracle learns the size, then a later extension reads zeros past it
    o = o.observe_size(1, KIB4)
    assert kinds(o.check_size(1, 8192)) == [(KIB4, 8192, "size")]
    o = o.truncate(1, 8192)
    assert kinds(o.check_read(1, KIB4, p(2, KIB4, KIB4))) == [(KIB4, 8192, "mismatch")]
    assert o.check_read(1, KIB4, bytes(KIB4)) == []


def test_extending_a_file_of_uncertain_size() -> None:
    o = one_file((0, KIB4, 1)).crash()  # size 0 or 4096
    o = o.direct_write(1, 8192, 512, 2, 512, durable=False)
    assert o.check_size(1, 8704) == [] and o.check_size(1, KIB4) != []
    assert o.check_read(1, 0, bytes(8192) + p(2, 8192, 512)) == []
    assert o.check_read(1, 0, p(1, 0, KIB4) + bytes(KIB4) + p(2, 8192, 512)) == []


def test_growth_with_an_unobserved_size_keeps_zeros_possible() -> None:
    o = one_file((0, KIB4, 1)).crash().observe(1, 0, p(1, 0, KIB4))  # the size stays 0 or 4096
    grown = o.direct_write(1, 8192, 512, 2, 512, durable=False)
    assert grown.check_read(1, 0, bytes(8192) + p(2, 8192, 512)) == []  # the size was 0
    assert grown.check_read(1, 0, p(1, 0, KIB4) + bytes(KIB4) + p(2, 8192, 512)) == []
    known = o.observe_size(1, KIB4).direct_write(1, 8192, 512, 2, 512, durable=False)
    assert kinds(known.check_read(1, 0, bytes(8192) + p(2, 8192, 512))) == [(0, KIB4, "lost")]


def test_observe_narrows_and_settle_ends_the_crash() -> None:
    o = one_file((0, 8192, 1)).direct_write(1, 0, 8192, 2, -5, durable=False)
    seen = o.observe(1, 0, p(2, 0, 8192))
    assert seen.check_read(1, 0, p(2, 0, 8192)) == []
    assert kinds(seen.check_read(1, 0, p(1, 0, 8192))) == [(0, 8192, "mismatch")]
    torn = o.observe(1, 0, p(2, 0, 512) + p(1, 512, 7680))
    assert torn.contents(1) == [(0, 512, frozenset({Value(2)})), (512, 8192, frozenset({Value(1)}))]
    with pytest.raises(ValueError, match="matches none"):
        o.observe(1, 0, p(3, 0, 8192))
    # after a crash
    c = o.fsync(1).crash()
    assert c.check_read(1, 0, p(1, 0, 8192)) == []
    c = c.observe(1, 0, p(1, 0, 8192)).observe_size(1, 8192)
    assert kinds(c.check_read(1, 0, p(2, 0, 8192))) == [(0, 8192, "lost")]
    with pytest.raises(ValueError, match="not a candidate size"):
        c.observe_size(1, 100)
    # a second crash before settle may still give write #2; after settle it may not
    assert c.crash().check_read(1, 0, p(2, 0, 8192)) == []
    settled = c.settle(1)
    assert kinds(settled.check_read(1, 0, p(2, 0, 8192))) == [(0, 8192, "mismatch")]
    assert kinds(settled.crash().check_read(1, 0, p(2, 0, 8192))) == [(0, 8192, "lost")]


def test_lost_only_where_the_crash_decided() -> None:
    o = Oracle().create(1).direct_write(1, 0, 8192, 1, 8192, durable=True).crash()
    o = o.direct_write(1, KIB4, KIB4, 2, KIB4, durable=False)
    got = kinds(o.check_read(1, 0, bytes(8192)))
    assert got == [(0, KIB4, "lost"), (KIB4, 8192, "mismatch")]


# --------------------------------------------------------------------------- stale data


def test_stale_bytes_are_reported_as_stale() -> None:
    o = one_file((0, 1024, 1))
    bad = o.check_read(1, 0, p(1, 0, 512) + stale(77))
    assert kinds(bad) == [(512, 1024, "stale")]
    assert "stale" in bad[0].message and "write #1" in bad[0].message
    # stale beats lost after a crash, and zeros where data was never written
    o = Oracle().create(1).direct_write(1, 0, 1024, 1, 1024, durable=True).crash()
    assert kinds(o.check_read(1, 0, stale(3) + p(1, 512, 512))) == [(0, 512, "stale")]
    o = Oracle().create(1).truncate(1, 1024)
    assert kinds(o.check_read(1, 0, bytes(512) + stale(9))) == [(512, 1024, "stale")]


def test_wrong_write_next_to_stale_gets_two_problems() -> None:
    o = one_file((0, 2048, 1))
    data = p(7, 0, 512) + stale(1) + p(1, 1024, 1024)
    assert kinds(o.check_read(1, 0, data)) == [(0, 512, "mismatch"), (512, 1024, "stale")]


# --------------------------------------------------------------------------- huge files


def test_write_near_the_loff_t_limit() -> None:
    pos = LOFF_MAX - KIB4
    o = Oracle().create(1).direct_write(1, pos, KIB4, 1, KIB4, durable=True)
    assert o.check_size(1, LOFF_MAX) == []
    assert o.check_read(1, pos, p(1, pos, KIB4)) == []
    assert o.check_read(1, pos - 512, bytes(512) + p(1, pos, 512)) == []
    assert o.crash().check_read(1, pos, p(1, pos, KIB4)) == []
    with pytest.raises(ValueError, match="loff_t"):
        o.direct_write(1, pos + 1, KIB4, 2, KIB4, durable=False)
    assert o.check_sparse(1, LOFF_MAX, [(pos, p(1, pos, KIB4))]) == []
    missing = o.check_sparse(1, LOFF_MAX, [])
    assert kinds(missing) == [(pos, LOFF_MAX, "mismatch")]
    assert "hole" in missing[0].message


def test_check_sparse_with_holes() -> None:
    far = 1 << 40
    o = one_file((0, KIB4, 1), (far, KIB4, 2))
    size = far + KIB4
    assert o.check_sparse(1, size, [(0, p(1, 0, KIB4)), (far, p(2, far, KIB4))]) == []
    # extents may include zeros, and may be cut anywhere
    ext = [(0, p(1, 0, 100)), (100, p(1, 100, 3996) + bytes(50)), (far, p(2, far, KIB4))]
    assert o.check_sparse(1, size, ext) == []
    assert kinds(o.check_sparse(1, size, [(0, p(1, 0, KIB4))])) == [(far, size, "mismatch")]
    first = p(1, 0, 512) + stale(1) + p(1, 1024, 3072)
    bad = o.check_sparse(1, size + 1, [(0, first), (far, p(2, far, KIB4))])
    assert kinds(bad) == [(512, 1024, "stale"), (size, size + 1, "size")]
    with pytest.raises(ValueError, match="ends past size"):
        o.check_sparse(1, KIB4, [(0, p(1, 0, 8192))])
    with pytest.raises(ValueError, match="out of order"):
        o.check_sparse(1, size, [(far, p(2, far, KIB4)), (0, p(1, 0, KIB4))])


def test_memory_grows_with_writes_not_with_file_size() -> None:
    o = Oracle().create(1).truncate(1, 1 << 62)
    rng = random.Random(5)
    for wid in range(1, 1001):
        pos = rng.randrange(0, (1 << 62) - KIB4)
        o = o.direct_write(1, pos, KIB4, wid, KIB4, durable=wid % 3 == 0)
    f = o.file(1)
    assert len(f.now) <= 2 * 1000 + 1 and len(f.since_sync) <= 2 * 1000 + 1
    assert f.sizes == frozenset({1 << 62})
    o = o.crash()
    assert len(o.file(1).now) <= 2 * 1000 + 1


# --------------------------------------------------------------------------- arguments


def test_bad_arguments() -> None:
    o = one_file((0, KIB4, 1))
    with pytest.raises(ValueError, match="unknown inode 9"):
        o.direct_write(9, 0, 512, 2, 512, durable=False)
    with pytest.raises(ValueError, match="pos must be a non-negative integer"):
        o.direct_write(1, -512, 512, 2, 512, durable=False)
    with pytest.raises(ValueError, match="length must be a non-negative integer"):
        o.punch(1, 0, -1)
    with pytest.raises(ValueError, match="exceeds the loff_t limit"):
        o.buffered_write(1, LOFF_MAX, 1, 2)
    with pytest.raises(ValueError, match="wid"):
        o.buffered_write(1, 0, 1, 0)
    with pytest.raises(ValueError, match="ret must be"):
        o.direct_write(1, 0, 512, 2, 1024, durable=False)
    with pytest.raises(ValueError, match="already exists"):
        o.create(1)
    with pytest.raises(ValueError, match="unknown inode 2"):
        o.reflink(1, 0, 2, 0, 512)
    with pytest.raises(ValueError, match="unknown inode 4"):
        o.check_read(4, 0, b"")
    with pytest.raises(ValueError, match="bad value"):
        Value(0, 5)


def test_story_and_repr_are_short() -> None:
    o = one_file((0, KIB4, 1)).direct_write(1, 0, 512, 2, -5, durable=False)
    text = o.story()
    assert "inode 1" in text and "write #1" in text and "write #2" in text
    assert "direct write #2 [0, 512) ret -5" in text
    assert repr(o) == "Oracle({1: size 4096, 2 ranges})"
    assert repr(ZERO) == "ZERO"


# --------------------------------------------------------------------------- property


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 6000), st.integers(0, 3000)),
        st.tuples(st.just("buffered"), st.integers(0, 6000), st.integers(0, 3000)),
        st.tuples(st.just("punch"), st.integers(0, 6000), st.integers(0, 3000)),
        st.tuples(st.just("truncate"), st.integers(0, 8000), st.just(0)),
        st.tuples(st.just("fsync"), st.just(0), st.just(0)),
    ),
    max_size=12,
)


def naive_run(steps: list[tuple[str, int, int]]) -> tuple[Oracle, bytearray]:
    """The steps applied to the oracle and to a plain bytearray."""
    o = Oracle().create(1)
    data = bytearray()
    for wid, (op, pos, n) in enumerate(steps, start=1):
        if op in ("write", "buffered"):
            if op == "write":
                o = o.direct_write(1, pos, n, wid, n, durable=wid % 2 == 0)
            else:
                o = o.buffered_write(1, pos, n, wid)
            if n:
                data.extend(bytes(max(0, pos + n - len(data))))
                data[pos : pos + n] = pattern(wid, pos, n)
        elif op == "punch":
            o = o.punch(1, pos, n)
            end = min(pos + n, len(data))
            if pos < end:
                data[pos:end] = bytes(end - pos)
        elif op == "truncate":
            o = o.truncate(1, pos)
            del data[pos:]
            data.extend(bytes(pos - len(data)))
        else:
            o = o.fsync(1)
    return o, data


@given(steps=ops, flip=st.integers(0, 1 << 16), sector=st.integers(0, 20))
def test_same_verdicts_as_a_bytearray(steps: list, flip: int, sector: int) -> None:
    o, truth = naive_run(steps)
    assert o.check_size(1, len(truth)) == []
    assert o.check_size(1, len(truth) + 1) != []
    assert o.check_read(1, 0, bytes(truth)) == []
    assert o.check_sparse(1, len(truth), [(0, bytes(truth))]) == []
    if not truth:
        return
    candidates = []
    wrong = bytearray(truth)
    wrong[flip % len(truth)] ^= 0x5A
    candidates.append(wrong)
    zeroed = bytearray(truth)  # one sector read as zeros
    start = sector * 512 % len(truth)
    zeroed[start : start + 512] = bytes(len(zeroed[start : start + 512]))
    candidates.append(zeroed)
    for data in candidates:
        problems = o.check_read(1, 0, bytes(data))
        assert (problems == []) == (data == truth)
        diff = [i for i in range(len(truth)) if data[i] != truth[i]]
        for i in diff:  # every wrong byte is inside a problem, every problem near one
            assert any(q.start <= i < q.end for q in problems)
        for q in problems:
            assert any(q.start // 512 * 512 <= i < q.end + 511 for i in diff)
    # after a sync nothing is uncertain: a crash keeps exactly this file
    c = o.fsync(1).crash()
    assert c.check_size(1, len(truth)) == [] and c.check_read(1, 0, bytes(truth)) == []
    assert c.file(1).sizes == frozenset({len(truth)})


def test_a_crash_may_mix_bytes_of_different_histories_in_one_sector() -> None:
    """A 1-byte truncate zeroed the last byte of a written sector, writeback wrote the
    block: after a crash the sector may hold 511 bytes of the write and a zero byte,
    though the two ranges have equal candidate sets (found by ``dioconf run --profile dev
    --seed 1 --fs xfs-like``). A sector torn between two candidates of one history stays
    a problem."""
    far = LOFF_MAX + 1 - (1 << 20)
    o = Oracle().create(1).direct_write(1, far, 512, 1, 512, durable=False)
    o = o.truncate(1, far + 511).truncate(1, far + 4096).crash()
    mixed = p(1, far, 511) + bytes(1)
    assert o.check_read(1, far, mixed) == []
    o2 = one_file((0, KIB4, 1)).crash()
    torn = p(1, 0, 256) + bytes(256)
    assert kinds(o2.check_read(1, 0, torn)) == [(0, 512, "lost")]


def test_a_write_left_in_flight_past_a_truncated_eof_may_come_back() -> None:
    """Write #6 was in flight past the EOF of an uncommitted truncate when the power
    failed: the crash undoes the truncate, and the sectors that landed show (found by
    ``dioconf check`` on a user filesystem, dev profile seed 4). Bytes past the durable
    EOF cannot show."""
    o = Oracle().create(1).direct_write(1, 0, 512, 3, 512, durable=False)
    o = o.direct_write(1, KIB4, 2 * KIB4, 4, 2 * KIB4, durable=True).truncate(1, 512)
    o = o.direct_write(1, 3584, 2 * KIB4, 6, -1, durable=False)
    assert o.check_read(1, 0, p(3, 0, 512)) == []  # now: nothing past EOF changed
    o = o.crash()
    assert o.check_size(1, 3 * KIB4) == [] and o.check_size(1, 512) == []
    assert o.check_read(1, 3584, p(6, 3584, 512)) == []  # landed
    assert o.check_read(1, 3584, bytes(512)) == []  # or not
    assert o.check_read(1, KIB4, p(6, KIB4, KIB4)) == []
    assert o.check_read(1, KIB4, p(4, KIB4, KIB4)) == []


def test_a_buffered_extension_reaches_the_disk_a_page_at_a_time() -> None:
    """Writeback moves the on-disk i_size to the end of the pages it wrote: a crash after
    a commit forced by another file may find the file grown to any page boundary of a
    buffered write that extended it (found by ``dioconf run --profile dev --seed 1 --fs
    reflink``), never past it nor to a size inside a page."""
    o = Oracle().create(1).direct_write(1, 0, 512, 1, 512, durable=True)
    o = o.buffered_write(1, 0, 3 * KIB4, 2, KIB4).crash()
    for size in (512, KIB4, 2 * KIB4, 3 * KIB4):
        assert o.check_size(1, size) == [], size
    assert kinds(o.check_size(1, KIB4 + 512)) == [(512, 3 * KIB4, "size")]
    o = Oracle().create(1).buffered_write(1, 0, 3 * KIB4, 2).crash()  # no granule: no steps
    assert kinds(o.check_size(1, KIB4)) == [(0, 3 * KIB4, "size")]


def test_every_crash_rule_names_its_families_and_kernel_functions():
    from dioconf.model.crash_rules import ALL, CRASH_RULES

    names = [r.name for r in CRASH_RULES]
    assert len(names) == len(set(names))
    for r in CRASH_RULES:
        assert r.families and set(r.families) <= set(ALL), r.name
        assert "_" in r.kernel or "->" in r.kernel, r.name  # a kernel function is cited


def test_a_direct_write_end_inside_the_in_core_size_is_a_crash_candidate():
    """size-at-dio-end: in-core 4608 (a buffered write), a direct write of [0, 512)
    completes: a commit may find 512 (xfs_new_eof), which the in-core size never was."""
    o = Oracle().create(1).buffered_write(1, 4096, 512, 1, 4096)
    o = o.direct_write(1, 0, 512, 2, 512, durable=False)
    sizes = o.file(1).sizes_since_sync
    assert 512 in sizes and 4608 in sizes
    assert 100 not in sizes  # nothing else: a size no write ended at
