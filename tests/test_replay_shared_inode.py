"""The requests of a trace share one inode (issue 13): i_size moved by one request's
completion is what another, still in flight, reads when it completes; and a recorded
size may already include the extension of a write whose ->end_io ran before its own
tracepoint (xfs_dio_write_end_io, ext4_dio_write_end_io). Anything else still diverges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dioconf.traces.replay import StreamReplayer, replay_file

HEADER = {"format": "dioconf-trace", "version": 1, "engine": "iomap",
          "geometry": {"fs_block_size": 4096, "logical_block_size": 512, "page_size": 4096,
                       "write_cache": True, "fua": False},
          "source": "hand", "observed": ["bio", "queued", "complete"]}  # fmt: skip
DEV = 1 << 20


def _write(req: int, pos: int) -> list[dict]:
    """An async 4 KiB write past EOF into an unwritten block, queued."""
    return [
        {"ev": "file", "i_size": 0},
        {"ev": "begin", "req": req, "op": "write", "pos": pos, "len": 4096, "done_before": 0,
         "iocb": [], "dio": [], "sync": False},
        {"ev": "map", "req": req, "offset": pos, "length": 4096, "type": "UNWRITTEN",
         "flags": ["NEW"], "addr": DEV + pos},
        {"ev": "bio", "req": req, "op": "write", "addr": DEV + pos, "len": 4096, "fua": False},
        {"ev": "queued", "req": req},
    ]  # fmt: skip


def _events(first_size: int, second_completes_first: bool) -> list[dict]:
    ends = [{"ev": "bio_end", "req": r, "index": 0, "status": 0} for r in (1, 2)]
    c1 = {"ev": "complete", "req": 1, "ret": 4096, "pos_after": 4096, "i_size": first_size}
    c2 = {"ev": "complete", "req": 2, "ret": 4096, "pos_after": 8192, "i_size": 8192}
    done = [c2, c1] if second_completes_first else [c1, c2]
    return [*_write(1, 0), *_write(2, 4096), *ends, *done]


def _replay(tmp_path: Path, events: list[dict], profile: str | None = None) -> bool:
    path = tmp_path / "t.jsonl"
    header = HEADER if profile is None else {**HEADER, "profile": profile}
    path.write_text("\n".join(json.dumps(x) for x in [header, *events]) + "\n")
    return replay_file(str(path)).ok


def test_a_completion_reads_the_size_another_request_moved(tmp_path):
    """Request 2 (4-8 KiB) completes first and moves i_size to 8192; request 1 then
    completes with i_size 8192, not the 4096 it would make alone."""
    assert _replay(tmp_path, _events(8192, second_completes_first=True))


def test_a_size_from_an_end_io_that_ran_before_its_tracepoint(tmp_path):
    """Request 1's completion shows 8192 although request 2's complete line comes after:
    request 2's ->end_io had moved i_size already."""
    assert _replay(tmp_path, _events(8192, second_completes_first=False))


@pytest.mark.parametrize("size", [12288, 2048])
def test_a_size_nothing_explains_diverges(tmp_path, size):
    assert not _replay(tmp_path, _events(size, second_completes_first=False))


def test_a_stream_of_several_files_shares_no_inode():
    """The conformance harness streams several files' requests into one replay."""
    s = StreamReplayer(HEADER)
    events = _events(8192, second_completes_first=True)
    divergences = [s.feed(n, ev) for n, ev in enumerate(events, 2)]
    assert any(d is not None for d in divergences)  # request 1 alone makes 4096
    shared = StreamReplayer(HEADER, shared_inode=True)
    assert all(shared.feed(n, ev) is None for n, ev in enumerate(events, 2))


def test_the_tail_zeroing_test_reads_the_shared_size():
    """iomap_dio_bio_iter (L557-564) zeroes the tail of a write ending at/after
    i_size_read(inode): once another task extended the inode past it, no tail pad."""
    from dioconf.model.engine import drive
    from dioconf.model.iomap import ENGINE
    from dioconf.model.types import Bio, Geometry, InodeSize, Mapping, Request

    geo = Geometry(4096, 512, 4096, write_cache=True, fua=False)
    req = Request("write", 0, 512)
    extent = Mapping(0, 4096, "MAPPED", addr=DEV)

    def pads(grown: bool) -> list[Bio]:
        class Shared:  # an engine whose request saw the inode grow before it ran
            name = ENGINE.name

            def start(self, *a, **k):
                s = ENGINE.start(*a, **k)
                return ENGINE.feed(s, InodeSize(8192)) if grown else s

            def __getattr__(self, attr: str):
                return getattr(ENGINE, attr)

        out = drive(Shared(), geo, req, 0, [extent])
        return [o for o in out if isinstance(o, Bio) and o.zero]

    assert len(pads(grown=False)) == 1  # the write ends past i_size 0: tail pad
    assert pads(grown=True) == []


@pytest.mark.parametrize(("before", "what"), [(3, "mapped"), (2, "begun, map not traced yet")])
@pytest.mark.parametrize(("profile", "ok"), [("seed-btrfs", True), ("seed", False)])
def test_btrfs_moves_i_size_when_it_maps_a_write(tmp_path, before, what, profile, ok):
    """btrfs_get_blocks_direct_write: i_size_write(start + len) as the write is mapped,
    inside ->iomap_begin, so before iomap_iter_dstmap fires: request 1 completes with
    the end of request 2, which has not submitted its bio, and may not even show its
    mapping yet. Other filesystems move i_size only in ->end_io."""
    w2 = _write(2, 4096)
    events = [
        *_write(1, 0), *w2[:before],  # request 2: file, begin (, map)
        {"ev": "bio_end", "req": 1, "index": 0, "status": 0},
        {"ev": "complete", "req": 1, "ret": 4096, "pos_after": 4096, "i_size": 8192},
        *w2[before:],
        {"ev": "bio_end", "req": 2, "index": 0, "status": 0},
        {"ev": "complete", "req": 2, "ret": 4096, "pos_after": 8192, "i_size": 8192},
    ]  # fmt: skip
    assert _replay(tmp_path, events, profile) == ok, what
