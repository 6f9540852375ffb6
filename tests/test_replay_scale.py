"""Replay cost per bio (issue 12): bios that are not recorded are implied in bulk.

No timing here (figures are in ``dioconf bench replay``): the tests count the engine
calls a replay makes, and check that the bulk inputs (``DefaultCuts``, ``BioEndAll``)
do exactly what one ``Cut`` / ``BioEnd`` per bio does.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from dioconf.bench.replay_scale import implied_read_lines
from dioconf.model import iomap
from dioconf.model.bioset import BioSet
from dioconf.model.engine import ModelEngine
from dioconf.model.types import (
    Bio,
    BioEnd,
    BioEndAll,
    BioRun,
    Blocked,
    Cut,
    DefaultCuts,
    Emit,
    Fault,
    Finished,
    Geometry,
    InvalidateResult,
    Mapping,
    ModelUsageError,
    NeedCut,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    Output,
    Request,
    WritebackResult,
)
from dioconf.traces.format import dump_line, parse_trace
from dioconf.traces.replay import Replayer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MIB = 1 << 20


class _TooManyCalls(Exception):
    pass


def _counting_engine(limit: int) -> tuple[ModelEngine, list[int]]:
    """The iomap model, counting its step and feed calls; fails past ``limit`` calls
    (so a replay that works bio by bio fails instead of running for hours)."""
    calls = [0]

    def count() -> None:
        calls[0] += 1
        if calls[0] > limit:
            raise _TooManyCalls(f"more than {limit} engine calls")

    def step(s: Any) -> Any:
        count()
        return iomap.step(s)

    def feed(s: Any, inp: Any) -> Any:
        count()
        return iomap.feed(s, inp)

    return ModelEngine("iomap", iomap.start, step, feed), calls


def _replay_calls(nbytes: int, limit: int = 10_000) -> int:
    engine, calls = _counting_engine(limit)
    result = Replayer(parse_trace(implied_read_lines(nbytes), "<scale>"), engine).run()
    assert result.ok, result.divergence
    return calls[0]


def test_implied_bios_cost_the_same_engine_calls_whatever_their_number():
    # 1 MiB bios: 1,024 and 32,768 of them, neither recorded
    assert _replay_calls(1024 * MIB) == _replay_calls(32768 * MIB) < 50


def test_a_2_62_byte_read_with_implied_bios_replays_in_bounded_steps():
    assert _replay_calls(1 << 62) < 50


def test_implied_bio_end_lines_still_issue_the_bios_up_to_their_index():
    lines = implied_read_lines(64 * MIB, bio_ends=((40, 0), (3, 0)))
    result = Replayer(parse_trace(lines, "<scale>")).run()
    assert result.ok, result.divergence


def test_a_failed_implied_bio_stops_submission_and_fails_the_request():
    lines = implied_read_lines(64 * MIB, bio_ends=((40, -5),), ret=-5)
    # iomap_iter asks again for the rest after the 41 bios; no bio is built from it
    rest = {"ev": "map", "req": 1, "offset": 41 * MIB, "length": 23 * MIB, "type": "MAPPED",
            "flags": [], "addr": (1 << 20) + 41 * MIB}  # fmt: skip
    lines.insert(-1, dump_line(rest))
    engine, calls = _counting_engine(1000)
    result = Replayer(parse_trace(lines, "<scale>"), engine).run()
    assert result.ok, result.divergence
    assert calls[0] < 50


def test_blocked_carries_the_runs_not_a_sorted_copy():
    geo = Geometry(4096, 512, 4096)
    s = iomap.start(geo, Request("read", 0, 8 * MIB), 8 * MIB)
    out = _drive(s, lambda need: Mapping(need.pos, 8 * MIB, "MAPPED", addr=MIB), [], bulk=True)
    assert isinstance(out.blocked, Blocked)
    assert out.blocked.outstanding == BioSet.span(0, 8)
    assert out.blocked.outstanding.runs == ((0, 8),)


def test_bioset_follows_a_plain_set():
    ops = [("add", 0), ("add", 1), ("add", 2), ("remove", 1), ("add", 5), ("remove", 0)]
    b, ref = BioSet(), set()
    for op, i in ops:
        b = b.add(i) if op == "add" else b.remove(i)
        ref = ref | {i} if op == "add" else ref - {i}
        assert list(b) == sorted(ref) and len(b) == len(ref)
        assert all((j in b) == (j in ref) for j in range(8))
    with pytest.raises(KeyError):
        b.remove(1)
    with pytest.raises(ValueError):
        b.add(3)  # not newer than bio 5


@given(st.lists(st.integers(0, 40), max_size=60))
def test_bioset_removals_in_any_order(order: list[int]):
    b, ref = BioSet.span(0, 41), set(range(41))
    for i in order:
        if i in ref:
            b, ref = b.remove(i), ref - {i}
    assert list(b) == sorted(ref) and b == BioSet.of(ref) and len(b) == len(ref)
    if ref:
        assert b.first == min(ref)


# ------------------------------------------------------------- bulk == one by one


class _Run:
    def __init__(self) -> None:
        self.outputs: list[Output] = []
        self.state: Any = None
        self.blocked: Any = None


def _drive(s: Any, mapper: Any, events: list[tuple[int, str, int]], *, bulk: bool,
           limits: list[int | None] | None = None, stop_at_block: bool = True) -> _Run:  # fmt: skip
    """Run a request; ``events``: (k, what, value) happen before bio ``k`` is cut
    (``end_all``: every bio in flight ends with status ``value``; ``fault``: at
    ``value``). ``bulk``: DefaultCuts and BioEndAll, else one Cut / BioEnd per bio."""
    run = _Run()
    todo = sorted(events)
    limits = list(limits or [])
    nbios = 0

    def apply(what: str, value: int) -> None:
        if what == "fault":
            run.state = iomap.feed(run.state, Fault(value))
        elif bulk:
            run.state = iomap.feed(run.state, BioEndAll(value))
        else:
            for i in list(run.state.outstanding):
                run.state = iomap.feed(run.state, BioEnd(i, value))

    run.state = s
    for _ in range(100_000):
        run.state, action = iomap.step(run.state)
        if isinstance(action, Emit):
            o = action.output
            run.outputs.extend(o.bios() if isinstance(o, BioRun) else [o])
            nbios += o.count if isinstance(o, BioRun) else isinstance(o, Bio)
        elif isinstance(action, NeedInvalidate):
            run.state = iomap.feed(run.state, InvalidateResult(0))
        elif isinstance(action, NeedWriteback):
            run.state = iomap.feed(run.state, WritebackResult(0))
        elif isinstance(action, NeedMap):
            run.state = iomap.feed(run.state, mapper(action))
        elif isinstance(action, NeedCut):
            while todo and todo[0][0] <= nbios:
                _, what, value = todo.pop(0)
                apply(what, value)
            if bulk:
                limit = limits.pop(0) if limits else None
                if todo:
                    gap = todo[0][0] - nbios
                    limit = gap if limit is None else min(limit, gap)
                run.state = iomap.feed(run.state, DefaultCuts(limit))
            else:
                run.state = iomap.feed(run.state, Cut(action.proposal.len))
        elif isinstance(action, Blocked):
            run.blocked = action
            if stop_at_block:
                return run
            apply("end_all", 0)
        else:
            assert isinstance(action, Finished)
            return run
    raise AssertionError("the request did not finish")


_GEOS = [Geometry(512, 512, 512), Geometry(4096, 512, 4096), Geometry(4096, 4096, 4096, fua=True)]


@st.composite
def _cases(draw: Any) -> dict[str, Any]:
    geo = draw(st.sampled_from(_GEOS))
    full = 256 * geo.page_size
    unit = geo.logical_block_size
    pos = draw(st.integers(0, 3 * full // unit)) * unit
    length = draw(st.one_of(st.integers(1, 16), st.integers(full // unit, 8 * full // unit)))
    length *= unit
    op = draw(st.sampled_from(["read", "write"]))
    iocb = draw(st.sets(st.sampled_from(["DSYNC", "SYNC", "NOWAIT"]), max_size=2))
    if "SYNC" in iocb:
        iocb |= {"DSYNC"}
    dio = draw(st.sets(st.sampled_from(["PARTIAL", "FSBLOCK_ALIGNED", "BUF_WRITETHROUGH"])))
    if op == "read":
        dio -= {"BUF_WRITETHROUGH"}
    req = Request(op, pos, length, iocb=iocb, dio=dio, sync=draw(st.booleans()),
                  done_before=draw(st.sampled_from([0, 4096])))  # fmt: skip
    i_size = draw(st.integers(0, 12 * full // unit)) * unit
    # extents: boundaries on fs blocks, each of a type
    block = geo.fs_block_size
    cuts = sorted(draw(st.sets(st.integers(1, 12 * full // block), max_size=4)))
    bounds = [0, *(c * block for c in cuts), 1 << 40]
    kinds = draw(st.lists(st.sampled_from(["MAPPED", "UNWRITTEN", "HOLE", "NEW", "SHARED"]),
                          min_size=len(bounds) - 1, max_size=len(bounds) - 1))  # fmt: skip
    end_all = st.tuples(st.integers(0, 8), st.just("end_all"), st.sampled_from([0, -5]))
    fault = st.tuples(st.integers(0, 8), st.just("fault"), st.integers(0, length))
    events = draw(st.lists(st.one_of(end_all, fault), max_size=3))
    limits = draw(st.lists(st.one_of(st.none(), st.integers(1, 5)), max_size=6))
    return {"geo": geo, "req": req, "i_size": i_size, "bounds": bounds, "kinds": kinds,
            "events": events, "limits": limits}  # fmt: skip


def _mapper(bounds: list[int], kinds: list[str]) -> Any:
    def answer(need: NeedMap) -> Mapping:
        for lo, hi, kind in zip(bounds, bounds[1:], kinds, strict=True):
            if lo <= need.pos < hi:
                if kind == "HOLE":
                    return Mapping(lo, hi - lo, "HOLE")
                flags = {kind} if kind in ("NEW", "SHARED") else set()
                typ = "UNWRITTEN" if kind == "UNWRITTEN" else "MAPPED"
                return Mapping(lo, hi - lo, typ, flags, addr=(1 << 30) + lo)
        raise AssertionError(need)

    return answer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_bulk_inputs_equal_one_input_per_bio(case: dict[str, Any]):
    mapper = _mapper(case["bounds"], case["kinds"])
    try:
        s = iomap.start(case["geo"], case["req"], case["i_size"])
        one = _drive(s, mapper, case["events"], bulk=False, stop_at_block=False)
    except ModelUsageError as exc:  # e.g. a write through a hole
        with pytest.raises(ModelUsageError, match=re.escape(str(exc))):
            _drive(s, mapper, case["events"], bulk=True, limits=case["limits"],
                   stop_at_block=False)  # fmt: skip
        return
    bulk = _drive(s, mapper, case["events"], bulk=True, limits=case["limits"],
                  stop_at_block=False)  # fmt: skip
    assert bulk.outputs == one.outputs
    assert bulk.state.__dict__ == one.state.__dict__
