"""File-level operations drawn through Hypothesis, on any backend.

The operations are ``file_ops_gen.draw_op``'s, each from a seed Hypothesis draws, so
the shrinker deletes operations and the shrunk story holds only those the failure
needs. Each example
performs its operations on fresh files of the backend through ``FileRun``; the first
failure ends the example, Hypothesis shrinks it, and the shrunk example's story is the
report. ``note()`` carries the story into Hypothesis' own output as well.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from .backend import FileBackend
from .fast import Around, FastReport, Shrunk, _Runs
from .file_check import Failure, FileRun
from .file_ops_gen import Op, Sizes, draw_op, renumber

T = TypeVar("T")
_NO_SIZES = Sizes()  # (never updated)
MAX_FINDINGS = 8  # distinct failures one run reports at most
RUN = 8  # operations drawn as a run (see `example`)


@st.composite
def _op(draw: Any, caps: Any) -> Op:
    """One operation from one drawn seed: a single choice, so the shrinker deletes an
    operation whole (its passes delete a few choices at a time; an operation drawn choice
    by choice would take a dozen). It does not depend on the operations before it (no
    size guesses: each means the same wherever it stands)."""
    return draw_op(random.Random(draw(st.integers(0, 2**32 - 1))), caps, _NO_SIZES, wid=1)


class _Found(Exception):
    def __init__(self, failure: Failure, run: FileRun, ops: list[Op]) -> None:
        super().__init__(f"{failure.name}: {failure.message}")
        self.failure, self.run, self.ops = failure, run, ops


def run_hypothesis(
    backend: FileBackend,
    *,
    seed: int,
    examples: int,
    ops: int,
    derandomize: bool,
    allow: frozenset[str] = frozenset(),
    stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], None] = lambda done, total: None,
    around: Callable[[int], Around] | None = None,
    traced: int = 0,
) -> FastReport:
    """``examples`` examples of up to ``ops`` operations; the first failure, shrunk.
    ``around(n)``: the context example ``n`` runs in (a tracer), for ``traced`` examples
    spread over those generated (not those the shrinker replays)."""
    report = FastReport(backend.name, seed)
    performer = _Runs(backend, allow)
    t0 = time.perf_counter()
    budget = [examples]  # examples left, over the rounds
    first: list[_Found] = []  # the round's first failure, should replaying it be flaky

    def example(data: Any) -> None:
        if stop():
            raise KeyboardInterrupt  # (Hypothesis lets it through at once)
        # a list of runs of operations: ~36 on average (a flat list averages ~6), and
        # still shrinkable to one operation (a run at a time, or one in a run)
        runs = data.draw(st.lists(st.lists(_op(backend.caps), min_size=1, max_size=RUN),
                                  min_size=1, max_size=ops))  # fmt: skip
        drawn = [op for r in runs for op in r][:ops]
        # write ids by position, so that a shrunk list still numbers its writes 1, 2...
        drawn = renumber(drawn)

        def perform(run: FileRun) -> None:
            for i, op in enumerate(drawn):
                failure = run.step(i, op)
                if failure is not None:
                    note("\n".join(run.story))
                    found = _Found(failure, run, drawn[: i + 1])
                    if not first:
                        first.append(found)
                    raise found
                if run.ended:
                    return

        n = report.runs  # every stride-th example generated: later ones are bigger
        stride = max(1, examples // traced) if traced else 0
        on = around is not None and traced and n % stride == 0 and n // stride < traced
        tracer = around(n) if on and not first else None  # (not what the shrinker replays)
        run = performer.run_with(perform, tracer)
        report.runs += 1
        budget[0] -= 1
        report.count(run, allow)
        progress(min(examples, examples - budget[0]), examples)

    for _ in range(MAX_FINDINGS):  # one round per finding: each shrunk on its own
        test = settings(max_examples=max(1, budget[0]), derandomize=derandomize,
                        database=None, deadline=None, report_multiple_bugs=False,
                        print_blob=False, suppress_health_check=list(HealthCheck),
                        phases=[Phase.explicit, Phase.generate, Phase.shrink],
                        )(given(st.data())(example))  # fmt: skip
        if not derandomize:
            test = hypothesis_seed(seed + len(report.failures))(test)
        first.clear()
        try:
            test()
            break
        except _Found as exc:
            report.failures.append(Shrunk(exc.failure, exc.ops, exc.run.story, seed, 0, 0, 0))
            performer.allow |= {exc.failure.name}  # the next round goes past it
        except Flaky:  # it did not fail again when replayed (stale data depends on
            exc2 = first[0]  # what the allocator hands out): reported as first seen
            failure = attrs.evolve(exc2.failure, message=exc2.failure.message
                                   + "\n(did not fail again when replayed: not shrunk)")
            report.failures.append(Shrunk(failure, exc2.ops, exc2.run.story, seed, 0, 0, 0))
            performer.allow |= {failure.name}
        except KeyboardInterrupt:
            report.interrupted = True
            break
        if budget[0] <= 0:
            break
    report.steps = performer.steps
    report.seconds = time.perf_counter() - t0
    report.syscalls = getattr(backend, "syscalls", 0)
    return report
