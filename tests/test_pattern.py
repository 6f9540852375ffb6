"""The suite's write pattern: layout worked out by hand, slicing, shifts, and decoding."""

from __future__ import annotations

from itertools import pairwise

import pytest
from dioconf.model.pattern import describe, is_foreign, pattern, shifted, summary
from hypothesis import given
from hypothesis import strategies as st


def unit(wid: int, u: int) -> bytes:
    """Unit ``u`` of write ``wid``, spelled out from the format's definition."""
    return b"DIOW" + wid.to_bytes(4, "little") + u.to_bytes(8, "little")


def stale(sector: int) -> bytes:
    """A never-written sector as the implementation's device fills it."""
    return (b"STALE!!!" + sector.to_bytes(8, "big")) * 32


# --------------------------------------------------------------------------- pattern


def test_first_units_literally() -> None:
    assert pattern(7, 0, 32) == (
        b"DIOW\x07\x00\x00\x00" + b"\x00" * 8 + b"DIOW\x07\x00\x00\x00\x01" + b"\x00" * 7
    )
    assert pattern(0x01020304, 16, 16) == b"DIOW\x04\x03\x02\x01\x01" + b"\x00" * 7


def test_unaligned_slice() -> None:
    # [21, 41) is bytes 5..16 of unit 1 and 0..9 of unit 2
    assert pattern(9, 21, 20) == unit(9, 1)[5:] + unit(9, 2)[:9]
    assert pattern(9, 21, 3) == b"\x00\x00\x00"  # the high bytes of wid 9
    assert pattern(9, 0, 0) == b"" and pattern(9, 12345, 0) == b""


def test_offsets_near_the_loff_t_limit() -> None:
    last = (1 << 63) - 16  # the last whole unit before 2**63
    assert pattern(3, last, 16) == unit(3, (1 << 59) - 1)
    assert pattern(3, (1 << 63) - 8, 8) == ((1 << 59) - 1).to_bytes(8, "little")
    assert pattern(3, 1 << 63, 16) == unit(3, 1 << 59)


def test_big_buffers_slice_consistently() -> None:
    big = pattern(5, 3, 3 << 20)
    assert len(big) == 3 << 20
    assert big[1000:1100] == pattern(5, 1003, 100)
    assert big[-16:] == pattern(5, 3 + (3 << 20) - 16, 16)


@pytest.mark.parametrize("wid", [0, -1, 1 << 32, True, 1.0])
def test_bad_wid(wid: object) -> None:
    with pytest.raises(ValueError, match="wid"):
        pattern(wid, 0, 16)  # type: ignore[arg-type]


def test_bad_ranges() -> None:
    with pytest.raises(ValueError, match="pos"):
        pattern(1, -1, 16)
    with pytest.raises(ValueError, match="length"):
        pattern(1, 0, -16)


def test_shifted() -> None:
    # data written at 4096 and cloned to 0: the bytes of units 256 and 257
    assert shifted(4, 4096, 0, 32) == unit(4, 256) + unit(4, 257)
    assert shifted(4, -16, 16, 16) == unit(4, 0)  # cloned from 0 to 16
    assert shifted(4, 0, 33, 40) == pattern(4, 33, 40)
    with pytest.raises(ValueError, match="before the start"):
        shifted(4, -10, 5, 1)


@given(
    wid=st.integers(1, (1 << 32) - 1),
    pos=st.integers(0, 1 << 62),
    n=st.integers(0, 200),
    cut=st.integers(0, 200),
)
def test_pattern_splits_anywhere(wid: int, pos: int, n: int, cut: int) -> None:
    cut = min(cut, n)
    whole = pattern(wid, pos, n)
    assert len(whole) == n
    assert whole == pattern(wid, pos, cut) + pattern(wid, pos + cut, n - cut)


# --------------------------------------------------------------------------- decoding


def test_describe_runs() -> None:
    pos = 1600  # unit 100
    data = bytes(32) + unit(3, 102) + unit(3, 103) + stale(5)[:16] + unit(4, 300)
    assert describe(data, pos) == [
        (1600, 1632, "zeros"),
        (1632, 1664, "write #3"),
        (1664, 1680, "stale/never written"),
        (1680, 1696, "write #4 (from offset 4800)"),  # unit 300 starts at 4800
    ]
    assert summary(unit(3, 102) + unit(3, 103), 1632) == "write #3"
    assert summary(b"", 0) == "nothing"


def test_describe_moved_data() -> None:
    assert describe(shifted(6, 8192, 512, 1024), 512) == [
        (512, 1536, "write #6 (from offset 8704)")
    ]


