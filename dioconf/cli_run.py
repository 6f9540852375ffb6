"""``dioconf run``: arguments, the progress bar and the closing summary."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from .cli_args import natural, positive
from .cli_signals import EXIT_INTERRUPTED, interruptible
from .conformance.catalogue import ENGINE_NAMES, FS_NAMES, PROFILES

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE = 0, 1, 2
COLUMNS = ("steps", "requests", "bios", "crashes", "races", "order_checks", "quirks",
           "divergences")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the conformance suite (model versus implementation) on the default image",
        description="Run the conformance suite: random operation sequences, racing "
        "completions and crashes on every reference filesystem and engine, each checked "
        "against the model and its file-level oracle, on a fresh 1 GiB sparse image per "
        "example. A failure is shrunk and written as a v1 trace (dioconf replay re-runs it) "
        "and a Python reproduction. Exit 0 when clean, 1 when a difference was found, "
        "2 for usage or environment errors.",
    )
    p.add_argument("--profile", default="ci", choices=list(PROFILES),
                   help="ci: derandomized and bounded (default); dev; nightly: long")  # fmt: skip
    p.add_argument("--seed", type=natural, help="random seed (instead of the profile's)")
    p.add_argument("--fs", action="append", default=[], metavar="NAME",
                   help=f"only this filesystem (repeatable): {', '.join(FS_NAMES)}")
    p.add_argument("--engine", action="append", default=[], choices=list(ENGINE_NAMES),
                   help="only this engine (repeatable)")  # fmt: skip
    p.add_argument("--examples", type=positive, metavar="N", help="examples per filesystem")
    p.add_argument("--out", default="dioconf-failures", metavar="DIR",
                   help="where counterexamples go (default ./dioconf-failures)")  # fmt: skip
    p.add_argument("--image-dir", metavar="DIR",
                   help="where the sparse images live (default: the system's temporary "
                        "directory; with --kernel and no TMPDIR set, /dev/shm when it is a "
                        "tmpfs with 4 GiB free)")  # fmt: skip
    p.add_argument("--jobs", "-j", type=positive, default=1, metavar="N",
                   help="filesystems run in parallel (at least 1)")  # fmt: skip
    p.add_argument("--plant", metavar="BUG", help="plant a known engine bug (quality check)")
    p.add_argument("--no-proofs", action="store_true", help="skip the z3 proofs")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    from .cli_kernel import add_arguments

    add_arguments(p)
    p.set_defaults(func=cmd_run)


def _proofs() -> tuple[list[Any], float]:
    import time

    from .conformance.proofs import run_proofs

    t = time.perf_counter()
    results = run_proofs()
    return results, time.perf_counter() - t


def cmd_run(args: argparse.Namespace) -> int:
    from .conformance.run import UsageError, run_suite

    if args.kernel or args.replay:
        from .cli_kernel import cmd_kernel

        return cmd_kernel(args)
    kernel_only = [o for o, v in (("--fast", args.fast), ("--sector-size", args.sector_size),
                                  ("--write-cache", args.write_cache), ("--ops", args.ops))
                   if v]  # fmt: skip
    if kernel_only:
        print(f"dioconf run: {kernel_only[0]} needs --kernel", file=sys.stderr)
        return EXIT_USAGE

    if args.examples is not None and args.examples < 1:
        print("dioconf run: --examples must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    from .conformance.findings import KNOWN_FINDINGS, allowed_names

    allow, unknown = allowed_names(args.allow_finding)
    if unknown:
        print(f"dioconf run: unknown finding {unknown[0]!r}; known: "
              f"{', '.join(KNOWN_FINDINGS)}", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if args.plant is not None:
        from .conformance.bugs import BUGS

        if args.plant not in BUGS:
            print(f"dioconf run: unknown bug {args.plant!r}; known: {', '.join(sorted(BUGS))}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
    report = None
    proofs: list[Any] = []
    proof_seconds = 0.0
    with interruptible() as interrupted:
        try:
            if not args.no_proofs:
                proofs, proof_seconds = _proofs()
            if interrupted:
                raise KeyboardInterrupt
            report = run_suite(args.profile, seed=args.seed, fs=args.fs, engine=args.engine,
                               examples=args.examples, out_dir=args.out,
                               image_dir=args.image_dir, plant=args.plant,
                               jobs=max(1, args.jobs), progress=not (args.quiet or args.json),
                               stop=lambda: bool(interrupted))  # fmt: skip
        except UsageError as exc:
            print(f"dioconf run: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            interrupted.signal = interrupted.signal or signal.SIGINT
    if report is not None:
        if args.json:
            doc = _as_json(report, proofs, proof_seconds, allow)
            doc["interrupted"] = bool(interrupted)
            print(json.dumps(doc, indent=2))
        else:
            _print_summary(report, proofs, proof_seconds, allow)
    if interrupted:  # (also one swallowed on the way: never exit 0 after it)
        done = len(report.combos) if report is not None else 0
        print(f"dioconf run: interrupted ({interrupted.name}); {done} filesystem(s) "
              "finished, shown above", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    assert report is not None
    unproved = [p for p in proofs if p.status != "proved"]
    refused = _not_allowed(report, allow)
    return EXIT_OK if report.ok and not unproved and not refused else EXIT_DIVERGED


def _not_allowed(report: Any, allow: frozenset[str]) -> list[str]:
    """The findings met that ``--allow-finding`` did not accept (each exits 1)."""
    return sorted(n for n in report.totals().findings if n not in allow)


def _findings(report: Any, allow: frozenset[str]) -> list[dict[str, Any]]:
    """The findings met, as ``--json`` carries them (as the kernel runs do)."""
    from .conformance.findings import KNOWN_FINDINGS

    out = []
    for name, n in sorted(report.totals().findings.items()):
        doc = KNOWN_FINDINGS.get(name)
        path = doc.repro_path if doc is not None else None
        out.append({"name": name, "summary": doc.summary if doc is not None else "",
                    "fs": sorted({c.fs for c in report.combos if c.stats.findings[name]}),
                    "repro": str(path) if path is not None else "", "count": n,
                    "allowed": name in allow})  # fmt: skip
    return out


def _as_json(report: Any, proofs: list[Any], proof_seconds: float,
             allow: frozenset[str]) -> dict[str, Any]:  # fmt: skip
    def combo(c: Any) -> dict[str, Any]:
        d = {"fs": c.fs, "engine": c.engine, "examples": c.examples,
             "seconds": round(c.seconds, 2), "ok": c.ok}  # fmt: skip
        d.update({k: getattr(c.stats, k) for k in COLUMNS})
        d["findings"] = dict(c.stats.findings)  # the seed's, reproduced (FINDINGS.md)
        if c.failure is not None:
            f = c.failure
            d["failure"] = {"kind": f.kind, "message": f.message, "steps": f.steps,
                            "trace": f.trace, "repro": f.repro,
                            "trace_replays_clean": f.replays_clean}  # fmt: skip
        return d

    return {
        "profile": report.profile, "seed": report.seed,
        "ok": report.ok and not _not_allowed(report, allow),
        "findings": _findings(report, allow),
        "seconds": round(report.seconds, 2),
        "combos": [combo(c) for c in report.combos],
        "proofs": {"proved": sum(p.status == "proved" for p in proofs), "total": len(proofs),
                   "seconds": round(proof_seconds, 2),
                   "not_proved": [p.name for p in proofs if p.status != "proved"]},
    }  # fmt: skip


def _print_summary(report: Any, proofs: list[Any], proof_seconds: float,
                   allow: frozenset[str]) -> None:  # fmt: skip
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    table = Table(title=f"dioconf run --profile {report.profile}"
                  + (f" --seed {report.seed}" if report.seed is not None else ""))  # fmt: skip
    for name in ("filesystem", "engine", "examples", *COLUMNS, "seconds", "result"):
        table.add_column(name, justify="left" if name in ("filesystem", "engine", "result")
                         else "right")  # fmt: skip
    for c in report.combos:
        s = c.stats
        result = "[green]pass[/]" if c.ok else f"[red]FAIL ({c.failure.kind})[/]"
        table.add_row(c.fs, c.engine, str(c.examples), *(str(getattr(s, k)) for k in COLUMNS),
                      f"{c.seconds:.1f}", result)  # fmt: skip
    t = report.totals()
    table.add_row("total", "", str(sum(c.examples for c in report.combos)),
                  *(str(getattr(t, k)) for k in COLUMNS), f"{report.seconds:.1f}",
                  "[red]FAIL[/]" if not report.ok else "[red]FAIL (findings)[/]"
                  if _not_allowed(report, allow) else "[green]pass[/]", style="bold")  # fmt: skip
    console.print(table)
    ok = {n: c for n, c in sorted(t.findings.items()) if n in allow}
    refused = {n: c for n, c in sorted(t.findings.items()) if n not in allow}
    if ok:
        met = ", ".join(f"{name} x{n}" for name, n in ok.items())
        console.print(f"findings of the seed met and allowed (the implementation reproduces "
                      f"them on purpose; FINDINGS.md): {met}", highlight=False)  # fmt: skip
    if refused:
        met = ", ".join(f"{name} x{n}" for name, n in refused.items())
        console.print(f"[red]findings not allowed[/]: {met} (the seed's own: FINDINGS.md; "
                      f"--allow-finding NAME accepts a known one)", highlight=False)
    if proofs:
        bad = [p for p in proofs if p.status != "proved"]
        console.print(f"z3: {len(proofs) - len(bad)}/{len(proofs)} arithmetic rules proved "
                      f"over 64-bit bit-vectors in {proof_seconds:.1f} s"
                      + ("" if not bad else "; NOT proved: " + ", ".join(p.name for p in bad)))
    for c in report.combos:
        f = c.failure
        if f is None:
            continue
        console.print(f"\n[red]{c.fs} on {c.engine}: {f.kind}[/] after {f.steps} operations "
                      "(shrunk)", highlight=False)  # fmt: skip
        console.print(f.message, highlight=False, markup=False)
        console.print(f"  trace: {f.trace}  (dioconf replay {f.trace}"
                      + (": replays clean, the difference is at file level; run the "
                         "reproduction)" if f.replays_clean else ")"), highlight=False)
        console.print(f"  reproduction: python3 {f.repro}", highlight=False)


def cmd_bench_conformance(args: argparse.Namespace) -> dict[str, Any]:
    from .bench.conformance import run

    return run()
