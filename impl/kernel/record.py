"""``dioconf record``: run a workload on a real filesystem and write v1 traces.

For each workload: a fresh filesystem on a loop device, a private tracefs instance,
the workload, then the recorded events of each file converted into one trace file.
The machine is left as it was found, also on errors and SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from attrs import define, field

from ...traces.format import header_dict, write_trace
from .btrfs import chunk_map, translator
from .convert import Converter
from .fixture import MountedFs, kernel_fs, signals_raise
from .parse import Record, parse_records
from .scenarios import Scenario
from .tracefs import trace_session
from .workload import Check, Workload

OBSERVED = ["bio", "queued", "complete"]  # the kernel shows no zero/flush distinction
PROFILE = "linux-6.18"  # how tracefs shows the engine (model/profiles.py)


@define
class Recording:
    fs: str
    name: str
    traces: list[Path] = field(factory=list)
    checks: list[Check] = field(factory=list)
    requests: int = 0
    unmatched: int = 0  # completions of requests that began before recording

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def _write(m: MountedFs, records: list[Record], inos: dict[int, str], out: Path,
           name: str, note: str, rec: Recording) -> None:  # fmt: skip
    """One trace per file that saw direct I/O."""
    out.mkdir(parents=True, exist_ok=True)
    header = header_dict(
        "iomap", m.geometry, source="kernel", fs=m.fs, kernel=m.kernel,
        profile=PROFILE + ("-btrfs" if m.fs == "btrfs" else ""), observed=OBSERVED, note=note,
    )  # fmt: skip
    translate = None
    if m.fs == "btrfs":
        translate = translator(chunk_map(m.loop))
        note += " (map addresses: btrfs logical addresses translated to device addresses)"
    for ino, fname in sorted(inos.items()):
        conv = Converter(ino, m.loop_dev, translate, m.geometry.page_size)
        for r in records:
            conv.add(r)
        try:
            events = conv.events()
        except ValueError as exc:
            rec.checks.append(Check(f"convert the events of {fname}", False, str(exc)))
            continue
        rec.unmatched += len(conv.unmatched)
        nreq = sum(e["ev"] == "begin" for e in events)
        if not nreq:
            continue
        rec.requests += nreq
        suffix = "" if len(inos) == 1 or fname == "f" else f"-{fname.replace('/', '_')}"
        path = out / f"{name}{suffix}.jsonl"
        with open(path, "w", encoding="utf-8") as fp:
            write_trace(fp, header, events)
        rec.traces.append(path)


def record_scenario(fs: str, scenario: Scenario, out: Path) -> Recording:
    rec = Recording(fs, scenario.name)
    with signals_raise(), kernel_fs(fs, write_cache=scenario.write_cache) as m:
        w = Workload(m)
        with trace_session(m) as t:
            w.marker = t.mark
            try:
                scenario.run(w)
            finally:
                w.close_all()
            text = t.read()
        rec.checks = w.verify()
        records = list(parse_records(text.splitlines()))
        inos = {ino: name for name, ino in w.inos.items()}
        _write(m, records, inos, out, scenario.name, scenario.note, rec)
    return rec


def record_command(fs: str, argv: Sequence[str], out: Path, name: str = "command") -> Recording:
    """Run ``argv`` with the mount point in $DIOCONF_MNT and record what it did."""
    rec = Recording(fs, name)
    with signals_raise(), kernel_fs(fs) as m:
        env = {**os.environ, "DIOCONF_MNT": str(m.mnt)}
        with trace_session(m) as t:
            proc = subprocess.Popen(list(argv), env=env, start_new_session=True)
            try:
                code = proc.wait()
            finally:
                # nothing the command started may keep the mount busy
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            text = t.read()
        rec.checks.append(Check(f"command exit status {code}", code == 0))
        records = list(parse_records(text.splitlines()))
        inos = {r.f["ino"]: f"ino{r.f['ino']}" for r in records if r.event == "iomap_dio_rw_begin"}
        note = f"recorded while running: {' '.join(argv)}"
        _write(m, records, inos, out, name, note, rec)
    return rec


def random_scenario(seed: int, ops: int) -> Scenario:
    """A reproducible random mix of operations on one file."""

    def run(w: Workload) -> None:
        rnd = random.Random(seed)
        lbs = w.m.geometry.logical_block_size
        w.buffered_write("f", 0, 256 * 1024)
        for _ in range(ops):
            pos = rnd.choice([0, lbs, 4096, 65536, 200 * 1024, 260 * 1024])
            pos += rnd.choice([0, 0, 0, lbs, 3 * lbs])
            length = rnd.choice([lbs, 2 * lbs, 4096, 8192, 65536])
            flags = tuple(rnd.sample(["DSYNC", "NOWAIT"], rnd.randint(0, 1)))
            op: Callable[..., object] = rnd.choice([w.pwrite, w.pread, w.pread])
            op("f", pos, length, flags=flags)
            if rnd.random() < 0.1:
                w.fallocate("f", rnd.choice([512, 1024]) * 1024, 64 * 1024)

    run.__doc__ = f"Random operations, seed {seed}, {ops} operations."
    return Scenario(f"random-{seed}", run)


def _report(rec: Recording, replay: bool, out: Callable[[str], None]) -> bool:
    """Print one recording's outcome; True when every check passed and it conforms."""
    from ...traces.replay import replay_file

    ok = not rec.failed_checks
    checks = f"checks {len(rec.checks) - len(rec.failed_checks)}/{len(rec.checks)} ok"
    out(f"{rec.fs:5} {rec.name}: {rec.requests} requests, {len(rec.traces)} trace(s), {checks}")
    for c in rec.failed_checks:
        out(f"      CHECK FAILED {c.what} {c.detail}")
    for path in rec.traces:
        if not replay:
            out(f"      wrote {path}")
            continue
        r = replay_file(str(path))
        if r.ok:
            out(f"      PASS    {path}")
            continue
        ok = False
        assert r.divergence is not None
        for line in r.divergence.report(indent="      "):
            out(line)
    return ok


