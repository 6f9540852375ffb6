"""The second check of a kernel run: its direct-I/O requests, traced, through the model.

``TraceCheck.run(name)`` records one run of operations with a private tracefs instance
(``tracefs.trace_session``); afterwards the events of each file are converted into a v1
trace (``record._write``: the same converter as ``dioconf record``, so fault positions
come from what the buffer layout made the kernel do) and replayed through the model
(``traces.replay.replay_file``). A disagreement is a *model divergence*, reported apart
from findings; the trace stays in the output directory for ``dioconf replay``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from attrs import define, field

from .fixture import MountedFs
from .record import Recording, _write
from .tracefs import trace_session


@define
class Divergence:
    trace: str
    summary: str


@define
class TraceCheck:
    """Traces and replays the runs of one mounted filesystem into ``out``."""

    m: MountedFs
    out: Path
    backend: Any = None  # a KernelBackend: it marks each request in the trace
    requests: int = 0  # requests replayed through the model
    events: int = 0
    lost: int = 0  # events the trace buffer lost (their requests left unchecked)
    unchecked: int = 0
    problems: list[str] = field(factory=list)  # conversions that failed
    divergences: list[Divergence] = field(factory=list)

    @contextlib.contextmanager
    def run(self, name: str, inos: Callable[[], dict[int, str]]) -> Iterator[None]:
        """Trace the block; then convert the files ``inos()`` names and replay them.
        Traces that replay clean are removed again; divergent ones are kept."""
        from ...traces.replay import replay_file

        rec = Recording(self.m.fs, name)
        work = self.out / name
        with trace_session(self.m, self.m.image.parent / f"trace-{name}.txt") as t:
            if self.backend is not None:
                self.backend.marker = t.mark
            try:
                yield
            finally:
                if self.backend is not None:
                    self.backend.marker = None
            spool, overrun = t.finish()
        _write(self.m, spool, overrun, inos(), work, name,
               "recorded by dioconf run --kernel", rec, t)  # fmt: skip
        spool.unlink(missing_ok=True)
        self.events += rec.events
        self.lost += rec.lost
        self.unchecked += rec.unchecked
        self.problems += [f"{c.what}: {c.detail}" for c in rec.failed_checks]
        diverged = False
        for path in rec.traces:
            r = replay_file(str(path))
            self.requests += r.requests
            if r.divergence is not None:
                diverged = True
                first = r.divergence.report()[0] if r.divergence.report() else "diverged"
                self.divergences.append(Divergence(str(path), first))
        if not diverged and not rec.failed_checks:
            shutil.rmtree(work, ignore_errors=True)
