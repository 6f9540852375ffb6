"""``--fast``: seeded operation lists, each operation checked, failures shrunk.

Run ``r`` of a fast run performs ``draw_ops(run_seed(seed, r), ops, caps)`` on fresh
files of the backend through ``FileRun``. No Hypothesis: drawing costs next to nothing,
and every run is reproducible from (seed, r) alone. A failure is shrunk by delta
debugging (each attempt on fresh files of the same backend), then performed once more for
its story, and reported with the shrunk operation list. Findings the caller allows are
counted and the run goes on.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TypeVar

from attrs import define, field

from ..model.pattern import WID_LIMIT
from .backend import FileBackend
from .file_check import WID_STRIDE, Failure, FileRun
from .file_ops_gen import Op, draw_ops

T = TypeVar("T")
SHRINK_ATTEMPTS = 400
# a context a run happens in, given a function naming its files by inode (a tracer)
Around = Callable[[Callable[[], dict[int, str]]], contextlib.AbstractContextManager[object]]


def run_seed(seed: int, r: int) -> int:
    return seed * 1_000_003 + r


@define
class Shrunk:
    """A failure with its shortest operation list found."""

    failure: Failure
    ops: list[Op]
    story: list[str]
    seed: int
    run: int
    original_length: int
    attempts: int


@define
class FastReport:
    backend: str
    seed: int
    runs: int = 0
    steps: int = 0
    syscalls: int = 0
    seconds: float = 0.0
    failures: list[Shrunk] = field(factory=list)
    repeats: Counter[str] = field(factory=Counter)  # failures met again, not re-shrunk
    allowed: Counter[str] = field(factory=Counter)  # allowed findings met
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted

    def count(self, run: FileRun, allow: frozenset[str]) -> None:
        """A run's findings met: the caller's allowed ones, and repeats of failures
        reported already."""
        for name, n in run.allowed.items():
            (self.allowed if name in allow else self.repeats)[name] += n


class _Runs:
    """Fresh file names (and write ids) for every attempt on one backend; the steps
    performed in all of them."""

    def __init__(self, backend: FileBackend, allow: frozenset[str]) -> None:
        self.backend, self.allow, self.n, self.steps = backend, allow, 0, 0

    def run_with(self, perform: Callable[[FileRun], None],
                 around: Around | None = None) -> FileRun:  # fmt: skip
        """A fresh run, started, given to ``perform``; its files removed after.
        ``around``: a context the run happens in, told the run's files (a tracer)."""
        self.n += 1
        base = self.n % (WID_LIMIT // WID_STRIDE) * WID_STRIDE
        run = FileRun(self.backend, f"a{self.n}-", allow=self.allow, wid_base=base)
        ctx = around(lambda: {ino: run.prefix + n for n, ino in run.inos.items()}) \
            if around is not None else contextlib.nullcontext()  # fmt: skip
        with ctx:
            try:
                run.start()
                perform(run)
            finally:
                self.steps += run.steps
                for name in run.inos:
                    self.backend.remove(run.prefix + name)
        return run

    def perform(self, ops: Sequence[Op],
                around: Around | None = None) -> tuple[Failure | None, FileRun]:  # fmt: skip
        failure: list[Failure] = []

        def steps(run: FileRun) -> None:
            for i, op in enumerate(ops):
                bad = run.step(i, op)
                if bad is not None:
                    failure.append(bad)
                    return
                if run.ended:
                    return

        run = self.run_with(steps, around)
        return (failure[0] if failure else None), run


def delete_steps(ops: list[T], attempt: Callable[[list[T]], list[T] | None],
                 candidates: Callable[[Sequence[T], int], list[list[T]]] = (
                     lambda ops, i: [[*ops[:i], *ops[i + 1 :]]]),
                 budget: int = SHRINK_ATTEMPTS) -> tuple[list[T], int]:  # fmt: skip
    """Delete steps, last first, while ``attempt`` keeps the failure (it returns the
    story that failed, possibly shorter, or None), pass after pass until a whole pass
    deletes nothing (1-minimal) or ``budget`` attempts are spent; the story and the
    attempts taken. ``candidates(ops, i)``: the stories without step ``i`` to try."""
    tries = 0
    changed = True
    while changed:
        changed = False
        i = len(ops) - 1
        while i >= 0:
            for cand in candidates(ops, i):
                if tries >= budget:
                    return ops, tries
                tries += 1
                got = attempt(cand)
                if got is not None:
                    ops = got
                    changed = True
                    break
            i = min(i, len(ops)) - 1
    return ops, tries


def shrink(runs: _Runs, ops: list[Op], name: str,
           budget: int = SHRINK_ATTEMPTS) -> tuple[list[Op], int]:  # fmt: skip
    """The shortest sublist of ``ops`` found (ddmin, then one-by-one removal until
    1-minimal) that still fails with ``name``; and the attempts it took."""
    attempts = 0

    def fails(candidate: list[Op]) -> bool:
        nonlocal attempts
        attempts += 1
        failure, _ = runs.perform(candidate)
        return failure is not None and failure.name == name

    n = 2
    while len(ops) >= 2 and attempts < budget:
        chunk = -(-len(ops) // n)
        parts = [ops[i : i + chunk] for i in range(0, len(ops), chunk)]
        for i in range(len(parts)):
            rest = [op for j, p in enumerate(parts) if j != i for op in p]
            if attempts < budget and fails(rest):
                ops, n = rest, max(n - 1, 2)
                break
        else:
            if n >= len(ops):
                break
            n = min(len(ops), 2 * n)
    # then each operation alone, until none can go
    ops, more = delete_steps(ops, lambda c: c if c and fails(c) else None,
                             budget=max(0, budget - attempts))  # fmt: skip
    return ops, attempts + more


def run_fast(
    backend: FileBackend,
    *,
    seed: int,
    runs: int,
    ops: int,
    allow: frozenset[str] = frozenset(),
    stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], None] = lambda done, total: None,
    around: Callable[[int], Around] | None = None,
) -> FastReport:
    """``runs`` runs of ``ops`` operations each; the report. ``around(r)``: the context
    run ``r`` happens in (not its shrinking attempts)."""
    report = FastReport(backend.name, seed)
    t0 = time.perf_counter()
    performer = _Runs(backend, allow)
    for r in range(runs):
        if stop():
            report.interrupted = True
            break
        drawn = draw_ops(run_seed(seed, r), ops, backend.caps)
        failure, run = performer.perform(drawn, around(r) if around is not None else None)
        report.runs += 1
        report.count(run, allow)
        if failure is not None:
            report.failures.append(_shrunk(performer, drawn, failure, seed, r))
            # reported once: later runs go past it (counted as a repeat) to find others
            performer.allow |= {failure.name}
        progress(r + 1, runs)
    report.steps = performer.steps
    report.seconds = time.perf_counter() - t0
    report.syscalls = getattr(backend, "syscalls", 0)
    return report


def _shrunk(performer: _Runs, drawn: list[Op], failure: Failure, seed: int, r: int) -> Shrunk:
    prefix = drawn[: failure.index + 1]
    ops, attempts = shrink(performer, prefix, failure.name)
    final, run = performer.perform(ops)
    if final is None or final.name != failure.name:  # flaky: keep the unshrunk list
        ops = prefix
        final, run = performer.perform(ops)
    return Shrunk(final or failure, ops, run.story, seed, r, len(prefix), attempts)
