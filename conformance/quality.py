"""Has the suite teeth? ``quality_report`` runs it once per planted bug
(``bugs.py``) and tells whether it was caught, how fast, how short the shrunk
counterexample is, and whether the saved trace alone (``dioconf replay``) shows the
divergence or only the file-level oracle saw it."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..traces.replay import replay_file
from .bugs import BUGS, PlantedBug, _bug, filesystems
from .failure import ConformanceFailure
from .run import run_suite


def quality_report(profile: str = "ci", names: Sequence[str] | None = None, jobs: int = 1,
                   **run_args: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Run the suite once per bug with the bug planted: on the bug's filesystems one at a
    time, in its order, until one catches it (``jobs`` bugs at once, in processes).

    Each row: ``name``, ``engine``, ``fs``, ``caught``, ``seconds`` (until the failing
    filesystem was done, shrinking included; the whole run when not caught),
    ``run_seconds``, ``steps`` (operations in the shrunk counterexample), ``kind``,
    ``trace_diverges`` (``dioconf replay`` of the saved trace finds the divergence;
    False: only the file-level oracle saw the bug), ``failed_on`` and ``message``.
    ``run_args`` go to `run_suite` (e.g. ``examples``, ``seed``)."""
    todo = list(names) if names is not None else list(BUGS)
    for name in todo:
        _bug(name)
    args = [(profile, name, run_args) for name in todo]
    if jobs <= 1:
        return [_report_one(a) for a in args]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_report_one, args))


def _report_one(args: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    profile, name, run_args = args
    with tempfile.TemporaryDirectory(prefix=f"dioconf-quality-{name}-") as out:
        return _run_one(profile, _bug(name), filesystems(name), out, run_args)


def _run_one(profile: str, bug: PlantedBug, fs: list[str], out: str,
             run_args: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One bug's row of `quality_report` (see there)."""
    row: dict[str, Any] = {
        "name": bug.name, "engine": bug.engine, "fs": fs, "kernel": bug.kernel,
        "caught": False, "seconds": None, "run_seconds": None, "steps": None, "kind": None,
        "trace_diverges": None, "failed_on": None, "message": None, "error": None,
    }  # fmt: skip
    start = time.perf_counter()
    for one in fs:
        try:
            report = run_suite(profile, fs=[one], engine=[bug.engine], plant=bug.name,
                               out_dir=out, **run_args)  # fmt: skip
        except Exception as exc:  # the suite failed while reporting what it caught
            seconds = round(time.perf_counter() - start, 2)
            found: BaseException | None = exc
            while found is not None and not isinstance(found, ConformanceFailure):
                found = found.__context__  # what run_combo was saving when it broke
            row.update(seconds=seconds, run_seconds=seconds, failed_on=one,
                       error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            if isinstance(found, ConformanceFailure):  # caught, then saving it broke
                row.update(caught=True, steps=len(found.ops), kind=found.kind,
                           message=found.message.strip().splitlines()[0][:200])  # fmt: skip
            return row
        failure = report.combos[0].failure
        if failure is None:
            continue
        diverges: bool | None = None
        if failure.trace is not None:
            try:
                diverges = replay_file(failure.trace).ok is False
            except Exception as exc:  # a trace the replayer cannot read
                row["error"] = f"replay: {type(exc).__name__}: {exc}"
        seconds = round(time.perf_counter() - start, 2)
        row.update(caught=True, seconds=seconds, run_seconds=seconds, steps=failure.steps,
                   kind=failure.kind, trace_diverges=diverges, failed_on=one,
                   message=failure.message.strip().splitlines()[0][:200])  # fmt: skip
        return row
    seconds = round(time.perf_counter() - start, 2)
    row.update(seconds=seconds, run_seconds=seconds)
    return row
