"""The page cache against the direct-I/O engine, on a real image, per filesystem.

Each World records a trace; the ``world`` fixture replays it through the model at the
end, as tests/test_impl_engine.py does. ``inode.cached_pages`` is checked against the
cache itself after every step.
"""

from __future__ import annotations

import os
import random

import pytest
from dioconf.impl.api import EAGAIN, EINVAL, EIO, ENOTBLK, Inode
from dioconf.impl.device import find_stale
from dioconf.impl.fs.simple import OverwriteFs, XfsLikeFs
from dioconf.impl.pagecache import PageCache
from dioconf.impl.world import World
from dioconf.traces.format import dump_line, parse_trace
from dioconf.traces.replay import replay_trace

KIB = 1024
PS = 4096


def replays(w: World) -> None:
    assert w.trace is not None
    lines = [dump_line(w.trace.header)] + [dump_line(e) for e in w.trace.events]
    result = replay_trace(parse_trace(lines, "impl"))
    assert result.ok, result.divergence


class Stack:
    """A World with a bound page cache, and helpers that check cached_pages."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.pc = PageCache(w.fs, w.device, w.page_size).bind(w.env)

    def next_req(self) -> int:
        self.w.req += 1
        return self.w.req

    def check(self, inode: Inode) -> None:
        assert inode.cached_pages == len(self.pc.pages(inode))

    def writethrough(self, inode: Inode, pos: int, data: bytes, **kw) -> int:
        return self.pc.writethrough_write(self.w.env, inode, pos, data, self.next_req, **kw)

    def crash(self) -> None:
        self.pc.crash()
        self.w.crash()

    def events(self, req: int) -> list[dict]:
        assert self.w.trace is not None
        return [e for e in self.w.trace.events if e.get("req") == req]


@pytest.fixture(params=[OverwriteFs, XfsLikeFs], ids=lambda f: f.name)
def stack(request, tmp_path):
    made: list[Stack] = []

    def make(**kw) -> Stack:
        w = World(request.param, image=tmp_path / f"img{len(made)}", size=64 << 20, **kw)
        made.append(Stack(w))
        return made[-1]

    yield make
    for s in made:
        replays(s.w)
        s.w.close()


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def test_buffered_write_then_buffered_read(stack):
    s = stack()
    f = s.w.create()
    assert s.pc.buffered_write(f, 1000, pattern(9000)) == 9000
    assert f.size == 10000
    assert f.cached_pages == 3
    s.check(f)
    assert s.pc.buffered_read(f, 0, 20000) == bytes(1000) + pattern(9000)
    assert all(p.state == "dirty" for p in s.pc.pages(f).values())
    assert s.pc.writeback(f) == 0
    assert all(p.state == "clean" for p in s.pc.pages(f).values())
    assert s.pc.drop(f) == 3
    assert f.cached_pages == 0
    got = s.pc.buffered_read(f, 0, 20000)  # now from the device
    assert got == bytes(1000) + pattern(9000)
    assert find_stale(got, 0) == []
    s.check(f)


def test_buffered_write_then_direct_read_writes_back_first(stack):
    s = stack()
    f = s.w.create()
    s.pc.buffered_write(f, 0, pattern(8 * KIB))
    assert s.w.pread(f, 0, 8 * KIB).data == pattern(8 * KIB)
    assert [p.state for p in s.pc.pages(f).values()] == ["clean", "clean"]
    assert f.cached_pages == 2  # write_and_wait keeps the pages
    s.check(f)


def test_direct_write_invalidates_cached_pages(stack):
    s = stack()
    f = s.w.create()
    s.w.pwrite(f, 0, pattern(16 * KIB))
    assert s.pc.buffered_read(f, 0, 16 * KIB) == pattern(16 * KIB)
    assert f.cached_pages == 4
    assert s.w.pwrite(f, 4 * KIB, pattern(8 * KIB, 5)).ret == 8 * KIB
    assert f.cached_pages == 2  # pages 1 and 2 were dropped
    s.check(f)
    want = pattern(16 * KIB)[: 4 * KIB] + pattern(8 * KIB, 5) + pattern(16 * KIB)[12 * KIB :]
    assert s.pc.buffered_read(f, 0, 16 * KIB) == want


def test_direct_write_over_dirty_pages_writes_them_back_first(stack):
    s = stack()
    f = s.w.create()
    s.pc.buffered_write(f, 0, pattern(12 * KIB))
    assert s.w.pwrite(f, 4 * KIB, pattern(512, 9)).ret == 512  # sector-sized, inside page 1
    assert f.cached_pages == 2
    s.check(f)
    want = bytearray(pattern(12 * KIB))
    want[4 * KIB : 4 * KIB + 512] = pattern(512, 9)
    assert s.pc.buffered_read(f, 0, 12 * KIB) == want
    assert s.w.pread(f, 0, 12 * KIB).data == want


def test_mmap_dirty_page_makes_direct_write_fall_back(stack):
    s = stack()
    f = s.w.create()
    s.w.pwrite(f, 0, pattern(8 * KIB))
    s.pc.mmap_dirty(f, 4 * KIB, b"mmap")
    before = s.w.device.stats["writes"]
    r = s.w.pwrite(f, 4 * KIB, pattern(4 * KIB, 3))
    assert r.ret == ENOTBLK
    evs = s.events(s.w.req)
    assert {"ev": "invalidate", "req": s.w.req, "ret": -16} in evs
    assert not [e for e in evs if e["ev"] in ("map", "bio")]
    # the engine wrote nothing; the invalidation's writeback wrote the mmap'ed page once
    assert s.w.device.stats["writes"] == before + 1
    assert s.w.pread(f, 4 * KIB, 512).data[:4] == b"mmap"
    # the caller falls back to a buffered write
    assert s.pc.buffered_write(f, 4 * KIB, pattern(4 * KIB, 3)) == 4 * KIB
    assert s.pc.buffered_read(f, 0, 8 * KIB) == pattern(8 * KIB)[:PS] + pattern(4 * KIB, 3)
    assert s.w.pread(f, 0, 8 * KIB).data == pattern(8 * KIB)[:PS] + pattern(4 * KIB, 3)
    s.check(f)
    s.pc.unpin(f, 4 * KIB)
    assert s.w.pwrite(f, 4 * KIB, pattern(4 * KIB, 4)).ret == 4 * KIB
    assert s.pc.page(f, 4 * KIB) is None and f.cached_pages == 1  # page 0 stays
    assert s.pc.buffered_read(f, 4 * KIB, 4 * KIB) == pattern(4 * KIB, 4)


def test_atomic_direct_write_with_pinned_page_gets_eagain(stack):
    s = stack()
    f = s.w.create()
    s.w.pwrite(f, 0, pattern(4 * KIB))
    s.pc.mmap_dirty(f, 0)
    assert s.w.pwrite(f, 0, pattern(4 * KIB, 2), flags={"ATOMIC"}).ret == EAGAIN


def test_nowait_direct_write_with_cached_pages_gets_eagain(stack):
    s = stack()
    f = s.w.create()
    s.w.pwrite(f, 0, pattern(8 * KIB))
    s.pc.buffered_read(f, 4 * KIB, 10)  # one clean page
    assert s.w.pwrite(f, 0, pattern(8 * KIB, 2), flags={"NOWAIT"}).ret == EAGAIN
    assert {"ev": "invalidate", "req": s.w.req, "ret": EAGAIN} in s.events(s.w.req)
    assert f.cached_pages == 1
    assert s.w.pread(f, 0, 8 * KIB).data == pattern(8 * KIB)
    s.pc.drop(f)
    assert s.w.pwrite(f, 0, pattern(8 * KIB, 2), flags={"NOWAIT"}).ret == 8 * KIB
    assert s.pc.buffered_read(f, 0, 8 * KIB) == pattern(8 * KIB, 2)
    s.check(f)


def test_nowait_direct_read_with_dirty_pages_gets_eagain(stack):
    s = stack()
    f = s.w.create()
    s.w.pwrite(f, 0, pattern(8 * KIB))
    s.pc.buffered_write(f, 4 * KIB, b"dirty")
    assert s.w.pread(f, 0, 8 * KIB, flags={"NOWAIT"}).ret == EAGAIN
    assert {"ev": "writeback", "req": s.w.req, "ret": EAGAIN} in s.events(s.w.req)
    assert s.w.pread(f, 0, 4 * KIB, flags={"NOWAIT"}).ret == 4 * KIB  # other page: fine
    s.pc.writeback(f)
    r = s.w.pread(f, 0, 8 * KIB, flags={"NOWAIT"})  # clean pages do not block a read
    assert r.ret == 8 * KIB
    assert r.data[4 * KIB : 4 * KIB + 5] == b"dirty"
    s.check(f)


def test_writethrough_goes_through_the_dio_engine(stack):
    s = stack()
    f = s.w.create()
    s.w.pwrite(f, 0, pattern(16 * KIB))
    s.pc.buffered_read(f, 8 * KIB, 1)
    assert s.writethrough(f, 8 * KIB + 100, b"through") == 7
    req = s.w.req
    evs = s.events(req)
    begin = next(e for e in evs if e["ev"] == "begin")
    assert begin["dio"] == ["BUF_WRITETHROUGH"]
    assert (begin["pos"], begin["len"], begin["sync"]) == (8 * KIB, 4 * KIB, False)
    assert not [e for e in evs if e["ev"] == "invalidate"]
    assert s.pc.page(f, 8 * KIB).state == "writeback"  # queued: in flight
    assert s.pc.fsync(f) == 0  # waits for the writeback
    assert s.events(req)[-1]["ctx"] == "workqueue"
    # begin.cached_pages says what iomap_dio_done saw when the request completed
    assert next(e for e in s.events(req) if e["ev"] == "begin").get("cached_pages") is True
    page = s.pc.page(f, 8 * KIB)
    assert page is not None and page.state == "clean"
    assert f.cached_pages == 1  # the folio stays cached
    mp = s.w.fs.extent_at(f, 8 * KIB, 4 * KIB)
    on_disk = s.w.device.read(mp.addr + 8 * KIB - mp.offset, 4 * KIB)
    want = bytearray(pattern(16 * KIB)[8 * KIB : 12 * KIB])
    want[100:107] = b"through"
    assert on_disk == want
    assert f.size == 16 * KIB
    replays(s.w)


def test_writethrough_extends_and_allocates(stack):
    s = stack()
    f = s.w.create()
    data = pattern(10000, 3)
    assert s.writethrough(f, 500, data) == 10000
    assert f.size == 10500  # not the block-aligned end the engine's end_io saw
    s.pc.fsync(f)
    assert f.size == 10500
    assert all(p.state == "clean" for p in s.pc.pages(f).values())
    assert s.pc.drop(f) == 3
    assert s.pc.buffered_read(f, 0, 20000) == bytes(500) + data
    assert s.w.pread(f, 0, 12 * KIB).data == bytes(500) + data
    begins = [e for e in s.w.trace.events if e["ev"] == "begin"]
    assert [(b["pos"], b["len"]) for b in begins[:3]] == [(0, PS), (PS, PS), (2 * PS, PS)]
    s.crash()
    assert f.size == 10500 and s.pc.buffered_read(f, 0, 20000) == bytes(500) + data


def test_writethrough_dsync_is_durable_without_fsync(stack):
    s = stack()
    f = s.w.create()
    assert s.writethrough(f, 0, pattern(4 * KIB), flags={"DSYNC"}) == 4 * KIB
    begin = next(e for e in s.events(s.w.req) if e["ev"] == "begin")
    assert begin["iocb"] == ["DSYNC"]
    assert not [e for e in s.events(s.w.req) if e["ev"] == "flush"]  # not the dio's job
    s.crash()
    assert s.pc.buffered_read(f, 0, 8 * KIB) == pattern(4 * KIB)


def test_writethrough_rejects_nowait(stack):
    s = stack()
    f = s.w.create()
    assert s.writethrough(f, 0, b"x", flags={"NOWAIT"}) == EINVAL
    assert f.size == 0 and f.cached_pages == 0


def test_writethrough_error_is_reported_to_fsync_once(stack):
    def fail(where, inflight):
        return [(inflight[0], EIO)] if where == "wait" and inflight else []

    s = stack(schedule=fail)
    f = s.w.create()
    assert s.writethrough(f, 0, pattern(4 * KIB)) == 4 * KIB
    assert s.events(s.w.req)[-1]["ev"] == "queued"
    assert s.pc.fsync(f) == EIO
    assert s.events(s.w.req)[-1]["ret"] == EIO
    assert s.pc.fsync_error(f) == 0
    assert s.pc.fsync(f) == 0
    assert s.pc.writeback(f) == EIO  # the AS_EIO flag: filemap_check_errors, once
    assert s.pc.writeback(f) == 0


def test_crash_loses_unsynced_buffered_writes(stack):
    s = stack()
    f = s.w.create()
    s.pc.buffered_write(f, 0, pattern(8 * KIB))
    assert s.pc.fsync(f) == 0
    s.pc.buffered_write(f, 0, pattern(4 * KIB, 2))  # overwrite, written back, not synced
    s.pc.buffered_write(f, 8 * KIB, pattern(4 * KIB, 3))  # extension, never written back
    s.pc.writeback(f, 0, 4 * KIB)
    s.crash()
    assert f.size == 8 * KIB and f.cached_pages == 0
    assert s.pc.buffered_read(f, 0, 16 * KIB) == pattern(8 * KIB)
    s.pc.buffered_write(f, 0, pattern(4 * KIB, 2))
    s.pc.buffered_write(f, 8 * KIB, pattern(4 * KIB, 3))
    assert s.pc.fsync(f) == 0
    s.crash()
    want = pattern(4 * KIB, 2) + pattern(8 * KIB)[4 * KIB :] + pattern(4 * KIB, 3)
    assert s.pc.buffered_read(f, 0, 16 * KIB) == want
    assert s.w.pread(f, 0, 16 * KIB).data == want


def test_unwritten_extents_read_as_zeros_and_convert_on_writeback(stack):
    s = stack()
    f = s.w.create()
    s.w.fs.fallocate(f, 0, 16 * KIB)
    assert s.pc.buffered_read(f, 0, 16 * KIB) == bytes(16 * KIB)
    s.pc.buffered_write(f, 4 * KIB + 10, b"abc")
    s.pc.fsync(f)
    s.pc.drop(f)
    assert s.w.fs.extent_at(f, 4 * KIB, PS).type == "MAPPED"
    assert s.w.pread(f, 4 * KIB, 512).data[:16] == bytes(10) + b"abc" + bytes(3)


def test_truncate_zeroes_the_tail_of_the_eof_page(stack):
    s = stack()
    f = s.w.create()
    s.pc.buffered_write(f, 0, pattern(8 * KIB))
    s.pc.fsync(f)
    s.pc.drop(f)
    s.pc.truncate(f, 1000)
    assert f.cached_pages == 1
    s.pc.truncate(f, 8 * KIB)
    assert s.pc.buffered_read(f, 0, 8 * KIB) == pattern(1000) + bytes(8 * KIB - 1000)
    s.pc.writeback(f)
    s.pc.drop(f)
    assert s.w.pread(f, 0, 8 * KIB).data == pattern(1000) + bytes(8 * KIB - 1000)


@pytest.mark.parametrize("seed", range(int(os.environ.get("PC_SEEDS", 6))))
def test_random_mix_keeps_contents_consistent(stack, seed):
    """Buffered and direct I/O, writeback, drop, writethrough and mmap in any order:
    both kinds of read always see the logical contents."""
    rng = random.Random(seed)
    s = stack()
    f = s.w.create()
    span = 12 * PS
    ref = bytearray()

    def put(pos: int, data: bytes) -> None:
        if pos > len(ref):
            ref.extend(bytes(pos - len(ref)))
        ref[pos : pos + len(data)] = data
        assert f.size == len(ref)

    for step in range(60):
        op = rng.choice(["bw", "bw", "br", "dw", "dr", "wb", "drop", "wt", "mmap", "unpin"])
        data = rng.randbytes(rng.randrange(1, 3 * PS))
        if op == "bw":
            pos = rng.randrange(span)
            assert s.pc.buffered_write(f, pos, data) == len(data)
            put(pos, data)
        elif op == "wt":
            pos = rng.randrange(span)
            assert s.writethrough(f, pos, data) == len(data)
            put(pos, data)
        elif op == "dw":
            pos, n = rng.randrange(span // 512) * 512, -(-len(data) // 512) * 512
            data = data.ljust(n, b"\0")
            # async only while nrpages stays as the begin line records it (the model
            # takes cached_pages from there; the engine reads it at completion)
            outside = [i for i in s.pc.pages(f) if not pos // PS <= i <= (pos + n - 1) // PS]
            sync = rng.random() < 0.5 or (f.cached_pages and not outside)
            r = s.w.pwrite(f, pos, data, sync=bool(sync))
            if r.ret == ENOTBLK:  # a pinned page: fall back to buffered
                assert s.pc.buffered_write(f, pos, data) == n
            else:
                assert r.ret == n
            put(pos, data)
        elif op == "mmap" and len(ref):
            pos = rng.randrange(len(ref))
            chunk = data[: min(len(ref), (pos // PS + 1) * PS) - pos]
            s.pc.mmap_dirty(f, pos, chunk)
            put(pos, chunk)
        elif op == "unpin":
            for p in list(s.pc.pages(f).values()):
                s.pc.unpin(f, p.index * PS)
        elif op == "wb":
            assert s.pc.writeback(f, wait=rng.random() < 0.5) == 0
        elif op == "drop":
            s.pc.drop(f)
        elif op == "dr":
            r = s.w.pread(f, 0, span + 4 * PS)
            assert r.data == ref, f"step {step}: direct read"
        else:
            assert s.pc.buffered_read(f, 0, span + 4 * PS) == ref, f"step {step}"
        s.check(f)
    assert s.pc.fsync(f) == 0
    assert s.pc.buffered_read(f, 0, span + 4 * PS) == ref
    assert s.w.pread(f, 0, span + 4 * PS).data == ref
    s.crash()
    assert s.pc.buffered_read(f, 0, span + 4 * PS) == ref


@pytest.mark.parametrize("fs", [OverwriteFs, XfsLikeFs], ids=lambda f: f.name)
def test_threaded_completions_keep_contents_consistent(tmp_path, fs):
    """Bios complete on worker threads while writethrough folios are in flight."""
    rng = random.Random(7)
    with World(fs, image=tmp_path / "img", size=64 << 20, threaded=True, record=False) as w:
        pc = PageCache(w.fs, w.device).bind(w.env)
        f = w.create()
        ref = bytearray(12 * PS)
        pc.buffered_write(f, 0, bytes(12 * PS))
        for step in range(60):
            pos = rng.randrange(11 * PS)
            data = rng.randbytes(rng.randrange(1, PS))
            op = rng.choice(["wt", "wt", "bw", "dw", "dr", "br", "drop"])
            if op == "wt":
                w.req += 1
                assert pc.writethrough_write(w.env, f, pos, data, w.req) == len(data)
            elif op == "bw":
                assert pc.buffered_write(f, pos, data) == len(data)
            elif op == "dw":
                pos, data = pos // 512 * 512, data.ljust(-(-len(data) // 512) * 512, b"\0")
                assert w.pwrite(f, pos, data).ret == len(data)
            elif op == "dr":
                assert w.pread(f, 0, 12 * PS).data == ref, step
            elif op == "br":
                assert pc.buffered_read(f, 0, 12 * PS) == ref, step
            else:
                pc.drop(f)
            if op in ("wt", "bw", "dw"):
                ref[pos : pos + len(data)] = data
            assert f.cached_pages == len(pc.pages(f)) and f.size == 12 * PS
        assert pc.fsync(f) == 0
        assert w.pread(f, 0, 12 * PS).data == ref
