"""Completion orders of in-flight bios, checked with z3 (conformance/orders.py).

States come from driving the real model engines until bios are in flight; the allowed
sets are worked out by hand from the seeds, and every witness order z3 returns is
replayed on the model, which must end with that error.
"""

from __future__ import annotations

import pytest
from dioconf.conformance.orders import allowed_results, check_completion_orders, pending
from dioconf.model import arith
from dioconf.model.evolve import evolve
from dioconf.model.iomap import ENGINE as IOMAP
from dioconf.model.legacy import ENGINE as LEGACY
from dioconf.model.types import (
    BioEnd,
    Blocked,
    Complete,
    Geometry,
    MapError,
    Mapping,
    NeedMap,
    NeedWriteback,
    Request,
    WritebackResult,
)

from .model_runner import Runner

EIO, EAGAIN = -5, -11
GEO = Geometry(4096, 512, 4096, write_cache=True, fua=False)
DEV, MiB = 1 << 22, 1 << 20


def mapped(offset: int, addr: int) -> Mapping:
    return Mapping(offset, 4096, "MAPPED", frozenset(), addr)


def iomap_writer(nbios: int) -> Runner:
    """A write of nbios blocks, one 4096-byte mapping (so one bio) per block."""
    maps = [mapped(4096 * i, DEV + 4096 * i) for i in range(nbios)]
    return Runner(IOMAP, GEO, Request("write", 0, 4096 * nbios), 1 << 30, maps)


def iomap_in_flight(nbios: int) -> Runner:
    """All bios issued and the submitter's reference dropped (sync: it waits)."""
    r = iomap_writer(nbios)
    assert r.run_until_blocked() == Blocked(tuple(range(nbios)), rule=r.last.rule)
    assert r.state.phase == "wait_bios" and r.state.ref == nbios
    return r


def replay(make, order: tuple[str, ...], statuses: dict[int, int]) -> Complete:
    """Feed the parties of ``order`` to a fresh runner; the submitter runs when its turn
    comes (its reference drop); then finish and return the Complete."""
    r = make()
    for party in order:
        if party == "submitter":
            r.run_until_blocked()
        else:
            index = int(party.split()[1])
            r.feed(BioEnd(index, statuses.get(index, 0)))
    done = r.finish()[-1]
    assert isinstance(done, Complete)
    return done


# --------------------------------------------------------------------------- iomap


def test_no_bio_only_the_submitter_completes():
    """__iomap_dio_rw (L856-857): with no bio, the submitter's drop is the last one."""
    r = iomap_writer(1)  # not started: ref 1, nothing in flight
    c = check_completion_orders("iomap", r.state, [])
    assert c.ok and c.parties == ("submitter",)
    assert c.allowed == {0} and c.completers == {"submitter"}
    assert c.witnesses == ((0, ("submitter",)),)
    # iomap_dio_set_error by the submitter (its loop's error) is the only error
    c = check_completion_orders("iomap", r.state, [], submitter_status=EIO)
    assert c.ok and c.allowed == {EIO}


def test_submitter_error_is_read_from_a_state_after_the_loop():
    """__iomap_dio_rw (L825-826): a ->iomap_begin error is set before the drop."""
    s = IOMAP.start(GEO, Request("read", 0, 4096), 65536)
    s, action = IOMAP.step(s)
    assert isinstance(action, NeedWriteback)
    s, action = IOMAP.step(IOMAP.feed(s, WritebackResult(0)))
    assert isinstance(action, NeedMap)
    s = IOMAP.feed(s, MapError(EIO))  # phase after_loop, loop_ret -EIO, no bio
    c = check_completion_orders("iomap", s, [])
    assert c.ok and c.allowed == {EIO} and c.completers == {"submitter"}


