"""The ``dioconf`` command line: one command, with subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .cli_args import natural, positive
from .cli_check import add_parser as add_check_parser
from .cli_run import add_parser as add_run_parser
from .impl.kernel.cleanup import signals_raise  # at start-up: no import window later

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE = 0, 1, 2


def _expand(paths: Sequence[str]) -> list[str]:
    """Files as given; a directory stands for the .jsonl files below it (sorted)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.rglob("*.jsonl")))
        else:
            out.append(p)
    return out


def cmd_replay(args: argparse.Namespace) -> int:
    from .traces.format import TraceFormatError
    from .traces.replay import replay_file

    files = _expand(args.files)
    if not files:
        print("dioconf replay: no trace files given (directories held no .jsonl)", file=sys.stderr)
        return EXIT_USAGE
    results, invalid = [], []
    for f in files:  # each streamed; a malformed one is INVALID, never half replayed
        try:
            results.append(replay_file(f))
        except TraceFormatError as exc:
            invalid.append(exc)
    passed = sum(r.ok for r in results)
    failed = len(results) - passed
    if args.json:
        doc = {
            "files": [r.to_dict() for r in results],
            "invalid": [{"path": e.path, "line": e.line, "problem": e.problem} for e in invalid],
            "passed": passed,
            "failed": failed,
        }
        print(json.dumps(doc, indent=2))
    else:
        for r in results:
            if r.ok:
                print(f"PASS    {r.path} ({r.requests} requests, {r.events} events)")
                continue
            assert r.divergence is not None
            print("\n".join(r.divergence.report()))
        for e in invalid:
            print(f"INVALID {e}", file=sys.stderr)
        print(f"{passed} passed, {failed} failed")
    if invalid:
        return EXIT_USAGE
    return EXIT_DIVERGED if failed else EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    try:
        with signals_raise() as stop:  # from the first moment: also while importing
            try:
                from .impl.kernel.record import main as record_main

                return record_main(args)
            except (KeyboardInterrupt, SystemExit):  # before anything was set up
                print("dioconf record: interrupted; nothing was set up yet", flush=True)
                return 128 + (stop.received or 2)
    except KeyboardInterrupt:  # before the handlers were in place (SIGTERM: killed)
        print("dioconf record: interrupted; nothing was set up yet", flush=True)
        return 130


