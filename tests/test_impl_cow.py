"""The copy-on-write reference filesystems; every trace replays against the model."""

from __future__ import annotations

import pytest
from dioconf.impl.device import find_stale
from dioconf.impl.fs.cow import BtrfsLikeFs, ReflinkFs
from dioconf.impl.world import World

from .impl_support import pattern, replays, world_factory

KIB = 1024


@pytest.fixture
def world(tmp_path):
    yield from world_factory(tmp_path)


def test_reflink_write_copies_on_write_and_leaves_the_source_alone(world):
    w = world(ReflinkFs)
    src, dst = w.create(), w.create()
    w.pwrite(src, 0, pattern(32 * KIB))
    w.fs.reflink(src, dst)
    assert w.pwrite(dst, 8 * KIB, pattern(8 * KIB, 4)).ret == 8 * KIB
    assert w.pread(src, 0, 32 * KIB).data == pattern(32 * KIB)
    want = pattern(32 * KIB)[: 8 * KIB] + pattern(8 * KIB, 4) + pattern(32 * KIB)[16 * KIB :]
    assert w.pread(dst, 0, 32 * KIB).data == want
    ends = [e.get("end_io") for e in w.trace.events if e["ev"] == "complete"]
    assert ["COW"] in ends


def test_cow_remap_is_lost_in_a_crash_unless_synced(world):
    w = world(ReflinkFs)
    src, dst = w.create(), w.create()
    w.pwrite(src, 0, pattern(16 * KIB), flags={"DSYNC"})
    w.fs.reflink(src, dst)
    w.fsync()
    w.pwrite(dst, 0, pattern(4 * KIB, 7))  # remapped in memory only
    w.crash()
    assert w.pread(dst, 0, 16 * KIB).data == pattern(16 * KIB)  # the shared old data
    w.pwrite(dst, 0, pattern(4 * KIB, 8), flags={"DSYNC"})
    w.crash()
    assert w.pread(dst, 0, 4 * KIB).data == pattern(4 * KIB, 8)
    assert w.pread(src, 0, 4 * KIB).data == pattern(4 * KIB)


def test_unaligned_write_over_shared_blocks_falls_back(world):
    w = world(ReflinkFs)
    src, dst = w.create(), w.create()
    w.pwrite(src, 0, pattern(8 * KIB))
    w.fs.reflink(src, dst)
    assert w.pwrite(dst, 512, pattern(512)).ret == 0  # -ENOTBLK: buffered fallback's turn


def test_btrfs_like_always_cows_and_reads_back(world):
    w = world(BtrfsLikeFs)
    f = w.create()
    w.pwrite(f, 0, pattern(16 * KIB))
    first = next(e["addr"] for e in w.trace.events if e["ev"] == "map")
    w.pwrite(f, 0, pattern(16 * KIB, 2))
    second = [e["addr"] for e in w.trace.events if e["ev"] == "map"][-1]
    assert first != second  # an overwrite went to new blocks
    assert w.pread(f, 0, 16 * KIB).data == pattern(16 * KIB, 2)
    assert find_stale(w.pread(f, 0, 16 * KIB).data, 0) == []


def test_btrfs_like_fallbacks(world):
    w = world(BtrfsLikeFs)
    f = w.create()
    w.pwrite(f, 0, pattern(16 * KIB))
    assert w.pwrite(f, 512, pattern(512)).ret == 0  # misaligned: buffered fallback
    w.fs.mark(f, 8 * KIB, 4 * KIB, "compressed")
    assert w.pread(f, 0, 16 * KIB).ret == 8 * KIB  # stops at the compressed extent
    assert w.pwrite(f, 8 * KIB, pattern(4 * KIB), flags={"NOWAIT"}).ret == -11


def test_btrfs_like_fault_over_data_gives_a_short_result_through_iomap_end(world):
    """btrfs_dio_iomap_end: nothing submitted for the mapping -> -ENOTBLK; with no
    progress the read returns 0 (the caller falls back to buffered I/O)."""
    w = world(BtrfsLikeFs)
    f = w.create()
    w.pwrite(f, 0, pattern(16 * KIB))
    assert w.pread(f, 0, 16 * KIB, dio={"PARTIAL"}, fault_at=0).ret == 0


def test_btrfs_like_direct_write_retries_after_a_fault_with_done_before(tmp_path):
    """btrfs_direct_write: the first attempt faults after 8 KiB (PARTIAL), the pages are
    faulted in and the rest goes with done_before = 8192; the result is cumulative."""
    w = World(BtrfsLikeFs, image=tmp_path / "img", size=64 << 20, page_cache=True)
    f = w.create()
    assert w.file_write(f, 0, pattern(16 * KIB), fault_at=8 * KIB) == 16 * KIB
    begins = [e for e in w.trace.events if e["ev"] == "begin"]
    assert [(b["pos"], b["len"], b["done_before"]) for b in begins] == [
        (0, 16 * KIB, 0),
        (8 * KIB, 8 * KIB, 8 * KIB),
    ]
    assert w.pread(f, 0, 16 * KIB).data == pattern(16 * KIB)
    replays(w)
    w.close()


def test_btrfs_like_misaligned_write_falls_back_to_buffered(tmp_path):
    w = World(BtrfsLikeFs, image=tmp_path / "img", size=64 << 20, page_cache=True)
    f = w.create()
    w.file_write(f, 0, pattern(8 * KIB))
    assert w.file_write(f, 512, pattern(512, 5)) == 512
    want = pattern(8 * KIB)[:512] + pattern(512, 5) + pattern(8 * KIB)[1024:]
    assert w.pread(f, 0, 8 * KIB).data == want
    assert w.file_write(f, 1024, pattern(512, 6), flags={"NOWAIT"}) == -11
    replays(w)
    w.close()
