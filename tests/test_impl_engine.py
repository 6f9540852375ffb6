"""The implementation's iomap engine on a real image file, per reference filesystem.

Every test's World records a trace; the ``world`` fixture replays it through the model
at the end, so each scenario here is also a model-versus-implementation comparison.
"""

from __future__ import annotations

import pytest
from dioconf.impl.api import EIO, EIOCBQUEUED, HOLE, ContractError, Iomap
from dioconf.impl.device import find_stale
from dioconf.impl.fs.simple import OverwriteFs, XfsLikeFs
from dioconf.impl.world import World

from .impl_support import pattern, replays, world_factory

KIB = 1024
FILESYSTEMS = [OverwriteFs, XfsLikeFs]


@pytest.fixture(params=FILESYSTEMS, ids=lambda f: f.name)
def world(request, tmp_path):
    yield from world_factory(tmp_path, request.param)


def test_data_reads_back(world):
    w = world()
    f = w.create()
    data = pattern(64 * KIB)
    assert w.pwrite(f, 0, data).ret == 64 * KIB
    assert w.pread(f, 0, 64 * KIB).data == data
    assert w.pwrite(f, 4 * KIB, pattern(8 * KIB, 2)).ret == 8 * KIB
    r = w.pread(f, 0, 16 * KIB)
    assert r.data == data[: 4 * KIB] + pattern(8 * KIB, 2) + data[12 * KIB : 16 * KIB]


def test_sub_block_writes_zero_the_rest_of_a_new_block(world):
    w = world()
    f = w.create()
    assert w.pwrite(f, 512, pattern(1024)).ret == 1024
    assert f.size == 1536
    assert w.pread(f, 0, 4096).data == bytes(512) + pattern(1024)  # capped at i_size
    w.fs.truncate(f, 4096)  # expose the rest of the block: it must be zeros, not stale
    got = w.pread(f, 0, 4096).data
    assert got == bytes(512) + pattern(1024) + bytes(2560)
    assert find_stale(got, 0) == []


def test_unwritten_extents_read_as_zeros_and_convert(world):
    w = world()
    f = w.create()
    w.fs.fallocate(f, 0, 64 * KIB)
    assert w.pread(f, 0, 8 * KIB).data == bytes(8 * KIB)
    assert w.pwrite(f, 4 * KIB + 512, pattern(512)).ret == 512
    got = w.pread(f, 0, 16 * KIB).data
    assert got == bytes(4 * KIB + 512) + pattern(512) + bytes(16 * KIB - 5 * KIB)


def test_short_read_at_i_size_and_reads_past_eof(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    w.fs.truncate(f, 5000)
    assert w.pread(f, 0, 8 * KIB).ret == 5000
    assert w.pread(f, 8 * KIB, 4 * KIB).ret == 0


def test_dsync_writes_survive_a_crash_and_plain_ones_may_not(world):
    w = world(write_cache=True, fua=False)
    f = w.create()
    assert w.pwrite(f, 0, pattern(8 * KIB), flags={"DSYNC"}).ret == 8 * KIB
    assert w.pwrite(f, 8 * KIB, pattern(8 * KIB, 3)).ret == 8 * KIB  # not synced
    w.crash()
    assert f.size == 8 * KIB  # the extension of the plain write was not durable
    assert w.pread(f, 0, 8 * KIB).data == pattern(8 * KIB)


def test_a_crash_never_exposes_stale_blocks(world):
    """An allocation that was not synced is gone after a crash: no stale read."""
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(4 * KIB), flags={"DSYNC"})
    w.pwrite(f, 64 * KIB, pattern(4 * KIB))  # allocates, extends: volatile
    w.crash()
    w.fs.truncate(f, 128 * KIB)
    got = w.pread(f, 0, 128 * KIB).data
    assert find_stale(got, 0) == []
    assert got[: 4 * KIB] == pattern(4 * KIB)


def test_racing_completion_error_before_next_map_stops_submission(world):
    """A schedule completes bio 0 with -EIO before the second extent is mapped: the
    engine submits nothing more and the result is -EIO; the same schedule gives the
    same outcome every time."""

    def fail_first(where, inflight):
        return [(b, EIO) for b in inflight if b.index == 0] if where == "before_map" else []

    outcomes = []
    for _ in range(2):
        w = world(schedule=fail_first)
        f = w.create()
        w.pwrite(f, 0, pattern(4 * KIB))
        w.pwrite(f, 12 * KIB, pattern(4 * KIB))  # a second, separate extent
        bios_before = len([e for e in w.trace.events if e["ev"] == "bio"])
        r = w.pwrite(f, 0, pattern(16 * KIB))
        bios = len([e for e in w.trace.events if e["ev"] == "bio"]) - bios_before
        outcomes.append((r.ret, bios))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == EIO


