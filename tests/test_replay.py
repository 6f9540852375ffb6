"""The interleaving and comparison rules of trace-format.md, checked on small traces
whose expected outcome is worked out from iomap-direct-io.c by hand."""

from __future__ import annotations

from typing import Any

from dioconf.traces.format import dump_line, parse_trace
from dioconf.traces.replay import replay_trace

MIB = 1 << 20
DEV = 1 << 22


def header(**extra: Any) -> dict[str, Any]:
    h = {
        "format": "dioconf-trace",
        "version": 1,
        "engine": "iomap",
        "geometry": {
            "fs_block_size": 4096,
            "logical_block_size": 512,
            "page_size": 4096,
            "write_cache": True,
            "fua": False,
        },
    }
    h.update(extra)
    return h


def begin(req: int, op: str, pos: int, length: int, sync: bool = True, **kw: Any) -> dict:
    return {
        "ev": "begin", "req": req, "op": op, "pos": pos, "len": length, "done_before": 0,
        "iocb": kw.get("iocb", []), "dio": kw.get("dio", []), "sync": sync,
    }  # fmt: skip


def mapped(req: int, offset: int, length: int, **kw: Any) -> dict:
    return {
        "ev": "map", "req": req, "offset": offset, "length": length,
        "type": kw.get("type", "MAPPED"), "flags": kw.get("flags", []),
        "addr": kw.get("addr", DEV + offset),
    }  # fmt: skip


def bio(req: int, op: str, addr: int, length: int, fua: bool = False, **kw: Any) -> dict:
    return {"ev": "bio", "req": req, "op": op, "addr": addr, "len": length, "fua": fua, **kw}


def done(req: int, ret: int, **kw: Any) -> dict:
    return {"ev": "complete", "req": req, "ret": ret, **kw}


def replay(*events: dict, hdr: dict | None = None):
    lines = [dump_line(hdr or header())] + [dump_line(e) for e in events]
    return replay_trace(parse_trace(lines, "t.jsonl"))


