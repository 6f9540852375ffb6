"""The conformance suite itself: harness checks, failure artifacts, the machine, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dioconf.conformance import ops as O
from dioconf.conformance.catalogue import COMBOS
from dioconf.conformance.harness import ConformanceFailure, Harness
from dioconf.conformance.repro import write_repro
from dioconf.conformance.run import UsageError, run_combo, select
from dioconf.impl import iomap_dio
from dioconf.impl.api import F_NEW, MAPPED
from dioconf.impl.fs.simple import OverwriteFs
from dioconf.model.pattern import pattern
from dioconf.traces.replay import replay_file
from hypothesis import given, settings
from hypothesis import strategies as st

from dioconf.cli import main

KIB = 1024


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(fs: str = "overwrite", engine: str = "iomap", **kw) -> Harness:
        made.append(Harness(fs, engine, size=64 << 20, **kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


# -- operations ------------------------------------------------------------------------


@pytest.mark.parametrize("op", [
    O.DirectWrite(0, 512, 4096, 3, ("DSYNC",), ("PARTIAL",), False, 4096, 512,
                  (None, O.Pick(1, -5))),
    O.DirectRead(1, 0, 100, ("NOWAIT",)), O.FileWrite(0, 1, 2, 9, ("SYNC",)),
    O.BufferedWrite(0, 3, 4, 5), O.BufferedRead(1, 0, 7), O.Fallocate(0, 0, 4096, True),
    O.Punch(0, 4096, 4096), O.Truncate(1, 0), O.Reflink(0, 1), O.Fsync(0),
    O.CompleteBio(2, -5), O.Crash(),
])  # fmt: skip
def test_every_operation_prints_as_python_that_rebuilds_it(op):
    assert eval(repr(op), vars(O)) == op
    assert op.describe()


def test_a_pick_refuses_a_negative_index():
    with pytest.raises(ValueError, match=r"Pick\.k"):
        O.Pick(-1)


# -- the harness checks ------------------------------------------------------------------


@pytest.mark.parametrize("fs,engine", COMBOS)
def test_a_dsync_write_survives_a_crash_and_reads_back(harness, fs, engine):
    h = harness(fs, engine)
    h.run([O.DirectWrite(0, 0, 8 * KIB, 1, ("DSYNC",)), O.Crash(),
           O.DirectRead(0, 0, 8 * KIB)])  # fmt: skip
    assert h.files[0].size == 8 * KIB
    assert h.stats.crashes == 1 and h.stats.divergences == 0


def test_a_plain_write_may_vanish_in_a_crash(harness):
    h = harness()
    h.run([O.DirectWrite(0, 0, 4 * KIB, 1), O.Crash()])
    assert h.files[0].size == 0  # neither data nor i_size was synced: the oracle allows it


def test_async_request_completes_through_explicit_completions(harness):
    h = harness()
    h.run([O.DirectWrite(0, 0, 64 * KIB, 1), O.DirectWrite(0, 0, 8 * KIB, 2, sync=False)])
    assert h.pending is not None and h.inflight() == 1
    assert h.stats.order_checks == 1  # z3 over every completion order of what is in flight
    h.apply(O.CompleteBio(0, -5))
    assert h.pending is None and h.stats.races == 1
    h.check_all()  # the failed bio's range may hold either value; both are allowed


def test_what_may_run_while_a_request_is_in_flight(harness):
    """conformance.inflight: reads anywhere, writes elsewhere; not a second async
    request, not a write to the pages in flight, not a write past EOF of its file."""
    h = harness()
    h.run([O.DirectWrite(0, 0, 64 * KIB, 1), O.DirectWrite(0, 0, 8 * KIB, 2, sync=False)])
    assert h.pending is not None
    h.run([O.DirectRead(0, 0, 16 * KIB), O.BufferedRead(0, 0, 8 * KIB), O.Fsync(0),
           O.DirectWrite(0, 32 * KIB, 4 * KIB, 3), O.DirectWrite(1, 0, 4 * KIB, 4),
           O.BufferedWrite(0, 40 * KIB, 100, 5)])  # fmt: skip
    assert h.pending is not None  # nothing else completed its bios
    for op in (O.DirectWrite(0, 4 * KIB, 512, 6), O.BufferedWrite(0, 8 * KIB - 1, 2, 6),
               O.DirectWrite(0, 64 * KIB, 4 * KIB, 6), O.DirectRead(1, 0, 512, sync=False)):
        with pytest.raises(ValueError, match="in flight"):
            h.apply(op)
    h.apply(O.CompleteBio(0))
    assert h.pending is None
    h.check_all()


def test_truncate_waits_for_the_direct_io_in_flight(harness):
    h = harness()
    h.run([O.DirectWrite(0, 0, 64 * KIB, 1), O.DirectWrite(0, 0, 8 * KIB, 2, sync=False)])
    h.apply(O.Truncate(0, 4 * KIB))  # inode_dio_wait: write #2 completes first
    assert h.pending is None and h.files[0].size == 4 * KIB
    h.check_all()


def test_a_write_in_flight_may_show_either_way_until_it_completes(harness):
    h = harness()
    h.run([O.DirectWrite(0, 0, 64 * KIB, 1),
           O.DirectWrite(0, 0, 8 * KIB, 2, sync=False, plan=(None,) * 4)])  # fmt: skip
    ino = h.files[0].ino
    h.apply(O.DirectRead(0, 0, 8 * KIB))  # the old data: the bios have not completed
    assert {v.wid for s, e, vs in h.oracle.contents(ino) if s < 8 * KIB for v in vs} == {1, 2}
    h.apply(O.CompleteBio(0))
    assert {v.wid for s, e, vs in h.oracle.contents(ino) if s < 8 * KIB for v in vs} == {2}
    h.apply(O.DirectRead(0, 0, 8 * KIB))  # now the new data, and only that
    h.check_all()


class NoZeroingFs(OverwriteFs):
    """Broken on purpose: allocates for a write without IOMAP_F_NEW, so the engine does
    not zero the rest of a new block."""

    name = "no-zeroing"

    def iomap_begin(self, inode, pos, length, flags):
        m = super().iomap_begin(inode, pos, length, flags)
        if "WRITE" in flags and F_NEW in m.flags:
            self.convert(inode, m.offset, m.length)
            return m._replace(type=MAPPED, flags=m.flags - {F_NEW})
        return m


def test_stale_data_exposure_is_caught_and_named(harness):
    h = harness("overwrite", fs_factory=NoZeroingFs)
    h.apply(O.DirectWrite(0, 4 * KIB, 4 * KIB, 1))  # the file is now 8 KiB
    with pytest.raises(ConformanceFailure) as info:
        h.apply(O.DirectWrite(0, 512, 512, 2))  # a new block, its edges never zeroed
    assert info.value.kind == "stale"
    assert "stale" in info.value.message and "direct write #2" in str(info.value)


def test_an_engine_divergence_is_caught_and_its_trace_replays_diverging(
        harness, monkeypatch, tmp_path):  # fmt: skip
    real = iomap_dio._complete

    def counts_too_much(dio, ctx):
        dio.size += 512  # as if one more sector had been done
        return real(dio, ctx)

    monkeypatch.setattr(iomap_dio, "_complete", counts_too_much)
    h = harness()
    with pytest.raises(ConformanceFailure) as info:
        h.apply(O.DirectWrite(0, 0, 4 * KIB, 1))
    f = info.value
    assert f.kind == "engine" and "model predicts" in f.message, f
    trace = tmp_path / "t.jsonl"
    from dioconf.traces.format import write_trace

    with open(trace, "w") as fp:
        write_trace(fp, f.header, f.replayable_events())
    assert not replay_file(str(trace)).ok


def test_the_reproduction_is_a_runnable_script(harness, tmp_path):
    h = harness()
    h.run([O.DirectWrite(0, 0, 4 * KIB, 1), O.Crash()])
    failure = ConformanceFailure("contents", "made up for the test", h)
    script = write_repro(tmp_path / "repro.py", failure)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr  # the made-up failure does not reproduce
    assert "did not reproduce" in run.stdout
    assert "DirectWrite(file=0, pos=0, length=4096, wid=1" in script.read_text()


def test_reads_return_what_was_written_at_huge_offsets(harness):
    far = (1 << 63) - (1 << 20)
    h = harness()
    h.run([O.DirectWrite(0, far, 8 * KIB, 1), O.DirectRead(0, far - 4 * KIB, 16 * KIB),
           O.Truncate(0, far + 512), O.Crash()])  # fmt: skip
    assert h.backend.read_view(h.files[0].ino, far, far + 512) in (b"", pattern(1, far, 512))


# -- the machine and the main job ---------------------------------------------------------


@pytest.mark.parametrize("fs,engine", COMBOS)
def test_the_suite_passes_on_main(fs, engine, tmp_path):
    r = run_combo(fs, engine, "ci", examples=12, out_dir=tmp_path)
    assert r.ok, r.failure
    assert r.examples >= 12 and r.stats.steps > 0 and r.stats.divergences == 0


def test_selection_refuses_unknown_names():
    with pytest.raises(UsageError, match="unknown filesystem"):
        select(["ext9"])
    with pytest.raises(UsageError, match="no filesystem runs"):
        select(["getblock"], ["iomap"])


def test_cli_run_exit_codes(tmp_path, capsys):
    assert main(["run", "--fs", "nope", "--no-proofs", "-q"]) == 2
    with pytest.raises(SystemExit) as info:  # argparse: the option named, exit 2
        main(["run", "--examples", "0", "-q"])
    assert info.value.code == 2
    assert main(["run", "--fs", "overwrite", "--examples", "3", "--no-proofs", "--json",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["combos"][0]["fs"] == "overwrite"
    assert doc["combos"][0]["steps"] > 0


def test_a_result_that_differs_from_the_recorded_one_is_caught(harness, monkeypatch):
    real = iomap_dio.iomap_dio_rw
    monkeypatch.setattr("dioconf.impl.world.iomap_dio_rw", lambda *a, **k: real(*a, **k) + 1)
    h = harness()
    with pytest.raises(ConformanceFailure, match="recorded"):
        h.apply(O.DirectWrite(0, 0, 4 * KIB, 1))



@given(data=st.data())
@settings(max_examples=25, deadline=None, database=None, derandomize=True)
def test_edge_requests_stay_below_the_loff_t_limit(data: st.DataObject) -> None:
    """A file whose data ends at the loff_t limit: requests at its edges are still valid
    (found by ``dioconf run --profile dev --seed 3``: a read at 2**63 of length -1)."""
    from dioconf.conformance.machine import machine_for

    m = machine_for("reflink", "iomap")()
    m.setup((512, True, False))
    try:
        far = (1 << 63) - (1 << 20)
        m.apply(O.BufferedWrite(0, far, (1 << 20) - 1, m._next_wid()))
        m.apply(O.Fsync(0))  # written back: blocks up to the limit
        m._at_edge(data, 0, data.draw(st.booleans()))
        op = m.h.ops[-1]
        assert op.pos >= 0 and op.length > 0 and op.pos + op.length <= 1 << 63
    finally:
        m.teardown()


def test_a_sync_read_faulting_in_a_hole_keeps_its_error_over_a_later_bio_error() -> None:
    """A synchronous direct read: bio 0 of the written block is in flight, the hole past
    EOF faults (-EFAULT, the submitter's error); bio 0 then fails with -EIO while the
    submitter waits. The submitter's error was set first (__iomap_dio_rw after the loop),
    so -EFAULT is the result, and the replay of the trace agrees (found by ``dioconf run
    --profile dev --seed 3``: the replay had taken the completion before the error)."""
    plan = (None, None, None, O.Pick(0, -5))  # bio 0 fails at the wait
    ops = [O.DirectWrite(0, 0, 512, 1, flags=("DSYNC",)),
           O.DirectRead(0, 0, 8192, fault_at=4096, plan=plan)]  # fmt: skip
    with Harness("xfs-like") as h:
        h.run(ops)
        h.check_all()
        read = [(e["ev"], e.get("status", e.get("ret"))) for e in h.backend.events_since(0)
                if e.get("req") == 2 and e["ev"] in ("bio_end", "complete")]  # fmt: skip
        assert read == [("bio_end", -5), ("complete", -14)]
