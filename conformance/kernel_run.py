"""``dioconf run --kernel``: the suite's file-level operations on the real kernel.

For each target (a filesystem in a geometry, on a loop device of a sector size): a fresh
image, formatted and mounted (``impl/kernel/fixture.kernel_fs``), the operations of the
profile performed by ``KernelBackend`` and checked by ``FileRun`` — seeded lists
(``--fast``) or drawn by Hypothesis — and everything unmounted, detached and removed
again, also on errors and SIGINT/SIGTERM. A failure is written to the output directory:
the shrunk operations (``ops.json``, which ``dioconf run --kernel FS --replay`` performs
again), the story, and the finding's standalone reproducer when it has one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from attrs import define, field, frozen

from .catalogue import (
    FAST_PROFILES,
    KERNEL_FS,
    KERNEL_GEOMETRIES,
    KERNEL_PROFILES,
    KERNEL_TRACED_EXAMPLES,
    SECTOR_SIZES,
    kernel_mkfs_options,
)
from .fast import FastReport, Shrunk
from .findings import FINDINGS


class KernelUsageError(Exception):
    """Bad arguments or an environment the kernel runner cannot use (exit status 2)."""


@frozen
class Target:
    fs: str
    geometry: str
    sector_size: int = 512
    write_cache: bool | None = None  # None: the loop device's default

    @property
    def label(self) -> str:
        wc = "" if self.write_cache is None else (" wc-on" if self.write_cache else " wc-off")
        return f"{self.fs} {self.geometry} lbs{self.sector_size}{wc}"

    @property
    def slug(self) -> str:
        return self.label.replace(" ", "-")


def parse_targets(spec: str, *, sector_sizes: Sequence[int] = (512,),
                  write_cache: Sequence[bool | None] = (None,)) -> list[Target]:  # fmt: skip
    """``FS[:GEOMETRY][,FS...]``; GEOMETRY ``all`` for each of the filesystem's."""
    targets = []
    for token in (t.strip() for t in spec.split(",")):
        fs, _, geo = token.partition(":")
        if fs not in KERNEL_FS:
            raise KernelUsageError(f"unknown filesystem {fs!r} in --kernel; choose from "
                                   f"{', '.join(KERNEL_FS)}")  # fmt: skip
        known = list(KERNEL_GEOMETRIES[fs])
        geos = known if geo == "all" else [geo or known[0]]
        for g in geos:
            if g not in known:
                raise KernelUsageError(f"unknown geometry {fs}:{g}; {fs} has "
                                       f"{', '.join(known)} (or all)")  # fmt: skip
            for ss in sector_sizes:
                if ss not in SECTOR_SIZES:
                    raise KernelUsageError(f"sector size {ss}: choose from "
                                           f"{', '.join(map(str, SECTOR_SIZES))}")  # fmt: skip
                for wc in write_cache:
                    targets.append(Target(fs, g, ss, wc))
    if not targets:
        raise KernelUsageError("--kernel needs at least one filesystem")
    return targets


def unsupported(t: Target) -> str | None:
    """Why ``t`` cannot be built (a block smaller than the device's sector), or None."""
    block = {"1k": 1024}.get(t.geometry, 4096)
    if block < t.sector_size:
        return f"{t.label}: a {block}-byte block cannot sit on {t.sector_size}-byte sectors"
    return None


@define
class TargetResult:
    target: Target
    report: FastReport | None = None
    skipped: str = ""  # why it did not run
    written: list[str] = field(factory=list)  # failure directories
    trace: Any = None  # impl.kernel.trace_check.TraceCheck of a traced (--fast) run


