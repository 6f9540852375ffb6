"""``dioconf record``: run a workload on a real filesystem and write v1 traces.

For each workload: a fresh filesystem on a loop device, a private tracefs instance,
the workload, then the recorded events of each file converted into one trace file.
The machine is left as it was found, also on errors and SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from attrs import define, field

from ...model.syscall_glue import GLUE_FILESYSTEMS
from ...traces.format import dump_line, header_dict, scan_trace
from .btrfs import chunk_map, translator
from .cleanup import CleanupFailed, critical, signals_raise, undo_stack
from .convert import Converter
from .convert_req import OBSERVED
from .fixture import MountedFs, kernel_fs
from .fusedisk import FUSE_DEV
from .parse import Record, parse_records
from .scenarios import Scenario
from .tracefs import BUFFER_KB, TraceSession, trace_session
from .workload import Check, Workload

PROFILE = "linux-6.18"  # how tracefs shows the engine (model/profiles.py)


@define
class Recording:
    fs: str
    name: str
    traces: list[Path] = field(factory=list)
    checks: list[Check] = field(factory=list)
    requests: int = 0
    unmatched: int = 0  # completions of requests that began before recording
    events: int = 0  # tracefs records read
    lost: int = 0  # events the ring buffer lost before they were read
    unchecked: int = 0  # requests left out of the traces because of lost events

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


REORDER = 4096  # records held back to put them in time order


def _records(spool: Path, only: str | None = None) -> Iterator[Record]:
    """The spooled tracefs text as records in time order, streamed (trace_pipe merges
    the CPUs' buffers as it reads them: an event committed late can come out after a
    later one, by far less than REORDER records). ``only``: lines with this text."""
    heap: list[tuple[float, int, Record]] = []
    with open(spool, encoding="utf-8", errors="replace") as fp:
        lines = (ln for ln in fp if only in ln) if only else fp
        for n, rec in enumerate(parse_records(lines)):
            heapq.heappush(heap, (rec.ts, n, rec))  # n: equal times keep their order
            if len(heap) > REORDER:
                yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


class _SpoolSink:
    """A converter's final lines, spooled to a file and read back once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fp = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by __iter__

    def append(self, item: tuple[int, dict[str, Any]], /) -> None:
        self.fp.write(json.dumps(item) + "\n")

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        self.fp.close()
        with open(self.path, encoding="utf-8") as fp:
            for line in fp:
                req, ev = json.loads(line)
                yield req, ev


def _write(m: MountedFs, spool: Path, overrun: int, inos: dict[int, str], out: Path,
           name: str, note: str, rec: Recording, t: TraceSession) -> None:  # fmt: skip
    """One trace per file that saw direct I/O, converted in one streamed pass over the
    records; memory holds only the requests in flight."""
    out.mkdir(parents=True, exist_ok=True)
    translate = None
    if m.fs == "btrfs":
        translate = translator(chunk_map(m.loop))
        note += " (map addresses: btrfs logical addresses translated to device addresses)"
    work = m.image.parent
    convs = {
        ino: Converter(ino, m.loop_dev, translate, m.geometry.page_size,
                       sink=_SpoolSink(work / f"events-{ino}.jsonl"),
                       write_cache=m.geometry.write_cache, ctx=t.work_traced,
                       syscalls=t.syscalls_traced and m.fs in GLUE_FILESYSTEMS)
        for ino in inos
    }  # fmt: skip
    failed: dict[int, str] = {}
    for r in _records(spool):
        rec.events += 1
        for ino, conv in convs.items():
            if ino not in failed:
                try:
                    conv.add(r)
                except ValueError as exc:
                    failed[ino] = str(exc)
    seen = max((c.lost for c in convs.values()), default=0)
    rec.lost = max(overrun, seen)
    for ino, fname in sorted(inos.items()):
        conv = convs[ino]
        try:
            if ino in failed:
                raise ValueError(failed[ino])
            conv.finish()
        except ValueError as exc:
            rec.checks.append(Check(f"convert the events of {fname}", False, str(exc)))
            continue
        if overrun > seen:  # lost without a [LOST] line saying where: nothing is safe
            conv.unchecked.update(range(1, conv.nreqs + 1))
        rec.unmatched += len(conv.unmatched)
        rec.unchecked += len(conv.unchecked)
        nreq = conv.nreqs - len(conv.unchecked)
        if not nreq:
            continue
        rec.requests += nreq
        text = note
        if conv.unchecked:
            text += f" ({len(conv.unchecked)} requests left out: the trace buffer lost events)"
        header = header_dict(
            "iomap", m.geometry, source="kernel", fs=m.fs, kernel=m.kernel,
            profile=PROFILE + {"btrfs": "-btrfs", "ext4": "-ext4"}.get(m.fs, ""),
            observed=OBSERVED,
            note=text,
        )  # fmt: skip
        suffix = "" if len(inos) == 1 or fname == "f" else f"-{fname.replace('/', '_')}"
        path = out / f"{name}{suffix}.jsonl"
        _write_whole(path, header, conv.kept())
        rec.traces.append(path)


