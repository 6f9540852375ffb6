"""``dioconf run``: the conformance suite, the thing to run in CI.

For each reference filesystem and engine it runs the Hypothesis state machine
(`conformance.machine`) against a fresh sparse image (1 GiB, created on demand in a
temporary directory, or under ``image_dir``), under a settings profile. A failure is
shrunk by Hypothesis to its shortest story; it is then written out as the v1 trace the
implementation recorded (``dioconf replay`` re-runs it against the model) and as a
ready-to-run Python reproduction.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import hypothesis
from attrs import define, field
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import get_state_machine_test

from ..traces.format import TraceFormatError, write_trace
from .bugs import planted  # the quality set: engine bugs planted on purpose
from .catalogue import COMBOS, PROFILES
from .failure import ConformanceFailure, Stats
from .machine import machine_for
from .minimize import minimize
from .paths import PathProblem, check_image_dir, check_out_dir


class UsageError(Exception):
    """Bad arguments or environment (exit status 2)."""


@define
class Failure:
    kind: str
    message: str
    steps: int  # operations in the shrunk counterexample
    trace: str | None = None
    repro: str | None = None
    replays_clean: bool | None = None  # the trace replays without divergence (file-level)
    story: list[str] = field(factory=list)  # the shrunk operations, described, numbered
    ops: list[Any] = field(factory=list, repr=False)  # the operations themselves
    config: dict[str, Any] = field(factory=dict, repr=False)  # the harness that ran them


@define
class ComboResult:
    fs: str
    engine: str
    examples: int = 0
    seconds: float = 0.0
    stats: Stats = field(factory=Stats)
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@define
class RunReport:
    profile: str
    seed: int | None
    combos: list[ComboResult] = field(factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.combos)

    def totals(self) -> Stats:
        t = Stats()
        for c in self.combos:
            t.add(c.stats)
        return t


def select(fs: Sequence[str] = (), engine: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The (filesystem, engine) pairs to run; unknown names are a usage error."""
    known_fs = {f for f, _ in COMBOS}
    known_engines = {e for _, e in COMBOS}
    for name in fs:
        if name not in known_fs:
            raise UsageError(f"unknown filesystem {name!r}; known: {', '.join(sorted(known_fs))}")
    for name in engine:
        if name not in known_engines:
            raise UsageError(f"unknown engine {name!r}; known: {', '.join(sorted(known_engines))}")
    combos = [(f, e) for f, e in COMBOS if (not fs or f in fs) and (not engine or e in engine)]
    if not combos:
        raise UsageError(
            f"no filesystem runs on that engine: --fs {list(fs)} --engine {list(engine)}"
        )
    return combos


def make_settings(profile: str, examples: int | None = None) -> settings:
    if profile not in PROFILES:
        raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    n, steps, derandomize = PROFILES[profile]
    return settings(
        max_examples=examples if examples is not None else n,
        stateful_step_count=steps,
        deadline=None,
        derandomize=derandomize,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        print_blob=False,
    )


def _planted(name: str | None) -> contextlib.AbstractContextManager[Any]:
    if name is None:
        return contextlib.nullcontext()

    return planted(name)