@define
class KernelReport:
    profile: str
    seed: int
    fast: bool
    allow: frozenset[str]
    results: list[TargetResult] = field(factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def failures(self) -> list[tuple[Target, Shrunk]]:
        return [(r.target, f) for r in self.results if r.report for f in r.report.failures]

    @property
    def divergences(self) -> list[Any]:
        return [d for r in self.results if r.trace is not None for d in r.trace.divergences]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.divergences and not self.interrupted

    def allowed(self) -> Counter[str]:
        c: Counter[str] = Counter()
        for r in self.results:
            if r.report:
                c.update(r.report.allowed)
        return c


def check_kernel_environment(targets: Sequence[Target]) -> None:
    """One line on what is missing, as KernelUsageError."""
    from ..impl.kernel.fixture import KernelUnavailable, check_environment

    for fs in dict.fromkeys(t.fs for t in targets):
        try:
            check_environment(fs)
        except KernelUnavailable as exc:  # (its sentences speak of recording)
            msg = str(exc).replace("recording needs root", "the kernel run needs root")
            raise KernelUsageError(msg.replace("cannot be recorded", "cannot be run")) from None


def run_kernel(targets: Sequence[Target], *, profile: str, seed: int | None, fast: bool,
               allow: frozenset[str], out_dir: str | os.PathLike[str],
               examples: int | None = None, ops: int | None = None,
               stop: Callable[[], bool] = lambda: False,
               progress: Callable[[Target, int, int], None] | None = None,
               trace: bool = True,
               image_dir: str | os.PathLike[str] | None = None) -> KernelReport:  # fmt: skip
    """Every target under ``profile``; stops early (``interrupted``) when ``stop()``.
    ``trace``: each run's requests (``fast``; through Hypothesis, those of
    ``KERNEL_TRACED_EXAMPLES[profile]`` examples spread over the run) are also traced
    and replayed through
    the model (``impl/kernel/trace_check.py``). ``image_dir``: where the images go
    (default: ``fixture.default_image_dir``)."""
    table = FAST_PROFILES if fast else KERNEL_PROFILES
    if profile not in table:
        raise KernelUsageError(f"unknown profile {profile!r}; choose from {', '.join(table)}")
    n_examples, n_ops, derandomize = table[profile]
    n_examples, n_ops = examples or n_examples, ops or n_ops
    if seed is None:  # ci: the fixed seed 0; dev and nightly: a fresh one, reported
        seed = 0 if derandomize else random.SystemRandom().randrange(1 << 32)
    check_kernel_environment(targets)
    report = KernelReport(profile, seed, fast, allow)
    t0 = time.perf_counter()
    for t in targets:
        if stop():
            report.interrupted = True
            break
        why = unsupported(t)
        if why is not None:
            report.results.append(TargetResult(t, skipped=why))
            continue
        tick = (lambda d, n, t=t: progress(t, d, n)) if progress else (lambda d, n: None)
        try:
            r = _run_target(t, seed, fast, n_examples, n_ops, derandomize and not fast, allow,
                            stop, tick, Path(out_dir) if trace else None, image_dir,
                            0 if fast else KERNEL_TRACED_EXAMPLES[profile])  # fmt: skip
        except (KeyboardInterrupt, SystemExit):  # a stop signal: everything was undone
            report.interrupted = True
            break
        r.written = [str(write_failure(Path(out_dir), t, f)) for f in r.report.failures] \
            if r.report else []  # fmt: skip
        report.results.append(r)
        if r.report is not None and r.report.interrupted:
            report.interrupted = True
            break
    report.seconds = time.perf_counter() - t0
    return report


def _run_target(t: Target, seed: int, fast: bool, examples: int, ops: int, derandomize: bool,
                allow: frozenset[str], stop: Callable[[], bool],
                tick: Callable[[int, int], None], traces: Path | None,
                image_dir: str | os.PathLike[str] | None, traced: int) -> TargetResult:  # fmt: skip
    from .fast import run_fast
    from .file_hyp import run_hypothesis

    with mounted_backend(t, image_dir) as backend:
        m, tc = backend.m, None
        around = None
        if traces is not None:
            from ..impl.kernel.trace_check import TraceCheck

            tc = TraceCheck(m, traces / f"traces-{t.slug}", backend)
            name = "run" if fast else "example"
            around = lambda r: lambda inos: tc.run(f"{name}{r}", inos)  # noqa: E731
        if fast:
            rep = run_fast(backend, seed=seed, runs=examples, ops=ops, allow=allow,
                           stop=stop, progress=tick, around=around)  # fmt: skip
        else:
            rep = run_hypothesis(backend, seed=seed, examples=examples, ops=ops,
                                 derandomize=derandomize, allow=allow, stop=stop,
                                 progress=tick, around=around, traced=traced)  # fmt: skip
    return TargetResult(t, rep, trace=tc)


@contextlib.contextmanager
def mounted_backend(t: Target, image_dir: str | os.PathLike[str] | None = None,
                    ) -> Iterator[Any]:  # fmt: skip
    """A KernelBackend on a fresh filesystem made as ``t`` says (its image in
    ``image_dir``, default ``fixture.default_image_dir``), taken down after (also on
    SIGINT/SIGTERM)."""
    from ..impl.kernel.backend import KernelBackend
    from ..impl.kernel.cleanup import signals_raise
    from ..impl.kernel.fixture import default_image_dir, kernel_fs

    workdir = image_dir if image_dir is not None else default_image_dir()

    opts = kernel_mkfs_options(t.fs, t.geometry, t.sector_size)
    with signals_raise(), kernel_fs(t.fs, mkfs_options=opts, sector_size=t.sector_size,
                                    write_cache=t.write_cache, workdir=workdir) as m:  # fmt: skip
        backend = KernelBackend(m, nocow=t.geometry != "cow", label=f"kernel {t.label}")
        try:
            yield backend
        finally:
            backend.close()


def write_failure(out: Path, t: Target, f: Shrunk) -> Path:
    """The failure's directory: ops.json (replayable), story.txt, the reproducer's name."""
    d = out / f"kernel-{t.slug}-{f.failure.name}-seed{f.seed}-run{f.run}"
    d.mkdir(parents=True, exist_ok=True)
    doc = FINDINGS.get(f.failure.name)
    (d / "ops.json").write_text(json.dumps({
        "target": {"fs": t.fs, "geometry": t.geometry, "sector_size": t.sector_size,
                   "write_cache": t.write_cache},
        "finding": f.failure.name, "seed": f.seed, "run": f.run,
        "ops": [op.to_json() for op in f.ops],
    }, indent=1) + "\n")  # fmt: skip
    from .repro_script import write_script

    repro = write_script(d / "repro.py", t, f.ops, f.failure, f.story)
    lines = [f"{f.failure.name} on {t.label} (seed {f.seed}, run {f.run}; shrunk from "
             f"{f.original_length} to {len(f.ops)} operations)", "", *f.story, "",
             f.failure.message]  # fmt: skip
    if doc is not None:
        lines += ["", doc.summary, f"seed: {doc.seed}"]
        script = doc.script_for(t.fs)
        if script is not None:
            fs = f" --fs {t.fs}" if "--fs" in script.read_text() else ""
            lines.append(f"standalone reproducer: python3 {script} --loop-image{fs}")
    lines.append(f"again: dioconf run --kernel {t.fs}:{t.geometry} --replay {d / 'ops.json'}")
    lines.append(f"standalone (generated): python3 {repro} --loop-image")
    (d / "story.txt").write_text("\n".join(lines) + "\n")
    return d


def finding_json(t: Target, f: Shrunk, where: str) -> dict[str, Any]:
    doc = FINDINGS.get(f.failure.name)
    return {"name": f.failure.name, "fs": t.label, "known": doc is not None,
            "summary": doc.summary if doc else f.failure.message.splitlines()[0],
            "repro": str(doc.script_for(t.fs) or Path(where) / "repro.py") if doc
            else str(Path(where) / "repro.py"),
            "generated_repro": str(Path(where) / "repro.py"),
            "ops": len(f.ops), "story": where}  # fmt: skip


def replay_ops(path: Path, spec: str | None, allow: frozenset[str],
               image_dir: str | os.PathLike[str] | None = None) -> tuple[Target, Any]:
    """Perform a failure's ops.json again on a fresh target (``spec`` overrides the
    one recorded); the target and the (failure or None, run) pair."""
    from .fast import _Runs
    from .file_ops_gen import Op

    try:
        doc = json.loads(path.read_text())
        ops = [Op.from_json(d) for d in doc["ops"]]
        tgt = doc["target"]
        t = Target(tgt["fs"], tgt["geometry"], tgt["sector_size"], tgt["write_cache"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KernelUsageError(f"{path}: not an ops.json of dioconf run --kernel ({exc})") \
            from None  # fmt: skip
    if spec:
        t = parse_targets(spec, sector_sizes=(t.sector_size,), write_cache=(t.write_cache,))[0]
    check_kernel_environment([t])
    with mounted_backend(t, image_dir) as backend:
        return t, _Runs(backend, allow).perform(ops)