def _write_whole(path: Path, header: dict[str, Any], events: Iterable[dict[str, Any]]) -> None:
    """Write the trace under a temporary name, read it back as a reader would (streamed)
    and rename it: an interrupted or failed write leaves no half trace behind."""
    part = path.with_name(path.name + ".part")
    with undo_stack() as undo:
        undo.push(f"remove {part}", lambda: part.unlink(missing_ok=True))
        with open(part, "w", encoding="utf-8") as fp:
            fp.write(dump_line(header) + "\n")
            for ev in events:
                fp.write(dump_line(ev) + "\n")
        for _ in scan_trace(str(part)):
            pass
        os.replace(part, path)


def record_scenario(
    fs: str, scenario: Scenario, out: Path, *, buffer_kb: int = BUFFER_KB
) -> Recording:
    rec = Recording(fs, scenario.name)
    with signals_raise(), kernel_fs(fs, write_cache=scenario.write_cache,
                                    fuse=scenario.fuse) as m:  # fmt: skip
        w = Workload(m)
        with undo_stack() as undo:
            undo.push("close the workload's files", w.close_all)  # before unmounting
            with trace_session(m, m.image.parent / "trace.txt", buffer_kb=buffer_kb) as t:
                w.marker = t.mark
                try:
                    scenario.run(w)
                finally:
                    w.close_all()
                spool, overrun = t.finish()
        rec.checks = w.verify()
        inos = {ino: name for name, ino in w.inos.items()}
        _write(m, spool, overrun, inos, out, scenario.name, scenario.note, rec, t)
    return rec


