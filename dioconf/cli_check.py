"""``dioconf check``: arguments, the progress bar and the closing summary."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from .cli_args import natural, positive
from .cli_signals import EXIT_INTERRUPTED, interruptible
from .conformance.catalogue import PROFILES

EXIT_OK, EXIT_FOUND, EXIT_USAGE = 0, 1, 2
COLUMNS = ("steps", "requests", "bios", "crashes", "races", "order_checks", "quirks")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="property-test your own filesystem callbacks (pkg.module:factory)",
        description="Run the conformance suite over a filesystem you wrote: FACTORY is "
        "pkg.module:factory (or path/to/file.py:factory), a callable that takes the "
        "block device and returns the filesystem (see dioconf.fsapi). Every callback is "
        "checked against its contract as it returns, and what the files hold against "
        "the model's oracle (stale data, acknowledged O_DSYNC data lost in a crash, "
        "results and i_size). A problem is shrunk and written as a v1 trace and a Python "
        "reproduction. Exit 0 when clean, 1 when a problem was found, 2 when a factory "
        "cannot be imported or built, or for usage errors.",
    )
    p.add_argument("factories", nargs="+", metavar="FACTORY",
                   help="pkg.module:factory (the current directory is importable)")  # fmt: skip
    p.add_argument("--profile", default="ci", choices=list(PROFILES),
                   help="ci: derandomized and bounded (default); dev; nightly: long")  # fmt: skip
    p.add_argument("--seed", type=natural, help="random seed (instead of the profile's)")
    p.add_argument("--examples", type=positive, metavar="N", help="examples per filesystem")
    p.add_argument("--engine", choices=["iomap", "legacy"],
                   help="the engine (default: iomap with iomap_begin, else legacy)")  # fmt: skip
    p.add_argument("--out", default="dioconf-failures", metavar="DIR",
                   help="where counterexamples go (default ./dioconf-failures)")  # fmt: skip
    p.add_argument("--image-dir", metavar="DIR", help="where the sparse images live")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from .conformance.check import FactoryError, probe, resolve, run_check
    from .conformance.run import UsageError

    if args.examples is not None and args.examples < 1:
        print("dioconf check: --examples must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    errors = {}  # every factory is loaded and built once before anything runs
    for spec in args.factories:
        try:
            fn, name = resolve(spec)
            probe(fn, name, args.engine)
        except FactoryError as exc:
            errors[spec] = str(exc)
    if errors:
        for message in errors.values():
            print(f"dioconf check: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "errors": errors}, indent=2))
        return EXIT_USAGE
    total = args.examples if args.examples is not None else PROFILES[args.profile][0]
    reports, start = [], time.perf_counter()
    with interruptible() as interrupted, _progress(not (args.quiet or args.json)) as bar:
        for spec in args.factories:
            task = bar.add_task(spec, total=total) if bar is not None else None

            def tick(t: Any = task) -> None:  # each example: an interrupt stops here
                if interrupted:
                    raise KeyboardInterrupt
                if bar is not None:
                    bar.advance(t)

            try:
                r = run_check(spec, profile=args.profile, engine=args.engine,
                              examples=args.examples, seed=args.seed, out_dir=args.out,
                              image_dir=args.image_dir, on_example=tick)  # fmt: skip
            except (FactoryError, UsageError) as exc:
                print(f"dioconf check: {exc}", file=sys.stderr)
                return EXIT_USAGE
            except KeyboardInterrupt:
                interrupted.signal = interrupted.signal or signal.SIGINT
                break
            if bar is not None:
                bar.update(task, completed=total)
            reports.append(r)
            if interrupted:
                break
    seconds = time.perf_counter() - start
    if interrupted:
        if reports and not args.json:
            _print_summary(reports, args.profile, args.seed, seconds)
        print(f"dioconf check: interrupted ({interrupted.name}); {len(reports)} of "
              f"{len(args.factories)} filesystem(s) checked", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    if args.json:
        doc = {
            "profile": args.profile,
            "seed": args.seed,
            "ok": all(r.ok for r in reports),
            "seconds": round(seconds, 2),
            "filesystems": [r.to_dict() for r in reports],
        }
        print(json.dumps(doc, indent=2))
    else:
        _print_summary(reports, args.profile, args.seed, seconds)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FOUND


class _progress:
    """A rich progress bar (or None when disabled), as ``dioconf run`` shows it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(TextColumn("{task.description:<32}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("examples"),
                                TimeElapsedColumn(), transient=False)  # fmt: skip
            self.bar.__enter__()
        return self.bar

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _print_summary(reports: list[Any], profile: str, seed: int | None, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=140)
    table = Table(title=f"dioconf check --profile {profile}"
                  + (f" --seed {seed}" if seed is not None else ""))  # fmt: skip
    for name in ("filesystem", "engine", "examples", *COLUMNS, "seconds", "result"):
        table.add_column(name, justify="left" if name in ("filesystem", "engine", "result")
                         else "right", overflow="fold")  # fmt: skip
    for r in reports:
        c = r.result
        result = "[green]pass[/]" if r.ok else f"[red]FAIL ({c.failure.kind})[/]"
        table.add_row(r.spec, r.engine, str(c.examples), *(str(getattr(c.stats, k))
                      for k in COLUMNS), f"{c.seconds:.1f}", result)  # fmt: skip
    console.print(table)
    for r in reports:
        f = r.result.failure
        if f is None:
            continue
        ops = f"{f.steps} operation{'s' if f.steps != 1 else ''}"
        console.print(f"\n[red]{r.spec} on the {r.engine} engine: {r.title}[/] after {ops} "
                      "(shrunk)", highlight=False)  # fmt: skip
        console.print(f.message, highlight=False, markup=False)
        for hint in r.hints:
            console.print(f"[yellow]hint:[/] {hint}", highlight=False)
        if r.story:
            console.print("operations (the last one failed):", highlight=False)
            console.print("\n".join(f"  {s}" for s in r.story), highlight=False, markup=False)
        console.print(
            f"  trace: {f.trace}  (dioconf replay {f.trace}"
            + (
                ": replays clean, the difference is at file level; run the reproduction)"
                if f.replays_clean
                else ")"
            ),
            highlight=False,
        )
        console.print(f"  reproduction: python3 {f.repro}", highlight=False)
    n = sum(not r.ok for r in reports)
    console.print(f"\n{len(reports) - n} passed, {n} failed in {seconds:.1f} s", highlight=False)
