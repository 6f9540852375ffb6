"""Pinning the user buffer fails with -EFAULT or, when a fatal signal is pending, with
-EINTR (get_user_pages). ``Fault.errno`` / the trace's ``fault`` ``errno`` carries which;
only -EFAULT is special-cased by the engines (PARTIAL, dio_complete), and only -EFAULT
stops copies (hole and inline iterations copy without pinning)."""

from __future__ import annotations

import json

import pytest
from dioconf.model import errno as E
from dioconf.model import iomap, legacy
from dioconf.model.engine import drive
from dioconf.model.types import Complete, Fault, Geometry, Mapping, Request
from dioconf.traces.format import TraceFormatError, event_to_input, parse_trace

GEO = Geometry(4096, 512, 4096, write_cache=True, fua=False)
DEV = 1 << 22


def _ret(engine, req: Request, maps: list[Mapping], fault: Fault) -> int:
    out = drive(engine, GEO, req, 65536, list(maps), faults=[fault])
    done = [o for o in out if isinstance(o, Complete)]
    return done[-1].ret


def mapped() -> Mapping:
    return Mapping(0, 65536, "MAPPED", addr=DEV)


@pytest.mark.parametrize(("errno", "ret"), [(E.EFAULT, 4096), (E.EINTR, E.EINTR)])
def test_partial_turns_only_efault_into_a_short_result(errno, ret):
    """__iomap_dio_rw (L814-818): ``ret == -EFAULT && dio->size && PARTIAL``; -EINTR
    after progress is the request's error."""
    req = Request("write", 0, 8192, dio={"PARTIAL"})
    assert _ret(iomap.ENGINE, req, [mapped(), mapped()], Fault(4096, errno)) == ret


@pytest.mark.parametrize("errno", [E.EFAULT, E.EINTR])
def test_no_progress_fails_with_the_pinning_errno(errno):
    req = Request("read", 0, 8192)
    assert _ret(iomap.ENGINE, req, [mapped()], Fault(0, errno)) == errno


@pytest.mark.parametrize(("errno", "ret"), [(E.EFAULT, E.EFAULT), (E.EINTR, 8192)])
def test_a_hole_is_copied_not_pinned(errno, ret):
    """iomap_dio_hole_iter zeroes the user buffer with a copy (iov_iter_zero): a pending
    fatal signal does not stop it; an unfaultable page does."""
    req = Request("read", 0, 8192)
    hole = Mapping(0, 65536, "HOLE")
    assert _ret(iomap.ENGINE, req, [hole], Fault(0, errno)) == ret


@pytest.mark.parametrize(("errno", "ret"), [(E.EFAULT, 262144), (E.EINTR, E.EINTR)])
def test_legacy_ignores_only_efault_after_progress(errno, ret):
    """dio_refill_pages (L199) returns the pinning error; dio_complete (L257-258)
    ignores -EFAULT once some I/O was done, not -EINTR."""
    n = 65 * 4096
    req = Request(op="read", pos=0, len=n)
    maps = [Mapping(0, n, "MAPPED", addr=8 << 20)]
    out = drive(legacy.ENGINE, GEO, req, 1 << 20, maps, faults=[Fault(64 * 4096, errno)])
    assert [o for o in out if isinstance(o, Complete)][-1].ret == ret


def test_fault_errno_must_be_negative():
    with pytest.raises(ValueError, match="negative errno"):
        Fault(0, 4)


def _trace(fault: dict) -> list[str]:
    header = {"format": "dioconf-trace", "version": 1, "engine": "iomap",
              "geometry": {"fs_block_size": 4096, "logical_block_size": 512,
                           "page_size": 4096, "write_cache": True, "fua": False}}  # fmt: skip
    begin = {"ev": "begin", "req": 1, "op": "read", "pos": 0, "len": 4096, "done_before": 0,
             "iocb": [], "dio": [], "sync": True}  # fmt: skip
    return [json.dumps(header), json.dumps(begin), json.dumps({"ev": "fault", "req": 1, **fault})]


def test_a_trace_fault_carries_its_errno_and_defaults_to_efault():
    with_errno = parse_trace(_trace({"at": 0, "errno": -4})).events[-1]
    plain = parse_trace(_trace({"at": 0})).events[-1]
    assert event_to_input(with_errno) == Fault(0, E.EINTR)
    assert event_to_input(plain) == Fault(0, E.EFAULT)
    with pytest.raises(TraceFormatError, match="errno"):
        parse_trace(_trace({"at": 0, "errno": 4}))