def test_one_bio_racing_the_submitters_drop():
    """Either the bio or the submitter drops last; the bio's error is the result."""
    def make():
        r = iomap_writer(1)
        assert r.emit_next().index == 0  # bio 0 in flight, submitter still holds
        return r

    s = make().state
    assert (s.ref, set(s.outstanding)) == (2, {0})
    c = check_completion_orders("iomap", s, [0])
    assert c.ok and c.parties == ("bio 0", "submitter")
    assert c.allowed == {0} and c.completers == {"bio 0", "submitter"}
    c = check_completion_orders("iomap", s, {0: EIO})
    assert c.ok and c.allowed == {EIO}
    for err, order in c.witnesses:
        assert replay(make, order, {0: EIO}).ret == err
    for order in (("bio 0", "submitter"), ("submitter", "bio 0")):
        assert replay(make, order, {0: EIO}).ret == EIO  # both orders: the same error


def test_mixed_statuses_after_the_submitter_dropped():
    """First error wins: any failing bio's status can be the result, never 0."""
    c = check_completion_orders("iomap", iomap_in_flight(3).state, {1: EIO, 2: EAGAIN})
    assert c.ok and c.parties == ("bio 0", "bio 1", "bio 2")  # no submitter: dropped
    assert c.allowed == {EIO, EAGAIN}
    assert c.completers == {"bio 0", "bio 1", "bio 2"}
    assert {err for err, _ in c.witnesses} == {EIO, EAGAIN}
    for err, order in c.witnesses:
        assert replay(lambda: iomap_in_flight(3), order, {1: EIO, 2: EAGAIN}).ret == err
    state = iomap_in_flight(3).state
    assert allowed_results("iomap", state, {1: EIO, 2: EAGAIN}) == {EIO, EAGAIN}
    assert allowed_results("iomap", state, [0, 0, 0]) == {3 * 4096}  # dio->size


def test_error_already_set_stays():
    """iomap_dio_set_error (L174-177): cmpxchg from 0 only; the set error stays."""
    r = iomap_in_flight(3)
    r.feed(BioEnd(1, EIO))
    c = check_completion_orders("iomap", r.state, {0: EAGAIN, 2: 0})
    assert c.ok and c.allowed == {EIO} and c.parties == ("bio 0", "bio 2")
    # a rule where the last error wins is refuted: bio 0 last gives -EAGAIN
    def last_wins(err, status, _nowait):
        return arith.ite(status != 0, status, err)

    bad = check_completion_orders("iomap", r.state, {0: EAGAIN, 2: 0}, error_rule=last_wins)
    assert bad.status == "counterexample" and "-11 not in the allowed set" in bad.detail


def test_sixteen_bios():
    s = iomap_in_flight(16).state
    statuses = [(0, EIO, EAGAIN)[i % 3] for i in range(16)]
    c = check_completion_orders("iomap", s, statuses)
    assert c.ok and c.allowed == {EIO, EAGAIN} and len(c.completers) == 16
    assert check_completion_orders("iomap", s, [0] * 16).allowed == {0}
    symbolic = check_completion_orders("iomap", s)
    assert symbolic.ok and symbolic.allowed is None and symbolic.statuses is None


@pytest.mark.parametrize("delta", [1, -1])
def test_a_wrong_reference_count_is_a_counterexample(delta):
    """One reference too many: nobody completes; one too few: two parties see zero."""
    s = iomap_in_flight(3).state
    c = check_completion_orders("iomap", evolve(s, ref=s.ref + delta), [0, 0, 0])
    assert c.status == "counterexample" and "not exactly one party" in c.detail


def test_completed_request_has_nothing_pending():
    r = iomap_in_flight(1)
    r.finish()
    c = check_completion_orders("iomap", r.state, [])
    assert c.ok and c.parties == () and "already completed" in c.detail
    with pytest.raises(ValueError, match="already completed"):
        allowed_results("iomap", r.state, [])


def test_statuses_are_validated():
    s = iomap_in_flight(2).state
    with pytest.raises(ValueError, match="0 or -errno"):
        check_completion_orders("iomap", s, [0, 5])
    with pytest.raises(ValueError, match="1 statuses for 2"):
        check_completion_orders("iomap", s, [0])
    with pytest.raises(ValueError, match="not in flight"):
        check_completion_orders("iomap", s, {7: EIO})
    with pytest.raises(ValueError, match="unknown engine"):
        check_completion_orders("ext4", s, [0, 0])
    with pytest.raises(ValueError, match="concrete statuses"):
        allowed_results("iomap", s, None)


# --------------------------------------------------------------------------- legacy