def run_combo(fs: str, engine: str, profile: str = "ci", *, seed: int | None = None,
              examples: int | None = None, out_dir: str | os.PathLike[str] = "dioconf-failures",
              image_dir: str | None = None, plant: str | None = None,
              on_example: Callable[[], None] | None = None,
              fs_factory: Callable[[Any], Any] | None = None,
              hypothesis_settings: settings | None = None,
              repro_factory: tuple[str, str | None] | None = None,
              do_minimize: bool = True,
              stop: Callable[[], bool] | None = None) -> ComboResult:  # fmt: skip
    """Run the machine of one filesystem and engine; a failure is written out.

    ``fs_factory`` (device -> filesystem) replaces the reference filesystem named ``fs``
    (then only a label); ``repro_factory`` ("pkg.module:attr", the directory to import
    it from) is how the reproduction script gets it. ``hypothesis_settings`` replaces
    the profile's settings. ``do_minimize``: after Hypothesis has shrunk a failure,
    delete the steps it does not need (`conformance.minimize`)."""
    s = hypothesis_settings if hypothesis_settings is not None else make_settings(profile, examples)
    if stop is not None:  # an interrupt is acted on at the next example at the latest
        tick = on_example

        def on_example() -> None:
            if stop():
                raise KeyboardInterrupt
            if tick is not None:
                tick()

    machine = machine_for(fs, engine, image_dir=image_dir, on_example=on_example,
                          fs_factory=fs_factory)  # fmt: skip
    test = get_state_machine_test(machine, settings=s)
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    result = ComboResult(fs, engine)
    start = time.perf_counter()
    try:
        with _planted(plant):
            test()
    except ConformanceFailure as exc:
        with _planted(plant):  # the same failure without the steps it does not need
            exc = minimize(exc, fs_factory, image_dir) if do_minimize else exc
        try:
            result.failure = _write_failure(exc, Path(out_dir), fs, engine, plant,
                                            repro_factory)  # fmt: skip
        except OSError as err:  # (a full disk, say): no partial files, one line
            stem = f"{fs}-{engine}" + (f"-{plant}" if plant else "")
            for leftover in (f"counterexample-{stem}.jsonl", f"repro-{stem}.py"):
                with contextlib.suppress(OSError):
                    (Path(out_dir) / leftover).unlink()
            raise UsageError(f"--out {out_dir}: cannot write the counterexample: "
                             f"{err.strerror or err}") from None
    finally:
        result.seconds = time.perf_counter() - start
        result.examples = machine.examples
        result.stats = machine.totals
    return result


def _write_failure(exc: ConformanceFailure, out: Path, fs: str, engine: str,
                   plant: str | None,
                   factory: tuple[str, str | None] | None = None) -> Failure:  # fmt: skip
    from ..traces.replay import replay_file
    from .repro import write_repro

    out.mkdir(parents=True, exist_ok=True)
    stem = f"{fs}-{engine}" + (f"-{plant}" if plant else "")
    trace = out / f"counterexample-{stem}.jsonl"
    with open(trace, "w", encoding="utf-8") as fp:
        try:
            write_trace(fp, exc.header, exc.replayable_events())
        except TraceFormatError:  # the implementation recorded an impossible sequence
            write_trace(fp, exc.header, exc.replayable_events(), validate=False)
    spec, path_dir = factory if factory is not None else (None, None)
    repro = write_repro(out / f"repro-{stem}.py", exc, plant, spec, path_dir)
    try:
        clean = replay_file(str(trace)).ok
    except Exception:
        clean = False
    first = exc.message.strip().splitlines()[0] if exc.message.strip() else exc.kind
    story = [f"{i + 1:3}. {op.describe()}" for i, op in enumerate(exc.ops)]
    return Failure(exc.kind, first if exc.kind != "engine" else exc.message, len(exc.ops),
                   str(trace), str(repro), clean, story, list(exc.ops),
                   dict(exc.config))  # fmt: skip


_STOP: list[int] = []  # a worker process: the signals it got
_WORKER = {"parent": 0, "busy": False}  # a worker process: its parent, whether it runs one


def _orphaned() -> bool:
    return bool(_WORKER["parent"]) and os.getppid() != _WORKER["parent"]


def _stop_worker(signum: int, _frame: Any) -> None:
    _STOP.append(signum)  # acted on at the next example (see `run_combo`'s ``stop``)
    if _orphaned() and not _WORKER["busy"]:  # idle, and nobody will send it work
        os._exit(128 + signum)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    """Worker initializer: when the parent dies, even by SIGKILL, the kernel sends the
    worker SIGINT, so it stops at its next example and removes its image (as when it is
    interrupted), then exits instead of waiting for work as an orphan."""
    import ctypes

    _WORKER["parent"] = parent
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_worker)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
    if _orphaned():  # it died before the request took effect
        os._exit(128 + signal.SIGINT)


