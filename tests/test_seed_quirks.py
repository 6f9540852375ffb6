"""model/seed_quirks.py: the seed behaviours the harness allows, each with the range it
touches (and the one finding, named as such)."""

from __future__ import annotations

from dioconf.model import seed_quirks as Q


def test_legacy_zero_page_covers_the_rest_of_a_failed_write():
    a = Q.legacy_zero_page_after_fault("legacy", -14, 8192, 16384, 4096)
    assert a is not None and (a.start, a.end, a.finding) == (12288, 24576, False)
    assert Q.legacy_zero_page_after_fault("iomap", -14, 8192, 16384, 4096) is None
    assert Q.legacy_zero_page_after_fault("legacy", 4096, 8192, 16384, 4096) is None
    assert Q.legacy_zero_page_after_fault("legacy", -14, 8192, 16384, None) is None


def test_head_pad_after_a_dropped_fault_covers_the_written_part_of_the_block():
    a = Q.iomap_head_pad_after_dropped_fault(5120, 0, 5120, 4096)
    assert a is not None and (a.start, a.end, a.finding) == (4096, 5120, True)
    assert Q.iomap_head_pad_after_dropped_fault(8192, 0, 8192, 4096) is None  # block end
    assert Q.iomap_head_pad_after_dropped_fault(-14, 0, 0, 4096) is None


def test_nowait_eagain_landed_is_a_finding_only_with_an_eagain_bio():
    assert Q.nowait_eagain_landed(-11, True, True)
    assert not Q.nowait_eagain_landed(-11, True, False)
    assert not Q.nowait_eagain_landed(-11, False, True)