def legacy_nowait_write() -> Runner:
    """A sync REQ_NOWAIT write of 3 blocks on 3 disjoint extents: 3 bios, the submitter
    waiting in dio_await_one."""
    maps = [mapped(0, MiB), mapped(4096, 3 * MiB), mapped(8192, 5 * MiB)]
    r = Runner(LEGACY, GEO, Request("write", 0, 3 * 4096, iocb={"NOWAIT"}), 65536, maps)
    assert tuple(r.run_until_blocked().outstanding) == (0, 1, 2)
    return r


def legacy_listed() -> Runner:
    """Bios 0 (-EIO) and 1 (-EAGAIN) completed onto dio->bio_list, bio 2 in flight."""
    r = legacy_nowait_write()
    r.feed(BioEnd(0, EIO))
    r.feed(BioEnd(1, EAGAIN))
    return r


def test_legacy_listed_bios_are_processed_newest_first():
    """dio_bio_end_io pushes (L380-382), dio_await_one pops newest first, last failing
    processed wins (dio_bio_complete L494-499); REQ_NOWAIT keeps -EAGAIN."""
    s = legacy_listed().state
    p = pending("legacy", s)
    assert p.queued == ((1, EAGAIN), (0, EIO)) and p.submitter_last and p.ref == 2
    # bio 2 succeeds: the list is popped 1 then 0 -> -EIO, whatever bio 2 does
    c = check_completion_orders("legacy", s, [0])
    assert c.ok and c.allowed == {EIO} and c.completers == {"submitter"}
    assert c.parties == ("bio 2", "bio 1 (listed)", "bio 0 (listed)", "submitter")
    # bio 2 fails with -EAGAIN: popped last (it completes after the list drained) or
    # first (it completes before, so lands on top): -EAGAIN or -EIO
    c = check_completion_orders("legacy", s, [EAGAIN])
    assert c.ok and c.allowed == {EIO, EAGAIN}
    assert allowed_results("legacy", s, [EAGAIN]) == {EIO, EAGAIN}
    # the two orders on the model: bio 2 completes now (popped first) -> -EIO ...
    r = legacy_listed()
    r.feed(BioEnd(2, EAGAIN))
    assert r.finish()[-1].ret == EIO
    # ... or after the submitter popped the list -> -EAGAIN
    r = legacy_listed()
    assert isinstance(r.run_until_blocked(), Blocked)
    r.feed(BioEnd(2, EAGAIN))
    assert r.finish()[-1].ret == EAGAIN
    # a rule where the first failing bio wins is refuted (list gives -EAGAIN then -EIO)
    bad = check_completion_orders("legacy", s, [0], error_rule=lambda e, st, nw: arith.ite(
        e == 0, arith.legacy_io_error(e, st, nw), e))  # fmt: skip
    assert bad.status == "counterexample"


def test_legacy_aio_read_queued():
    """After -EIOCBQUEUED the submitter has dropped; the bio that drops the last
    reference completes (dio_bio_end_aio); a read bio has no REQ_NOWAIT: -EIO."""
    maps = [mapped(0, MiB), mapped(4096, 3 * MiB)]

    def make() -> Runner:
        r = Runner(LEGACY, GEO, Request("read", 0, 8192, sync=False), 65536, maps)
        r.run_until_blocked()
        return r

    s = make().state
    assert s.phase == "dio_bio_end_aio:wait"
    c = check_completion_orders("legacy", s, [EAGAIN, 0])
    assert c.ok and c.parties == ("bio 0", "bio 1") and c.allowed == {EIO}
    assert c.completers == {"bio 0", "bio 1"}
    for err, order in c.witnesses:
        done = replay(make, order, {0: EAGAIN})
        assert (done.ret, done.ctx) == (err, "inline")
    assert allowed_results("legacy", s, [0, 0]) == {8192}
    assert allowed_results("legacy", s, [EAGAIN, 0]) == {EIO}
    assert check_completion_orders("legacy", s).ok  # symbolic statuses


def test_legacy_symbolic_statuses_with_listed_bios():
    c = check_completion_orders("legacy", legacy_listed().state, None)
    assert c.ok and c.allowed is None and c.completers == {"submitter"}