def test_hints_name_ambiguous_bytes() -> None:
    # bytes 5..8 of a unit are the high bytes of a small wid: zeros unless told otherwise
    assert describe(pattern(3, 5, 3), 5) == [(5, 8, "zeros")]
    assert describe(pattern(3, 5, 3), 5, hints=[(3, 0)]) == [(5, 8, "write #3")]


def test_stale_sectors_are_foreign() -> None:
    data = pattern(1, 0, 512) + stale(10) + stale(11) + bytes(512)
    assert is_foreign(data, 0) == [(512, 1536)]
    # cut at both ends and not unit aligned: the partial units count too
    assert is_foreign(data[100:1310], 100) == [(512, 1310)]
    # the last 8 bytes, "STALE!!!" alone at an edge, may be a wid and the low bytes of a unit
    # number (data moved by 4 modulo 16): not provably foreign
    assert is_foreign(stale(10)[3:40], 3) == [(3, 32)]
    labels = [lab for _, _, lab in describe(data, 0)]
    assert labels == ["write #1", "stale/never written", "zeros"]


def test_writes_zeros_and_moves_are_not_foreign() -> None:
    assert is_foreign(bytes(4096), 0) == []
    assert is_foreign(pattern(5, 7, 5000), 7) == []
    assert is_foreign(shifted(5, 4096, 100, 3000), 100) == []
    assert is_foreign(shifted(5, -4000, 8000, 3000), 8000) == []
    # a write boundary inside a unit, and a small write inside zeros
    assert is_foreign(pattern(1, 0, 10) + pattern(2, 10, 22), 0) == []
    assert is_foreign(bytes(4) + pattern(9, 4, 8) + bytes(4), 0) == []
    assert is_foreign(bytes(4) + pattern(9, 4, 8) + bytes(36), 0) == []
    # what later writes left of a reflinked block: no magic, moved by a multiple of 16
    assert is_foreign(bytes(4) + shifted(9, 4096, 4, 12) + pattern(2, 16, 32), 0) == []
    # slices too short to hold a magic
    assert is_foreign(pattern(5, 4, 8), 4) == []
    assert is_foreign(pattern(5, 0, 6), 0) == []
    assert is_foreign(b"", 0) == []


def test_one_bad_byte_marks_its_unit() -> None:
    data = bytearray(pattern(3, 0, 256))
    data[80] = ord("X")  # the magic of unit 5
    assert is_foreign(data, 0) == [(80, 96)]
    data = bytearray(pattern(3, 0, 256))
    data[97] ^= 0x40  # the magic of unit 6
    assert is_foreign(bytes(data), 0) == [(96, 112)]


def test_a_whole_unit_with_the_magic_is_some_write() -> None:
    data = bytearray(pattern(3, 0, 64))
    data[20] ^= 0x40  # unit 1 now carries wid 3 ^ 0x40 = 67: another write's data
    assert is_foreign(data, 0) == []
    # the magic is the same for every write: write #3 runs on until the changed byte
    assert describe(data, 0) == [(0, 20, "write #3"), (20, 36, "write #67"), (36, 64, "write #3")]


def test_a_short_edge_may_be_moved_unit_numbers() -> None:
    # 12 bytes at an edge avoid every magic byte when read as offsets 4..15 of a unit: they
    # may be the wid and unit number of data moved by 4 modulo 16, so they are not foreign.
    # 13 or more bytes always cover a magic byte.
    assert is_foreign(stale(0)[:12], 0) == []
    assert is_foreign(stale(0)[:13], 0) == [(0, 13)]


def test_garbage_after_a_short_write_is_foreign() -> None:
    # write #2 covers [0, 8) of unit 0; the rest of the unit is not its unit number
    data = pattern(2, 0, 8) + b"\xfe" * 8 + pattern(2, 16, 16)
    assert is_foreign(data, 0) == [(0, 16)]


@given(
    wid=st.integers(1, (1 << 32) - 1),
    pos=st.integers(0, 1 << 40),
    n=st.integers(1, 300),
    shift=st.integers(-(1 << 20), 1 << 20),
)
def test_any_write_slice_is_not_foreign(wid: int, pos: int, n: int, shift: int) -> None:
    shift = max(shift, -pos)
    data = shifted(wid, shift, pos, n)
    assert is_foreign(data, pos) == []
    runs = describe(data, pos)
    assert runs[0][0] == pos and runs[-1][1] == pos + n
    assert all(a[1] == b[0] for a, b in pairwise(runs))