def _worker(args: tuple[Any, ...]) -> ComboResult:
    fs, engine, profile, seed, examples, out_dir, image_dir, plant = args
    for sig in (signal.SIGINT, signal.SIGTERM):  # interrupted: stop at the next example
        signal.signal(sig, _stop_worker)
    _WORKER["busy"] = True
    try:
        return run_combo(fs, engine, profile, seed=seed, examples=examples, out_dir=out_dir,
                         image_dir=image_dir, plant=plant, stop=lambda: bool(_STOP))  # fmt: skip
    finally:
        _WORKER["busy"] = False
        if _orphaned():  # its result has nowhere to go
            os._exit(128 + (_STOP[0] if _STOP else signal.SIGINT))


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("examples"), TimeElapsedColumn(), transient=False) as p:  # fmt: skip
        yield p


def run_suite(profile: str = "ci", *, seed: int | None = None, fs: Sequence[str] = (),
              engine: Sequence[str] = (), examples: int | None = None,
              out_dir: str | os.PathLike[str] = "dioconf-failures", image_dir: str | None = None,
              plant: str | None = None, jobs: int = 1, progress: bool = False,
              stop: Callable[[], bool] | None = None) -> RunReport:  # fmt: skip
    """Every selected filesystem and engine under ``profile``. An interrupt
    (KeyboardInterrupt, or ``stop()`` turning true) ends it early with the filesystems
    finished so far (``report.interrupted``); worker processes are interrupted too, so
    that their harnesses clean up."""
    combos = select(fs, engine)
    make_settings(profile, examples)  # a bad profile fails before anything runs
    try:  # where it writes: checked before any work
        check_out_dir(out_dir)
        check_image_dir(image_dir)
    except PathProblem as exc:
        raise UsageError(str(exc)) from None
    report = RunReport(profile, seed)
    start = time.perf_counter()
    total = examples if examples is not None else PROFILES[profile][0]
    with _progress(progress) as bar:
        if jobs > 1:
            args = [(f, e, profile, seed, examples, str(out_dir), image_dir, plant)
                    for f, e in combos]  # fmt: skip
            task = bar.add_task("filesystems", total=len(combos)) if bar else None
            with ProcessPoolExecutor(max_workers=jobs, initializer=_die_with_parent,
                                     initargs=(os.getpid(),)) as pool:  # fmt: skip
                futures = [pool.submit(_worker, a) for a in args]
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    if bar is not None:
                        bar.advance(task, len(done))
                    if stop is not None and stop() and not report.interrupted:
                        report.interrupted = True
                        _interrupt_workers(pool, futures)
                for fut in futures:  # in the order of COMBOS; the interrupted ones left out
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        report.combos.append(fut.result())
                    elif not report.interrupted:
                        fut.result()  # (raises what the worker raised)
        else:
            for f, e in combos:
                task = bar.add_task(f"{f} ({e})", total=total) if bar else None
                tick = (lambda t=task: bar.advance(t)) if bar is not None else None
                try:
                    r = run_combo(f, e, profile, seed=seed, examples=examples,
                                  out_dir=out_dir, image_dir=image_dir, plant=plant,
                                  on_example=tick, stop=stop)  # fmt: skip
                except KeyboardInterrupt:
                    report.interrupted = True
                    break
                if bar is not None:
                    bar.update(task, completed=total)
                report.combos.append(r)
                if stop is not None and stop():
                    report.interrupted = True
                    break
    report.seconds = time.perf_counter() - start
    return report


def _interrupt_workers(pool: ProcessPoolExecutor, futures: list[Any]) -> None:
    """Cancel what has not started, and interrupt the workers (SIGINT: each stops at
    its next example, its harness cleaning up its image, and its future ends with the
    KeyboardInterrupt)."""
    for fut in futures:
        fut.cancel()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError):
            os.kill(proc.pid, signal.SIGINT)