def cmd_impl(args: argparse.Namespace) -> int:
    import tempfile

    from .impl.examples import ENGINES, EXAMPLES, FILESYSTEMS
    from .impl.world import World
    from .traces.replay import replay_file

    if args.list:
        for name, (fn, fss) in EXAMPLES.items():
            doc = (fn.__doc__ or "").strip().split("\n")[0]
            print(f"{name:16} {','.join(fss):40} {doc}")
        return EXIT_OK
    if args.example not in EXAMPLES:
        print(f"dioconf impl: unknown example {args.example!r}; see dioconf impl --list",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    fn, fss = EXAMPLES[args.example]
    if args.fs not in fss:
        print(f"dioconf impl: example {args.example} runs on {', '.join(fss)}, not {args.fs}",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    with tempfile.TemporaryDirectory(prefix="dioconf-impl-") as tmp:
        image = args.image or Path(tmp) / "image"
        engine = ENGINES.get(args.fs, "iomap")
        with World(FILESYSTEMS[args.fs], image=image, size=args.size, engine=engine) as w:
            fn(w)
            trace = Path(args.trace) if args.trace else Path(tmp) / "run.jsonl"
            w.save_trace(trace)
            requests = sum(1 for e in w.trace.events if e["ev"] == "begin")  # type: ignore[union-attr]
            result = replay_file(str(trace))
            print(f"{args.fs} {args.example}: {requests} requests on {image}")
            if args.trace:
                print(f"trace written to {trace}")
            if result.ok:
                print("the model agrees: PASS")
                return EXIT_OK
            assert result.divergence is not None
            print("\n".join(result.divergence.report()))
            return EXIT_DIVERGED


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "replay":
        from .bench.replay import run

        doc = run(events=args.events)
    elif args.what == "impl":
        from .bench.impl import run as run_impl

        doc = run_impl()
    elif args.what == "quality":
        from .bench.quality import run as run_quality

        doc = run_quality("ci")
    elif args.what == "reader":
        from .bench.reader import run as run_reader

        doc = run_reader(files=args.files)
    elif args.what == "fidelity":
        from .bench.fidelity import run as run_fidelity

        doc = run_fidelity()
    elif args.what == "kernel":
        from .bench.kernel import run as run_kernel_bench

        doc = run_kernel_bench(fs=args.fs)
    elif args.what == "conformance":
        from .cli_run import cmd_bench_conformance

        doc = cmd_bench_conformance(args)
    else:  # pragma: no cover - argparse restricts choices
        raise AssertionError(args.what)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for key, value in doc.items():
            print(f"{key}: {value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dioconf",
        description="Reference model of Linux direct I/O and a conformance suite built on it.",
    )
    parser.add_argument("--version", action="version", version=f"dioconf {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(sub)
    add_check_parser(sub)

    p = sub.add_parser(
        "replay",
        help="replay v1 trace files against the model",
        description="Replay trace files through the engine model. Exit 0 when all "
        "conform, 1 when any diverges, 2 for invalid input or usage.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="trace files or folders of them")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_replay)

    r = sub.add_parser(
        "record",
        help="record what the real kernel does (root, loop devices, tracefs)",
        description="Run workloads on a fresh ext4/xfs/btrfs image on a loop device, record "
        "the iomap and block tracepoints, write v1 traces and replay them against the model. "
        "Exit 0 when every check passes and every trace conforms, 1 otherwise, 2 when the "
        "machine cannot record. Example: dioconf record --fs ext4 -- sh -c 'dd if=/dev/zero "
        "of=$DIOCONF_MNT/f bs=4k count=4 oflag=direct'",
    )
    r.add_argument("--fs", default="all", choices=["ext4", "xfs", "btrfs", "all"])
    r.add_argument("--scenario", action="append", default=[], metavar="NAME",
                   help="a built-in scenario (repeatable; default: all of them)")  # fmt: skip
    r.add_argument("--random", type=natural, metavar="SEED", help="a random workload by seed")
    r.add_argument("--ops", type=positive, default=40,
                   help="operations of --random (default 40)")  # fmt: skip
    r.add_argument("--out", default="recorded", help="output folder (default ./recorded)")
    r.add_argument("--name", default="command", help="trace name for a COMMAND recording")
    r.add_argument("--list", action="store_true", help="list the built-in scenarios")
    r.add_argument("--no-replay", action="store_true", help="do not replay what was recorded")
    r.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- COMMAND ARGS...: record an external command; the mount point "
                   "is in $DIOCONF_MNT")  # fmt: skip
    r.set_defaults(func=cmd_record)

    i = sub.add_parser(
        "impl",
        help="run an example on the implementation, record and replay its trace",
        description="Run one of the implementation's example workloads on a reference "
        "filesystem over a real image file, write its v1 trace (--trace) and replay it "
        "against the model. Exit 0 when the model agrees, 1 when it diverges.",
    )
    i.add_argument("--fs", default="xfs-like", help="reference filesystem (default xfs-like)")
    i.add_argument("--example", default="aligned-io", help="example workload")
    i.add_argument("--trace", metavar="FILE", help="write the run's v1 trace here")
    i.add_argument("--image", metavar="PATH", help="image file (default: a temporary one)")
    i.add_argument("--size", type=int, default=64 << 20, help="image size in bytes")
    i.add_argument("--list", action="store_true", help="list the examples")
    i.set_defaults(func=cmd_impl)

    b = sub.add_parser("bench", help="benchmarks, as rates and ratios taken in one run")
    b.add_argument("what", choices=["replay", "impl", "conformance", "quality", "reader",
                                    "fidelity", "kernel"],
                   help="what to measure")  # fmt: skip
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("--fs", default="xfs", choices=["ext4", "xfs", "btrfs"],
                   help="for 'kernel': the filesystem (default xfs)")  # fmt: skip
    b.add_argument("--events", type=int, default=120_000, help="events in the generated trace")
    b.add_argument("--files", type=positive, default=2000,
                   help="mutated traces for 'reader' (default 2000)")  # fmt: skip
    b.set_defaults(func=cmd_bench)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("dioconf")
    except Exception:  # not installed (run from a checkout)
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a command took over SIGINT: nothing was set up
        args = list(sys.argv[1:] if argv is None else argv)
        print(f"dioconf {args[0] if args else ''}: interrupted (SIGINT)".replace(" :", ":"),
              file=sys.stderr)  # fmt: skip
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the subcommand's own usage, naming what it does not know
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. piped into head
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
