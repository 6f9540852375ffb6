"""``dioconf run --kernel``: options, progress and summary of a run on the real kernel."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .conformance.catalogue import KERNEL_GEOMETRIES, SECTOR_SIZES
    from .conformance.findings import KNOWN_FINDINGS

    p.add_argument("--allow-finding", action="append", default=[], metavar="NAME[,NAME]",
                   help=f"accept a known finding, here or on the kernel (still counted and "
                        f"shown; any other finding exits 1): {', '.join(KNOWN_FINDINGS)}; "
                        f"'seed' for the seed's own, which the Python implementation "
                        f"reproduces on purpose")  # fmt: skip

    geos = "; ".join(f"{fs}: {', '.join(g)}" for fs, g in KERNEL_GEOMETRIES.items())
    k = p.add_argument_group("the real kernel (root, loop devices)")
    k.add_argument("--kernel", metavar="FS[:GEOMETRY],...",
                   help=f"run on the real kernel: loop-mounted images of these filesystems "
                        f"(geometries, the first the default, or 'all': {geos})")  # fmt: skip
    k.add_argument("--fast", action="store_true",
                   help="seeded operation lists without Hypothesis (each operation checked; "
                        "failures shrunk by delta debugging)")  # fmt: skip
    k.add_argument("--sector-size", type=int, action="append", choices=SECTOR_SIZES,
                   help="the loop device's logical block size (repeatable; default 512)")
    k.add_argument("--write-cache", choices=("on", "off", "both"),
                   help="the loop device's write cache (default: as it comes)")
    k.add_argument("--ops", type=int, metavar="N", help="operations per example or run")
    k.add_argument("--replay", metavar="OPS_JSON",
                   help="perform a failure's ops.json again (with --kernel: on that target)")


def _fail(msg: str) -> int:
    print(f"dioconf run: {msg}", file=sys.stderr)
    return EXIT_USAGE


def cmd_kernel(args: argparse.Namespace) -> int:
    from .impl.kernel.cleanup import signals_raise

    with signals_raise():  # from the start: SIGINT/SIGTERM unwind whatever is set up
        try:
            return _cmd_kernel(args)
        except (KeyboardInterrupt, SystemExit) as exc:  # (before a run began)
            signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else exc.code - 128
            print(f"dioconf run: interrupted ({signal.Signals(signum).name}); nothing was "
                  "left behind", file=sys.stderr)  # fmt: skip
            return 128 + signum


def _cmd_kernel(args: argparse.Namespace) -> int:
    from .conformance.findings import KNOWN_FINDINGS, allowed_names
    from .conformance.kernel_run import KernelUsageError, parse_targets, run_kernel

    allow, unknown = allowed_names(args.allow_finding)
    if unknown:
        return _fail(f"unknown finding {unknown[0]!r}; known: {', '.join(KNOWN_FINDINGS)}")
    from .conformance.paths import PathProblem, check_image_dir

    try:
        check_image_dir(args.image_dir)
    except PathProblem as exc:
        return _fail(str(exc))
    if args.replay:
        return _replay(args, allow)
    wc = {None: (None,), "on": (True,), "off": (False,), "both": (True, False)}
    for name, value in (("--examples", args.examples), ("--ops", args.ops)):
        if value is not None and value < 1:
            return _fail(f"{name} must be at least 1")
    from .impl.kernel.cleanup import signals_raise

    report = None
    with signals_raise() as sigs:  # SIGINT/SIGTERM unwind (unmount...) and end the run
        try:
            targets = parse_targets(args.kernel, sector_sizes=args.sector_size or (512,),
                                    write_cache=wc[args.write_cache])  # fmt: skip
            with _bar(not (args.quiet or args.json)) as bar:
                report = run_kernel(targets, profile=args.profile, seed=args.seed,
                                    fast=args.fast, allow=allow, out_dir=args.out,
                                    examples=args.examples, ops=args.ops,
                                    stop=lambda: sigs.received is not None,
                                    progress=bar, image_dir=args.image_dir)  # fmt: skip
        except KernelUsageError as exc:
            return _fail(str(exc))
        except (KeyboardInterrupt, SystemExit):
            pass
        received = sigs.received
    if report is not None and (report.results or args.json):
        if args.json:
            print(json.dumps(_as_json(report), indent=2))
        else:
            _print(report)
    if received is not None or report is None or report.interrupted:
        signum = received or signal.SIGINT
        done = sum(r.report is not None and not r.report.interrupted
                   for r in (report.results if report else []))  # fmt: skip
        print(f"dioconf run: interrupted ({signal.Signals(signum).name}); {done} target(s) "
              "finished, shown above; everything was unmounted, detached and removed",
              file=sys.stderr)  # fmt: skip
        return 128 + signum
    return EXIT_OK if report.ok else EXIT_FOUND


class _bar:
    """A rich progress bar, one task per target (or nothing)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.p, self.tasks = enabled, None, {}

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.p = Progress(TextColumn("{task.description:<24}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn())  # fmt: skip
        self.p.__enter__()
        return self

    def __call__(self, target: Any, done: int, total: int) -> None:
        assert self.p is not None
        if target not in self.tasks:
            self.tasks[target] = self.p.add_task(target.label, total=total)
        self.p.update(self.tasks[target], completed=done)

    def __exit__(self, *exc: object) -> None:
        if self.p is not None:
            self.p.__exit__(None, None, None)


def _as_json(report: Any) -> dict[str, Any]:
    from .conformance.kernel_run import finding_json

    results = []
    for r in report.results:
        d: dict[str, Any] = {"target": r.target.label, "skipped": r.skipped or None}
        if r.report is not None:
            rep = r.report
            d.update(runs=rep.runs, steps=rep.steps, syscalls=rep.syscalls,
                     seconds=round(rep.seconds, 2),
                     steps_per_second=round(rep.steps / rep.seconds) if rep.seconds else 0,
                     allowed=dict(rep.allowed), repeats=dict(rep.repeats))  # fmt: skip
        if r.trace is not None:
            tc = r.trace
            d["traced"] = {"requests": tc.requests, "events": tc.events, "lost": tc.lost,
                           "unchecked": tc.unchecked, "problems": tc.problems,
                           "divergences": len(tc.divergences)}  # fmt: skip
        results.append(d)
    findings = [finding_json(t, f, where)
                for (t, f), where in zip(report.failures, _written(report), strict=True)]
    return {"profile": report.profile, "seed": report.seed, "fast": report.fast,
            "ok": report.ok, "seconds": round(report.seconds, 2),
            "allowed": dict(report.allowed()), "findings": findings,
            "divergences": [{"trace": d.trace, "summary": d.summary}
                            for d in report.divergences],
            "targets": results,
            "interrupted": report.interrupted}  # fmt: skip


def _written(report: Any) -> list[str]:
    return [w for r in report.results for w in r.written]


def _print(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=140)
    mode = "--fast" if report.fast else "Hypothesis"
    table = Table(title=f"dioconf run --kernel ({mode}) --profile {report.profile} "
                  f"--seed {report.seed}")  # fmt: skip
    for name in ("target", "runs", "steps", "steps/s", "requests traced", "allowed findings",
                 "result"):
        table.add_column(name, justify="left" if name in ("target", "allowed findings",
                                                          "result") else "right")  # fmt: skip
    for r in report.results:
        if r.report is None:
            table.add_row(r.target.label, "", "", "", "", "", f"skipped: {r.skipped}")
            continue
        rep = r.report
        rate = f"{rep.steps / rep.seconds:.0f}" if rep.seconds else "-"
        allowed = ", ".join(f"{k} x{v}" for k, v in sorted(rep.allowed.items()))
        bad = [f.failure.name for f in rep.failures]
        traced = "-"
        if r.trace is not None:
            traced = str(r.trace.requests)
            if r.trace.divergences:
                bad.append(f"{len(r.trace.divergences)} model divergence(s)")
        result = "[green]pass[/]" if not bad else "[red]" + ", ".join(bad) + "[/]"
        table.add_row(r.target.label, str(rep.runs), str(rep.steps), rate, traced, allowed,
                      result)  # fmt: skip
    console.print(table)
    for (t, f), where in zip(report.failures, _written(report), strict=True):
        console.print(f"\n[red]{f.failure.name}[/] on {t.label}: shrunk from "
                      f"{f.original_length or '?'} to {len(f.ops)} operations",
                      highlight=False)  # fmt: skip
        console.print("\n".join(f.story), highlight=False, markup=False)
        console.print(f.failure.message, highlight=False, markup=False)
        console.print(f"  story and ops: {where}", highlight=False)
    for d in report.divergences:
        console.print(f"\n[red]model divergence[/]: {d.summary}\n  dioconf replay {d.trace}",
                      highlight=False)  # fmt: skip


def _replay(args: argparse.Namespace, allow: frozenset[str]) -> int:
    from .conformance.kernel_run import KernelUsageError, replay_ops

    try:
        target, (failure, run) = replay_ops(Path(args.replay), args.kernel, allow,
                                            args.image_dir)  # fmt: skip
    except KernelUsageError as exc:
        return _fail(str(exc))
    print(f"replayed on {target.label}:")
    print("\n".join(run.story))
    if failure is None:
        print("no failure")
        return EXIT_OK
    print(f"{failure.name}: {failure.message}")
    return EXIT_FOUND