def test_recorded_bio_cuts_larger_or_smaller_than_the_models_are_accepted():
    """A 2 MiB read: the model cuts 1 MiB + 1 MiB; a kernel may cut 512 KiB + 1.5 MiB
    (contiguous, aligned, covering exactly) and the replay takes that as given."""
    r = replay(
        {"ev": "file", "i_size": 4 * MIB},
        begin(1, "read", 0, 2 * MIB),
        mapped(1, 0, 4 * MIB),
        bio(1, "read", DEV, MIB // 2),
        bio(1, "read", DEV + MIB // 2, 3 * MIB // 2),
        done(1, 2 * MIB, pos_after=2 * MIB),
    )
    assert r.ok, r.divergence


def test_a_cut_that_skips_bytes_diverges():
    r = replay(
        {"ev": "file", "i_size": 4 * MIB},
        begin(1, "read", 0, 2 * MIB),
        mapped(1, 0, 4 * MIB),
        bio(1, "read", DEV, MIB // 2),
        bio(1, "read", DEV + MIB, MIB),  # a gap: bytes [512K, 1M) never read
        done(1, 2 * MIB),
    )
    assert not r.ok and r.divergence.line == 6 and r.divergence.req == 1


def test_a_misaligned_cut_diverges_without_crashing():
    r = replay(
        {"ev": "file", "i_size": 65536},
        begin(1, "read", 0, 8192),
        mapped(1, 0, 65536),
        bio(1, "read", DEV, 1000),
        done(1, 8192),
    )
    assert not r.ok and r.divergence.line == 5
    assert "len=8192" in r.divergence.model_predicts


def test_bios_without_bio_end_complete_at_the_complete_line():
    """Two bios, no bio_end lines: they complete with status 0 at `complete`."""
    r = replay(
        {"ev": "file", "i_size": 4 * MIB},
        begin(1, "write", 0, 2 * MIB),
        mapped(1, 0, 4 * MIB),
        bio(1, "write", DEV, MIB),
        bio(1, "write", DEV + MIB, MIB),
        done(1, 2 * MIB, pos_after=2 * MIB),
    )
    assert r.ok, r.divergence


def test_outputs_not_in_observed_are_not_compared():
    """observed = [bio, complete]: the model's flush is not expected in the trace."""
    events = (
        {"ev": "file", "i_size": 65536},
        begin(1, "write", 0, 4096, iocb=["DSYNC"]),
        mapped(1, 0, 65536),
        bio(1, "write", DEV, 4096),
        done(1, 4096),
    )
    assert replay(*events, hdr=header(observed=["bio", "complete"])).ok
    r = replay(*events)
    # without the observed list, the missing flush is a divergence at the complete line
    assert not r.ok and r.divergence.line == 6 and r.divergence.model_predicts == "flush"


def test_bio_end_with_error_before_the_next_map_is_a_race_the_model_honours():
    """iomap_dio_bio_iter L532-533: the failed bio is seen before the second extent's
    bios, so the trace shows no bio for it, and the result is the error."""
    r = replay(
        {"ev": "file", "i_size": 65536},
        begin(1, "write", 0, 8192),
        mapped(1, 0, 4096),
        bio(1, "write", DEV, 4096),
        {"ev": "bio_end", "req": 1, "index": 0, "status": -5},
        mapped(1, 4096, 4096),
        done(1, -5, pos_after=0),
    )
    assert r.ok, r.divergence
    # the same bio_end placed after the second bio: that bio was submitted
    r = replay(
        {"ev": "file", "i_size": 65536},
        begin(1, "write", 0, 8192),
        mapped(1, 0, 4096),
        bio(1, "write", DEV, 4096),
        mapped(1, 4096, 4096),
        {"ev": "bio_end", "req": 1, "index": 0, "status": -5},
        bio(1, "write", DEV + 4096, 4096),
        done(1, -5),
    )
    assert not r.ok and r.divergence.line == 8  # too late: submission already stopped


def test_a_trace_that_stops_before_complete_diverges_at_its_end():
    r = replay(
        {"ev": "file", "i_size": 65536},
        begin(1, "read", 0, 4096),
        mapped(1, 0, 65536),
        bio(1, "read", DEV, 4096),
    )
    assert not r.ok and r.divergence.trace_says == "(end of trace)"
    assert r.divergence.model_predicts.startswith("complete ret=4096")


def test_interleaved_requests_and_i_size_carried_between_them():
    """Request 1 (async, extending) is queued; request 2 reads while it is in flight and
    sees the old i_size; after 1 completes, request 3 sees the new i_size."""
    r = replay(
        {"ev": "file", "i_size": 4096},
        begin(1, "write", 4096, 4096, sync=False),
        mapped(1, 0, 65536),
        bio(1, "write", DEV + 4096, 4096),
        {"ev": "queued", "req": 1},
        begin(2, "read", 4096, 4096),  # i_size is still 4096: read at EOF -> 0
        done(2, 0, pos_after=4096),
        {"ev": "bio_end", "req": 1, "index": 0, "status": 0},
        done(1, 4096, pos_after=8192, i_size=8192, ctx="workqueue"),
        begin(3, "read", 4096, 4096),
        mapped(3, 0, 65536),
        bio(3, "read", DEV + 4096, 4096),
        done(3, 4096, pos_after=8192),
    )
    assert r.ok, r.divergence
    assert r.requests == 3


def test_bio_end_indexes_model_bios_when_bios_are_not_observed():
    r = replay(
        {"ev": "file", "i_size": 65536},
        begin(1, "write", 0, 4096, sync=False),
        mapped(1, 0, 65536),
        {"ev": "queued", "req": 1},
        {"ev": "bio_end", "req": 1, "index": 0, "status": -5},
        done(1, -5, ctx="workqueue"),
        hdr=header(observed=["queued", "complete"]),
    )
    assert r.ok, r.divergence


def test_a_mapping_that_does_not_cover_the_position_is_reported_not_raised():
    r = replay(
        {"ev": "file", "i_size": 65536},
        begin(1, "read", 8192, 4096),
        mapped(1, 0, 4096),
        done(1, 4096),
    )
    assert not r.ok and r.divergence.line == 4
    assert "does not cover" in r.divergence.model_predicts


def test_divergence_names_the_seed_rule():
    r = replay(
        {"ev": "file", "i_size": 5000},
        begin(1, "read", 0, 8192),
        mapped(1, 0, 8192),
        bio(1, "read", DEV, 8192),
        done(1, 8192),
    )
    assert not r.ok
    assert r.divergence.trace_says == "complete ret=8192"
    assert "ret=5000" in r.divergence.model_predicts
    assert "short read" in r.divergence.rule


def test_lines_after_an_unobserved_completion_diverge_cleanly():
    """observed = [bio]: the model completes request 1 by itself after its bio; a later
    bio line for it is a divergence, not a crash."""
    r = replay(
        {"ev": "file", "i_size": 65536},
        begin(1, "read", 0, 4096),
        mapped(1, 0, 65536),
        bio(1, "read", DEV, 4096),
        {"ev": "bio_end", "req": 1, "index": 0, "status": 0},
        mapped(1, 4096, 4096),
        hdr=header(observed=["bio"]),
    )
    assert not r.ok and r.divergence.line == 7


def test_a_begin_may_narrow_what_is_observed_for_its_request():
    """begin.observed: the kernel shows no result for __iomap_dio_rw's early exits; the
    request is replayed to its end without comparing complete, but a model that would
    ask for a mapping (no early exit) still diverges at the end of the trace."""
    eof_read = begin(1, "read", 8192, 4096)
    eof_read["observed"] = ["bio"]
    assert replay({"ev": "file", "i_size": 4096}, eof_read).ok
    r = replay({"ev": "file", "i_size": 65536}, eof_read)  # not at EOF: it maps
    assert not r.ok and "asks for a mapping" in r.divergence.model_predicts
    bad = dict(eof_read)
    bad["observed"] = ["bio", "complete"]
    r = replay({"ev": "file", "i_size": 4096}, bad, done(1, 0))
    assert r.ok