def _run_command(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run the command in a session of its own; kill all it started when it ends or
    when we are interrupted (nothing it left may keep the mount busy)."""
    with undo_stack() as undo:
        with critical():
            proc = subprocess.Popen(list(argv), env=env, start_new_session=True)
            undo.push(f"stop {argv[0]}", lambda: _kill_group(proc))
        return proc.wait()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def record_command(fs: str, argv: Sequence[str], out: Path, name: str = "command") -> Recording:
    """Run ``argv`` with the mount point in $DIOCONF_MNT and record what it did."""
    rec = Recording(fs, name)
    with signals_raise(), kernel_fs(fs) as m:
        env = {**os.environ, "DIOCONF_MNT": str(m.mnt)}
        with trace_session(m, m.image.parent / "trace.txt") as t:
            code = _run_command(argv, env)
            spool, overrun = t.finish()
        rec.checks.append(Check(f"command exit status {code}", code == 0))
        begins = _records(spool, only="iomap_dio_rw_begin")
        inos = {r.f["ino"]: f"ino{r.f['ino']}" for r in begins if r.event == "iomap_dio_rw_begin"}
        note = f"recorded while running: {' '.join(argv)}"
        _write(m, spool, overrun, inos, out, name, note, rec, t)
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
    if rec.lost:
        out(f"      the trace buffer lost {rec.lost} of {rec.events + rec.lost} events: "
            f"{rec.unchecked} request(s) they may belong to were left out, unchecked; "
            f"requests whose start was lost are not in the traces at all "
            f"({rec.unmatched} completion(s) without a start were ignored)")  # fmt: skip
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
    from .fixture import FILESYSTEMS
    from .scenarios import SCENARIOS

    def out(line: str) -> None:
        with critical():  # a whole line or none: an interrupt cannot cut one in two
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    a = args  # argparse.Namespace
    if a.list:
        for s in SCENARIOS.values():
            only = "" if s.default else "[by name only: reproduces a finding] "
            out(f"{s.name:18} {','.join(s.filesystems):15} {only}{s.note}")
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
    with signals_raise() as stop:
        code = _record_all(a, filesystems, command, out, stop)
    if code == 0 and stop.received is not None:  # came as the last recording ended
        out("dioconf record: interrupted at the end; everything was cleaned up")
        code = 130 if stop.received == signal.SIGINT else 128 + stop.received
    return code


def _record_all(a: Any, filesystems: Sequence[str], command: list[str],
                out: Callable[[str], None], stop: Any) -> int:  # fmt: skip
    """The recordings ``main`` asked for; the exit code."""
    from .fixture import KernelUnavailable, check_environment
    from .scenarios import SCENARIOS

    done = passed = 0
    try:
        for fs in filesystems:
            check_environment(fs)
        unknown = [n for n in a.scenario if n not in SCENARIOS]
        if unknown:
            out(f"dioconf record: unknown scenario(s) {unknown}; see dioconf record --list")
            return 2
        ok = True
        for fs in filesystems:
            target = Path(a.out) / fs
            jobs: list[Scenario | None] = []  # None: the external command
            if command:
                jobs.append(None)
            elif a.random is not None:
                jobs.append(random_scenario(a.random, a.ops))
            else:
                for name in a.scenario or [n for n, s in SCENARIOS.items() if s.default]:
                    if fs not in SCENARIOS[name].filesystems:
                        if a.scenario:
                            out(f"{fs:5} {name}: skipped (not a scenario for {fs})")
                    elif SCENARIOS[name].fuse and not a.scenario and not FUSE_DEV.exists():
                        out(f"{fs:5} {name}: skipped (needs FUSE: {FUSE_DEV} is missing)")
                    else:
                        jobs.append(SCENARIOS[name])
            for job in jobs:
                if stop.received is not None:  # one Python swallowed (in a __del__)
                    raise KeyboardInterrupt
                what = job.name if job else a.name
                try:
                    if job is None:
                        rec = record_command(fs, command, target, a.name)
                    else:
                        rec = record_scenario(fs, job, target)
                except CleanupFailed as exc:
                    out(f"{fs:5} {what}: ERROR {exc}")
                    if stop.received is not None:
                        out("dioconf record: interrupted; the resources above were left behind")
                        return 1
                    ok = False
                    done += 1
                    continue
                except (OSError, RuntimeError, ValueError) as exc:
                    # the fixtures have cleaned up; say what failed and go on
                    out(f"{fs:5} {what}: ERROR {type(exc).__name__}: {exc}")
                    ok = False
                    done += 1
                    continue
                good = _report(rec, not a.no_replay, out)
                ok &= good
                done, passed = done + 1, passed + good
        if stop.received is not None:  # an interrupt Python swallowed (in a __del__)
            raise KeyboardInterrupt
        out(f"dioconf record: {done} recording(s) on {', '.join(filesystems)}: "
            f"{passed} clean, {done - passed} not")  # fmt: skip
        return 0 if ok else 1
    except KernelUnavailable as exc:
        out(f"dioconf record: {exc}")
        return 2
    except (KeyboardInterrupt, SystemExit) as exc:
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 130
        if stop.received is not None and stop.received != signal.SIGINT:
            code = 128 + stop.received
        out(
            f"dioconf record: interrupted after {done} recording(s); "
            "the loop devices, mounts and tracefs instances were cleaned up"
        )
        return code
