"""The ``dioconf`` command line: one command, with subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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
    from .traces.format import TraceFormatError, read_trace
    from .traces.replay import replay_trace

    files = _expand(args.files)
    if not files:
        print("dioconf replay: no trace files given (directories held no .jsonl)", file=sys.stderr)
        return EXIT_USAGE
    traces, invalid = [], []
    for f in files:  # validate every file before replaying any line
        try:
            traces.append(read_trace(f))
        except TraceFormatError as exc:
            invalid.append(exc)
    results = [replay_trace(t) for t in traces]
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
    from .impl.kernel.record import main as record_main

    return record_main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "replay":
        from .bench.replay import run

        doc = run(events=args.events)
    elif args.what == "impl":
        from .bench.impl import run as run_impl

        doc = run_impl()
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    r.add_argument("--random", type=int, metavar="SEED", help="a random workload by seed")
    r.add_argument("--ops", type=int, default=40, help="operations of --random (default 40)")
    r.add_argument("--out", default="recorded", help="output folder (default ./recorded)")
    r.add_argument("--name", default="command", help="trace name for a COMMAND recording")
    r.add_argument("--list", action="store_true", help="list the built-in scenarios")
    r.add_argument("--no-replay", action="store_true", help="do not replay what was recorded")
    r.add_argument("command", nargs=argparse.REMAINDER,
                   help="-- COMMAND ARGS...: record an external command; the mount point "
                   "is in $DIOCONF_MNT")  # fmt: skip
    r.set_defaults(func=cmd_record)

    b = sub.add_parser("bench", help="benchmarks, as rates and ratios taken in one run")
    b.add_argument("what", choices=["replay", "impl"], help="what to measure")
    b.add_argument("--json", action="store_true", help="print JSON")
    b.add_argument("--events", type=int, default=120_000, help="events in the generated trace")
    b.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. piped into head
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
