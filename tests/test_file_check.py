"""The file-level checker (conformance/file_check.py), the seeded runner and shrinker
(fast.py) and the Hypothesis runner (file_hyp.py) on in-memory backends: a correct one
passes, and each mutant is caught, named and shrunk."""

from __future__ import annotations

import pytest
from dioconf.conformance.fast import _Runs, run_fast, shrink
from dioconf.conformance.file_check import FileRun
from dioconf.conformance.file_hyp import run_hypothesis
from dioconf.conformance.file_ops_gen import KINDS, Op, draw_ops
from dioconf.conformance.findings import FINDINGS

from .memfs import (
    GrowOnFailureFs,
    HeadPadFs,
    LazyZeroFs,
    LostMmapFs,
    MemFs,
    OnceStaleFs,
    ShortWriteFs,
    StaleFs,
)


def test_a_correct_backend_passes_every_operation_kind() -> None:
    rep = run_fast(MemFs(), seed=3, runs=10, ops=300)
    assert rep.failures == [] and rep.steps == 3000
    drawn = {op.kind for r in range(10) for op in draw_ops(3 * 1_000_003 + r, 300, MemFs().caps)}
    assert drawn == set(KINDS)  # every kind was exercised (reflink: MemFs has it)


def test_drawing_is_reproducible_and_aligned() -> None:
    caps = MemFs().caps
    a, b = draw_ops(11, 500, caps), draw_ops(11, 500, caps)
    assert a == b and a != draw_ops(12, 500, caps)
    for op in a:
        if op.kind in ("pwrite", "pread"):
            assert op.pos % 512 == 0 and op.length % 512 == 0 and op.length > 0
        if op.fault_at is not None:
            assert op.fault_at % 4096 == 0 and op.fault_at < op.length


@pytest.mark.parametrize(
    ("mutant", "name"),
    [
        (HeadPadFs, "head-pad-after-dropped-fault"),
        (GrowOnFailureFs, "failed-write-grew-file"),
        (StaleFs, "unexplained-stale"),
        (ShortWriteFs, "unexplained-result"),
        (LazyZeroFs, "unexplained-stale"),  # the bytes it should have zeroed show
        (LostMmapFs, "unexplained-mismatch"),
    ],
)
def test_each_mutant_is_found_named_and_shrunk(mutant: type[MemFs], name: str) -> None:
    rep = run_fast(mutant(), seed=0, runs=10, ops=300)
    assert [f.failure.name for f in rep.failures] == [name]
    f = rep.failures[0]
    assert len(f.ops) <= min(3, f.original_length)  # delta debugging got it down
    assert f.story and f.story[-1].startswith(f"{len(f.ops) - 1:4}: ")


def test_an_allowed_finding_is_counted_and_the_run_goes_on() -> None:
    rep = run_fast(HeadPadFs(), seed=0, runs=10, ops=300,
                   allow=frozenset({"head-pad-after-dropped-fault"}))  # fmt: skip
    assert rep.failures == [] and rep.allowed["head-pad-after-dropped-fault"] > 0
    assert rep.steps == 3000


def test_the_head_pad_finding_seen_after_a_failed_write() -> None:
    """ext4's form of it: the write fails with EFAULT, yet its data landed up to the
    block and the rest before the fault reads as zeros."""

    class Ext4Like(MemFs):
        def direct_write(self, name, pos, length, wid, flags, fault_at):  # type: ignore[no-untyped-def]
            n = super().direct_write(name, pos, length, wid, flags, fault_at)
            if fault_at and n > 0 and (pos + n) % 4096:
                end = pos + n
                self._put(name, end - end % 4096, bytes(end % 4096))
                return -14
            return n

    run = FileRun(Ext4Like(), "x-")
    run.start()
    assert run.step(0, Op("truncate", "f0", 16384)) is None  # inside EOF: no size change
    failure = run.step(1, Op("pwrite", "f0", 512, 8192, wid=1, fault_at=4096))
    assert failure is not None and failure.name == "head-pad-after-dropped-fault"
    assert "EFAULT" in failure.message


def test_shrink_keeps_only_what_the_failure_needs() -> None:
    runs = _Runs(GrowOnFailureFs(), frozenset())
    noise = [Op("pread", "f1", 0, 512), Op("fsync", "f0"), Op("bwrite", "f1", 0, 512, wid=2)]
    bad = Op("pwrite", "f0", 8192, 8192, wid=3, fault_at=0)
    ops, attempts = shrink(runs, noise * 3 + [bad] + noise, "failed-write-grew-file")
    assert ops == [bad] and attempts > 1


def test_hypothesis_finds_and_shrinks_to_one_operation() -> None:
    rep = run_hypothesis(HeadPadFs(), seed=0, examples=200, ops=40, derandomize=True)
    assert [f.failure.name for f in rep.failures] == ["head-pad-after-dropped-fault"]
    ops = rep.failures[0].ops
    assert len(ops) <= 2 and ops[-1].kind == "pwrite" and ops[-1].fault_at is not None


def test_hypothesis_passes_a_correct_backend() -> None:
    rep = run_hypothesis(MemFs(), seed=0, examples=50, ops=40, derandomize=True)
    assert rep.failures == [] and rep.steps > 50


def test_known_findings_are_documented() -> None:
    for doc in FINDINGS.values():
        assert doc.summary and doc.seed
        if doc.repro_path is not None:
            assert doc.repro_path.is_file(), doc.repro_path


def test_a_failure_hypothesis_cannot_replay_is_reported_as_first_seen() -> None:
    rep = run_hypothesis(OnceStaleFs(), seed=0, examples=200, ops=40, derandomize=True)
    assert [f.failure.name for f in rep.failures] == ["unexplained-stale"]
    assert "did not fail again when replayed" in rep.failures[0].failure.message
    assert rep.failures[0].story  # the story of the run that failed


def test_a_generated_reproducer_uses_the_standard_library_only() -> None:
    import ast
    import sys

    from dioconf.conformance.kernel_run import Target
    from dioconf.conformance.repro_script import script_text

    rep = run_fast(HeadPadFs(), seed=0, runs=3, ops=100)
    f = rep.failures[0]
    text = script_text(Target("xfs", "4k"), f.ops, f.failure, f.story)
    tree = ast.parse(text)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}  # fmt: skip
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}  # fmt: skip
    assert imported and imported <= set(sys.stdlib_module_names), imported
    data = text[text.index("DATA = ") : text.index('if __name__ == "__main__":')]
    assert "'expect'" in data and f"{f.failure.wid_base + f.ops[-1].wid}" in data
