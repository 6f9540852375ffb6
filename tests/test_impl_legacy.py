"""The implementation's legacy engine (__blockdev_direct_IO) on a real image file, with
the get_block filesystem (DIO_LOCKING | DIO_SKIP_HOLES, as ext2 passes them).

Every test's World records a trace; the ``world`` fixture replays it through the model
at the end, so each scenario here is also a model-versus-implementation comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any

import pytest
from dioconf.impl.api import (
    EAGAIN,
    EFAULT,
    EINVAL,
    EIO,
    ENOSPC,
    ContractError,
    DioError,
)
from dioconf.impl.device import find_stale
from dioconf.impl.fs.getblock import BufferHead, GetBlockFs
from dioconf.impl.world import World

from .impl_support import pattern, world_factory

KIB = 1024


def LegacyWorld(fs_factory: Callable[[Any], Any], **kw: Any) -> World:
    """A World whose engine is __blockdev_direct_IO (with the filesystem's dio flags)."""
    return World(fs_factory, engine="legacy", **kw)


def events(w: World, ev: str | None = None) -> list[dict[str, Any]]:
    assert w.trace is not None
    return [e for e in w.trace.events if ev is None or e["ev"] == ev]


@pytest.fixture
def world(tmp_path):
    yield from world_factory(tmp_path, GetBlockFs, engine="legacy")


def last(w: World, ev: str) -> dict[str, Any]:
    return events(w, ev)[-1]


# --------------------------------------------------------------------------- data


def test_data_reads_back(world):
    w = world()
    f = w.create()
    data = pattern(64 * KIB)
    assert w.pwrite(f, 0, data).ret == 64 * KIB
    assert f.size == 64 * KIB
    assert w.pread(f, 0, 64 * KIB).data == data
    assert w.pwrite(f, 4 * KIB, pattern(8 * KIB, 2)).ret == 8 * KIB  # overwrite in place
    r = w.pread(f, 0, 16 * KIB)
    assert r.data == data[: 4 * KIB] + pattern(8 * KIB, 2) + data[12 * KIB : 16 * KIB]


def test_512_aligned_io_uses_the_logical_block(world):
    w = world()
    f = w.create()
    data = pattern(16 * KIB)
    w.pwrite(f, 0, data)
    r = w.pread(f, 1536, 3 * KIB)  # sub-block aligned: blkfactor 3
    assert r.ret == 3 * KIB and r.data == data[1536 : 1536 + 3 * KIB]
    assert w.pwrite(f, 4608, pattern(1024, 5)).ret == 1024  # an overwrite: no zeroing
    assert last(w, "bio")["zero"] is False and last(w, "bio")["len"] == 1024
    got = w.pread(f, 0, 16 * KIB).data
    assert got == data[:4608] + pattern(1024, 5) + data[5632:]
    assert w.pread(f, 100, 512).ret == EINVAL  # not even logical-block aligned


def test_sub_block_write_into_a_new_block_zeroes_the_rest(world):
    w = world()
    f = w.create()
    assert w.pwrite(f, 512, pattern(1024)).ret == 1024
    assert f.size == 1536
    bios = [(e["len"], e["zero"]) for e in events(w, "bio")]
    assert bios == [(512, True), (1024 + 2560, False)]  # head zero; data + tail zero
    assert w.pread(f, 0, 4096).data == bytes(512) + pattern(1024)  # capped at i_size
    w.fs.truncate(f, 4096)  # expose the rest of the block: zeros, not stale data
    got = w.pread(f, 0, 4096).data
    assert got == bytes(512) + pattern(1024) + bytes(2560)
    assert find_stale(got, 0) == []


def test_holes_read_as_zeros_one_block_at_a_time(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(4 * KIB))
    w.pwrite(f, 12 * KIB, pattern(4 * KIB, 3))  # beyond i_size: created
    assert f.size == 16 * KIB
    n_maps = len(events(w, "map"))
    r = w.pread(f, 0, 16 * KIB)
    assert r.data == pattern(4 * KIB) + bytes(8 * KIB) + pattern(4 * KIB, 3)
    maps = events(w, "map")[n_maps:]
    assert [m["type"] for m in maps] == ["MAPPED", "HOLE", "HOLE", "MAPPED"]
    assert all(m["create"] is False for m in maps)


def test_a_read_stops_at_a_hole_past_eof(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(4 * KIB))
    w.fs.truncate(f, 10 * KIB)  # blocks 1 and 2 are holes; block 2 holds i_size
    r = w.pread(f, 0, 16 * KIB)
    assert r.ret == 10 * KIB and r.data == pattern(4 * KIB) + bytes(6 * KIB)
    # block 3 is asked for too: a hole at/after ALIGN(i_size) ends the walk
    assert [m["type"] for m in events(w, "map")[-4:]] == ["MAPPED"] + ["HOLE"] * 3
    assert w.pread(f, 12 * KIB, 4 * KIB).ret == 0  # at/after i_size: nothing mapped


def test_fallocated_blocks_read_as_holes_and_are_written_as_new(world):
    w = world()
    f = w.create()
    w.fs.fallocate(f, 0, 16 * KIB, keep_size=True)
    assert w.pwrite(f, 1024, pattern(512)).ret == 512  # i_size 0: create, NEW
    assert last(w, "map")["flags"] == ["NEW"]
    w.fs.truncate(f, 8 * KIB)
    got = w.pread(f, 0, 8 * KIB).data
    assert got == bytes(1024) + pattern(512) + bytes(8 * KIB - 1536)


# --------------------------------------------------------------------------- DIO_SKIP_HOLES


def test_write_into_a_hole_inside_i_size_falls_back(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(4 * KIB))
    w.pwrite(f, 12 * KIB, pattern(4 * KIB))
    r = w.pwrite(f, 0, pattern(8 * KIB, 9))  # block 1 is a hole: -ENOTBLK after block 0
    assert r.ret == 4 * KIB
    assert [m["create"] for m in events(w, "map")[-2:]] == [False, False]
    assert w.pwrite(f, 4 * KIB, pattern(4 * KIB)).ret == 0  # nothing: buffered fallback
    assert f.size == 16 * KIB
    assert w.pread(f, 0, 8 * KIB).data == pattern(4 * KIB, 9) + bytes(4 * KIB)


def test_extending_write_past_i_size_creates(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(4 * KIB))
    assert w.pwrite(f, 4 * KIB, pattern(8 * KIB, 4)).ret == 8 * KIB
    assert last(w, "map")["create"] is True and f.size == 12 * KIB


def test_without_skip_holes_a_write_fills_a_hole(world):
    class Plain(GetBlockFs):
        name = "getblock-plain"
        dio_flags = frozenset()

    w = world(Plain)
    f = w.create()
    w.pwrite(f, 12 * KIB, pattern(4 * KIB))
    assert w.pwrite(f, 0, pattern(4 * KIB, 2)).ret == 4 * KIB
    got = w.pread(f, 0, 16 * KIB).data
    assert got == pattern(4 * KIB, 2) + bytes(8 * KIB) + pattern(4 * KIB)


# --------------------------------------------------------------------------- async


def test_async_read_is_queued_then_completes_inline(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    r = w.pread(f, 0, 8 * KIB, sync=False)
    assert r.queued and r.ret == 8 * KIB and r.data == pattern(8 * KIB)
    assert last(w, "complete")["ctx"] == "inline"


def test_async_extending_write_waits(world):
    w = world()
    f = w.create()
    r = w.pwrite(f, 0, pattern(8 * KIB), sync=False)
    assert not r.queued and r.ret == 8 * KIB
    assert last(w, "complete")["ctx"] == "submitter" and f.size == 8 * KIB


def test_async_dsync_overwrite_completes_on_the_workqueue(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    r = w.pwrite(f, 0, pattern(8 * KIB, 2), sync=False, flags={"DSYNC"})
    assert r.queued and r.ret == 8 * KIB
    assert last(w, "complete")["ctx"] == "workqueue"
    assert events(w)[-2]["ev"] == "flush"


def test_async_write_with_cached_pages_completes_on_the_workqueue(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    f.cached_pages = 3
    seen = []
    w.env.invalidate_after = lambda inode, pos, n: seen.append((pos, n))
    assert w.pwrite(f, 0, pattern(8 * KIB, 2), sync=False).queued
    assert last(w, "complete")["ctx"] == "workqueue" and seen == [(0, 8 * KIB)]


def test_async_completing_before_the_drop_is_not_queued(world):
    def now(where, inflight):
        return [(b, 0) for b in inflight] if where == "before_drop" else []

    w = world(schedule=now)
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    r = w.pread(f, 0, 8 * KIB, sync=False, settle=False)
    assert not r.queued and r.ret == 8 * KIB
    assert last(w, "complete")["pos_after"] == 8 * KIB


# --------------------------------------------------------------------------- errors


def test_efault_after_progress_on_a_read_is_a_short_count(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(16 * KIB))
    r = w.pread(f, 0, 16 * KIB, fault_at=8 * KIB)
    assert r.ret == 8 * KIB and r.data == pattern(16 * KIB)[: 8 * KIB]
    assert w.pread(f, 0, 16 * KIB, fault_at=0).ret == EFAULT


def test_write_fault_with_mapped_blocks_left_writes_zeros_and_fails(world):
    w = world()
    f = w.create()
    r = w.pwrite(f, 0, pattern(16 * KIB), fault_at=8 * KIB)  # one 16K mapping
    assert r.ret == EFAULT
    # ZERO_PAGE went over the rest of the mapping (no stale block on disk either way)
    blocks = w.fs.file(f).blocks
    assert blocks == {}  # ext2_write_failed: nothing stays past i_size (0)
    w.fs.truncate(f, 16 * KIB)
    got = w.pread(f, 0, 16 * KIB).data
    assert got == bytes(16 * KIB)
    assert find_stale(got, 0) == []


def test_write_fault_inside_eof_keeps_what_was_written(world):
    w = world()
    f = w.create()
    assert w.pwrite(f, 0, pattern(16 * KIB, 2)).ret == 16 * KIB  # extending: allocates
    r = w.pwrite(f, 0, pattern(16 * KIB), fault_at=8 * KIB)
    assert r.ret == EFAULT
    got = w.pread(f, 0, 16 * KIB).data
    assert got == pattern(8 * KIB) + bytes(8 * KIB)  # ZERO_PAGE over the rest
    assert find_stale(got, 0) == []


def test_a_bio_error_fails_the_request_with_eio(world):
    w = world()
    f = w.create()
    w.sched.schedule = lambda where, inflight: [(inflight[0], EIO)] if inflight else []
    assert w.pwrite(f, 0, pattern(8 * KIB)).ret == EIO


def test_nowait_write_with_eagain_bio_returns_eagain(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    w.sched.schedule = lambda where, inflight: [(inflight[0], EAGAIN)] if inflight else []
    assert w.pwrite(f, 0, pattern(8 * KIB), flags={"NOWAIT"}).ret == EAGAIN
    assert w.pread(f, 0, 8 * KIB, flags={"NOWAIT"}).ret == EIO  # REQ_NOWAIT: writes only


def test_get_block_error_is_returned(world):
    class Full(GetBlockFs):
        name = "getblock-full"

        def get_block(self, inode, fs_block, b_size, create):
            if create:
                raise DioError(ENOSPC, "full")
            return super().get_block(inode, fs_block, b_size, create)

    w = world(Full)
    f = w.create()
    assert w.pwrite(f, 0, pattern(4 * KIB)).ret == ENOSPC
    assert last(w, "map")["error"] == ENOSPC


def test_locking_read_returns_a_writeback_error(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(4 * KIB))
    w.env.write_and_wait = lambda inode, pos, n, nowait: EIO
    assert w.pread(f, 0, 4 * KIB).ret == EIO
    assert events(w)[-2] == {"ev": "writeback", "req": 2, "ret": EIO}


def test_a_bad_get_block_answer_is_a_contract_error(tmp_path):
    class Liar(GetBlockFs):
        name = "liar"

        def get_block(self, inode, fs_block, b_size, create):
            return BufferHead(False, size=b_size, new=True)

    w = LegacyWorld(Liar, image=tmp_path / "img", size=16 << 20)
    f = w.create()
    with pytest.raises(ContractError, match="buffer_new"):
        w.pwrite(f, 0, bytes(4096))
    w.close()


# --------------------------------------------------------------------------- bios, sizes


def test_dsync_write_flushes_and_survives_a_crash(world):
    w = world(write_cache=True, fua=False)
    f = w.create()
    assert w.pwrite(f, 0, pattern(8 * KIB), flags={"DSYNC"}).ret == 8 * KIB
    assert events(w)[-2]["ev"] == "flush"
    assert all(not e["fua"] for e in events(w, "bio"))
    w.pwrite(f, 8 * KIB, pattern(8 * KIB, 3))  # not synced
    w.crash()
    assert f.size == 8 * KIB
    assert w.pread(f, 0, 8 * KIB).data == pattern(8 * KIB)


def test_large_requests_fill_bios_of_256_vecs(world):
    w = world()
    f = w.create()
    assert w.pwrite(f, 0, pattern(3 * 1024 * KIB)).ret == 3 * 1024 * KIB
    assert [e["len"] for e in events(w, "bio")] == [1024 * KIB] * 3
    assert w.pread(f, 0, 3 * 1024 * KIB).data == pattern(3 * 1024 * KIB)


def interleaved(w: World, blocks: int) -> Any:
    """A file whose blocks are not contiguous on the device: one bio per block."""
    f, g = w.create(), w.create()
    for i in range(blocks):
        w.pwrite(f, i * 4 * KIB, pattern(4 * KIB, i))
        w.pwrite(g, i * 4 * KIB, pattern(4 * KIB, i))
    return f


def test_reaping_every_65_bios_stops_at_an_error(world):
    """Completed bios are reaped every 65 new bios; a reaped error stops submission."""
    w = world()
    f = interleaved(w, 100)
    r = w.pread(f, 0, 400 * KIB)
    assert r.ret == 400 * KIB and r.data == b"".join(pattern(4 * KIB, i) for i in range(100))
    w.sched.schedule = lambda where, inflight: (
        [(b, EIO) for b in inflight if b.index == 3] if where == "submitted" else []
    )
    before = len(events(w, "bio"))
    assert w.pread(f, 0, 400 * KIB).ret == EIO
    assert len(events(w, "bio")) - before == 64  # the 65th dio_new_bio reaps: no bio 64


def test_boundary_and_defer_completion_flags(world):
    class Flagged(GetBlockFs):
        name = "getblock-flagged"

        def get_block(self, inode, fs_block, b_size, create):
            bh = super().get_block(inode, fs_block, min(b_size, 8 * KIB), create)
            bh.boundary = bh.defer_completion = bh.mapped
            return bh

    w = world(Flagged)
    f = w.create()
    w.pwrite(f, 0, pattern(32 * KIB))  # contiguous blocks, mapped 2 at a time
    assert [e["len"] for e in events(w, "bio")] == [8 * KIB] * 4  # boundary: bio sent
    r = w.pread(f, 0, 32 * KIB, sync=False)
    assert r.queued and r.data == pattern(32 * KIB)
    assert last(w, "complete")["ctx"] == "workqueue"  # buffer_defer_completion


def test_threaded_completion_keeps_data(world):
    w = world(threaded=True)
    f = w.create()
    for i in range(16):
        assert w.pwrite(f, i * 64 * KIB, pattern(64 * KIB, i)).ret == 64 * KIB
    for i in range(16):
        assert w.pread(f, i * 64 * KIB, 64 * KIB).data == pattern(64 * KIB, i)
    for i in range(16):
        r = w.pread(f, i * 64 * KIB, 64 * KIB, sync=False)
        assert r.ret == 64 * KIB and r.data == pattern(64 * KIB, i)


@pytest.mark.parametrize("seed", range(12))
def test_random_requests_and_completions_replay(world, seed):
    """Random requests, geometry and completion order (with errors): the fixture checks
    that every trace replays against the model."""
    rnd = Random(seed)
    bs = rnd.choice([1024, 2048, 4096])
    lbs = min(bs, rnd.choice([512, 1024, 4096]))

    class Fs(GetBlockFs):
        name = "getblock-random"
        dio_flags = frozenset(f for f in ("LOCKING", "SKIP_HOLES") if rnd.random() < 0.6)

        def __init__(self, device: Any) -> None:
            super().__init__(device, block_size=bs)

        def get_block(self, inode, fs_block, b_size, create):
            bh = super().get_block(inode, fs_block, min(b_size, rnd.randint(1, 4) * bs), create)
            bh.boundary = bh.mapped and rnd.random() < 0.2
            return bh

    def schedule(where, inflight):
        picks = [b for b in inflight if rnd.random() < (0.6 if where == "wait" else 0.3)]
        if where == "wait" and not picks:
            picks = inflight[:1]
        return [(b, rnd.choice([0] * 8 + [EIO, EAGAIN])) for b in picks]

    w = world(Fs, logical_block_size=lbs, schedule=schedule)
    f = w.create()
    for i in range(25):
        f.cached_pages = int(rnd.random() < 0.2)
        pos = rnd.randrange(64) * rnd.choice([lbs, bs, 512])
        n = rnd.randrange(40) * rnd.choice([lbs, bs]) + rnd.choice([0] * 9 + [4096 * 300])
        kw: dict[str, Any] = {"sync": rnd.random() < 0.6, "flags": {
            f for f in ("DSYNC", "NOWAIT", "SYNC") if rnd.random() < 0.15}}  # fmt: skip
        if n > 4096 and rnd.random() < 0.2:
            kw["fault_at"] = rnd.randrange(n // 4096) * 4096
        op = rnd.random()
        if op < 0.45:
            w.pwrite(f, pos, pattern(n, i), **kw)
        elif op < 0.85:
            w.pread(f, pos, n, **kw)
        elif op < 0.93:
            w.fs.truncate(f, rnd.randrange(64) * 512)
        else:
            w.fs.fallocate(f, rnd.randrange(32) * bs, rnd.randint(1, 8) * bs)