def test_async_write_is_queued_then_completed(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    r = w.pwrite(f, 0, pattern(4 * KIB, 5), sync=False)
    assert r.queued and r.ret == 4 * KIB
    complete = [e for e in w.trace.events if e["ev"] == "complete"][-1]
    assert complete["ctx"] == "inline"


def test_async_write_completing_before_the_drop_is_not_queued(world):
    def now(where, inflight):
        return [(b, 0) for b in inflight] if where == "before_drop" else []

    w = world(schedule=now)
    f = w.create()
    w.pwrite(f, 0, pattern(8 * KIB))
    r = w.pwrite(f, 0, pattern(4 * KIB, 5), sync=False, settle=False)
    assert not r.queued and r.ret == 4 * KIB


def test_partial_with_fault_and_done_before(world):
    w = world()
    f = w.create()
    w.pwrite(f, 0, pattern(16 * KIB))
    r = w.pwrite(f, 0, pattern(16 * KIB, 9), dio={"PARTIAL"}, fault_at=8 * KIB, done_before=100)
    assert r.ret == 8 * KIB + 100
    assert (
        w.pread(f, 0, 16 * KIB).data
        == pattern(16 * KIB, 9)[: 8 * KIB] + pattern(16 * KIB)[8 * KIB :]
    )


def test_threaded_completion_keeps_data(world):
    w = world(threaded=True)
    f = w.create()
    for i in range(16):
        assert w.pwrite(f, i * 64 * KIB, pattern(64 * KIB, i)).ret == 64 * KIB
    for i in range(16):
        assert w.pread(f, i * 64 * KIB, 64 * KIB).data == pattern(64 * KIB, i)


def test_large_requests_are_split_into_bios_of_256_pages(world):
    w = world()
    f = w.create()
    assert w.pwrite(f, 0, pattern(3 * 1024 * KIB)).ret == 3 * 1024 * KIB
    lens = [e["len"] for e in w.trace.events if e["ev"] == "bio"]
    assert max(lens) == 1024 * KIB


class _Liar(OverwriteFs):
    name = "liar"

    def iomap_begin(self, inode, pos, length, flags):
        return Iomap(pos + 4096, 4096, HOLE)


def test_a_mapping_that_does_not_cover_the_position_is_a_contract_error(tmp_path):
    w = World(_Liar, image=tmp_path / "img", size=16 << 20)
    f = w.create()
    with pytest.raises(ContractError, match="does not cover"):
        w.pwrite(f, 0, bytes(4096))  # a write maps even an empty file
    w.close()


def test_the_implementation_does_not_import_the_model():
    """impl/ computes its answers itself: no module of it imports dioconf.model.
    (impl/kernel/ records the real kernel, computes no engine answers, and only uses
    the trace header's Geometry value; it is not the implementation compared.)"""
    import ast
    from pathlib import Path

    import dioconf.impl as impl

    offenders = []
    root = Path(impl.__file__).parent
    for path in root.rglob("*.py"):
        if path.parent.name == "kernel":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                name = "." * node.level + (node.module or "")
                if "model" in name.split("."):
                    offenders.append(f"{path.name}: from {name}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names
                              if "model" in a.name.split(".")]  # fmt: skip
    assert offenders == []
    assert EIOCBQUEUED == -529


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"pos": -1}, "pos must be a non-negative integer"),
        ({"pos": (1 << 63) - 10}, "overflows loff_t"),
        ({"pos": 0, "fault_at": 100}, "multiple of the page size"),
        ({"pos": 0, "done_before": -4}, "done_before must be a non-negative integer"),
    ],
)
def test_bad_requests_get_one_clear_error(tmp_path, kw, message):
    w = World(OverwriteFs, image=tmp_path / "img", size=16 << 20)
    f = w.create()
    pos = kw.pop("pos")
    with pytest.raises(ValueError, match=message):
        w.pwrite(f, pos, bytes(4096), **kw)
    assert w.req == 0  # nothing was started
    w.close()


@pytest.mark.parametrize("fs", FILESYSTEMS, ids=lambda f: f.name)
def test_invalidation_failure_falls_back_to_buffered_io(tmp_path, fs):
    """A page dirtied through mmap cannot be invalidated: iomap returns -ENOTBLK and the
    write goes through the page cache instead (ext4_dio_write_iter's fallback)."""
    w = World(fs, image=tmp_path / "img", size=64 << 20, page_cache=True)
    f = w.create()
    w.pwrite(f, 0, pattern(16 * KIB))
    w.pc.mmap_dirty(f, 4 * KIB)
    assert w.file_write(f, 0, pattern(8 * KIB, 3)) == 8 * KIB
    assert [e["ret"] for e in w.trace.events if e["ev"] == "invalidate"] == [-16]
    w.pc.unpin(f, 4 * KIB)
    assert w.buffered_read(f, 0, 16 * KIB) == pattern(8 * KIB, 3) + pattern(16 * KIB)[8 * KIB :]
    replays(w)
    w.close()


def test_a_world_reopens_an_existing_image_and_finds_durable_data(tmp_path):
    image = tmp_path / "img"
    with World(OverwriteFs, image=image, size=32 << 20) as w:
        f = w.create()
        w.pwrite(f, 0, pattern(4 * KIB), flags={"DSYNC"})
        addr = next(e["addr"] for e in w.trace.events if e["ev"] == "map")
    with World(OverwriteFs, image=image) as w2:  # default size differs: the image's wins
        assert w2.device.size == 32 << 20
        assert bytes(w2.device.read(addr, 4 * KIB)) == pattern(4 * KIB)