def main(args: object) -> int:
    """``dioconf record``: see ``dioconf record --help``."""
    from .fixture import FILESYSTEMS, KernelUnavailable, check_environment
    from .scenarios import SCENARIOS

    def out(line: str) -> None:
        print(line, flush=True)

    a = args  # argparse.Namespace
    if a.list:
        for s in SCENARIOS.values():
            out(f"{s.name:18} {','.join(s.filesystems):15} {s.note}")
        return 0
    filesystems = FILESYSTEMS if a.fs == "all" else (a.fs,)
    command = list(a.command)
    if command and command[0] == "--":
        command = command[1:]
    from ...conformance.paths import PathProblem, check_out_dir

    try:  # where the traces go: checked before anything else
        check_out_dir(a.out)
    except PathProblem as exc:
        out(f"dioconf record: {exc}")
        return 2
    try:
        for fs in filesystems:
            check_environment(fs)
        unknown = [n for n in a.scenario if n not in SCENARIOS]
        if unknown:
            out(f"dioconf record: unknown scenario(s) {unknown}; see dioconf record --list")
            return 2
        ok = True
        done = passed = 0
        for fs in filesystems:
            target = Path(a.out) / fs
            jobs: list[Scenario | None] = []  # None: the external command
            if command:
                jobs.append(None)
            elif a.random is not None:
                jobs.append(random_scenario(a.random, a.ops))
            else:
                for name in a.scenario or list(SCENARIOS):
                    if fs in SCENARIOS[name].filesystems:
                        jobs.append(SCENARIOS[name])
                    elif a.scenario:
                        out(f"{fs:5} {name}: skipped (not a scenario for {fs})")
            for job in jobs:
                try:
                    if job is None:
                        rec = record_command(fs, command, target, a.name)
                    else:
                        rec = record_scenario(fs, job, target)
                except (OSError, RuntimeError, ValueError) as exc:
                    # the fixtures have cleaned up; say what failed and go on
                    what = job.name if job else a.name
                    out(f"{fs:5} {what}: ERROR {type(exc).__name__}: {exc}")
                    ok = False
                    done += 1
                    continue
                good = _report(rec, not a.no_replay, out)
                ok &= good
                done, passed = done + 1, passed + good
        out(f"dioconf record: {done} recording(s) on {', '.join(filesystems)}: "
            f"{passed} clean, {done - passed} not")  # fmt: skip
        return 0 if ok else 1
    except KernelUnavailable as exc:
        print(f"dioconf record: {exc}", flush=True)
        return 2
    except (KeyboardInterrupt, SystemExit) as exc:
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
        print("dioconf record: interrupted; the loop device and mount were cleaned up", flush=True)
        return code
