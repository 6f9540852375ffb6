"""The interrupt sweep: ``dioconf record`` stopped by SIGINT or SIGTERM, sent to its
process group, at every phase of a recording (start-up, image creation, mkfs, losetup,
mount, the private tracefs mount, enabling events, the workload, reading the trace,
conversion, writing the trace, replay, cleanup), leaves nothing behind and says so in
one line with exit 128 + signal.

Where the signal lands is chosen, not timed: tests/interrupt_driver.py counts the Python
calls made in the recorder's code and signals at the K-th; the K are the calls at which
each recorder function is first entered (a calibration run lists them), so every phase
is hit. Half of the runs signal a few milliseconds after that call instead, to land
inside whatever runs then (a helper program, a system call).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dioconf.traces.format import read_trace

from tests.kernel_support import leftovers, needs

DRIVER = Path(__file__).with_name("interrupt_driver.py")
RECORD = ["record", "--fs", "ext4", "--scenario"]
# scenario, phases sampled (two runs each: SIGINT, SIGTERM), runs that must be interrupted
SWEEPS = [("async-rw", 60, 100), ("bio-errors", 20, 30)]  # bio-errors: the FUSE disk too
DELAYS = (0.0, 0.002, 0.0, 0.01, 0.0, 0.03)  # seconds after the K-th call


def _driver(tmp: Path, k: int, sig: int, delay: float,
            scenario: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp / "tmp")}
    (tmp / "tmp").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, str(DRIVER), str(k), str(int(sig)), str(delay),
         str(tmp / "calibration.json"), "--", *RECORD, scenario, "--out", str(tmp / "out")],
        capture_output=True, text=True, env=env, timeout=120,
        start_new_session=True,  # its own process group, which it signals
    )  # fmt: skip


def _problems(tmp: Path, proc: subprocess.CompletedProcess[str], sig: int,
              early: bool) -> list[str]:  # fmt: skip
    """What is wrong with one interrupted run. ``early``: the signal came before the
    recorder's handlers were installed, where SIGTERM's default action kills the
    process (exit -15: a shell shows 143) before it could print or set anything up."""
    out = proc.stdout + proc.stderr
    lines = out.strip().splitlines()
    found = []
    finished = proc.returncode == 0 and lines and "1 clean" in lines[-1]
    killed = early and sig == signal.SIGTERM and proc.returncode == -sig and not out
    if not finished and not killed:  # (a delayed signal may come after the recording ended)
        if proc.returncode != 128 + sig:
            found.append(f"exit {proc.returncode}, not {128 + sig}")
        if not lines or not lines[-1].startswith("dioconf record: interrupted"):
            found.append(f"last line {lines[-1:]!r}")
    if "Traceback" in out or "Exception ignored" in out:
        found.append("a traceback")
    found += leftovers(tmp / "tmp", (_recorder_pid(tmp),))
    for part in (tmp / "out").rglob("*.part"):
        found.append(f"half-written {part}")
    for trace in (tmp / "out").rglob("*.jsonl"):
        try:
            read_trace(str(trace))
        except Exception as exc:  # any failure to read is the finding
            found.append(f"unreadable {trace}: {exc}")
    return found


def _recorder_pid(tmp: Path) -> int:
    """The driver's pid, which names its tracefs instance (written by the driver)."""
    f = tmp / "pid"
    return int(f.read_text()) if f.exists() else -1


@needs("ext4")
@pytest.mark.parametrize("scenario, npoints, least", SWEEPS, ids=[s[0] for s in SWEEPS])
def test_interrupts_at_every_phase_of_a_recording_leave_nothing_behind(
    tmp_path, scenario, npoints, least
):
    cal = _driver(tmp_path / "calibration", 0, signal.SIGINT, 0.0, scenario)
    assert cal.returncode == 0, cal.stdout + cal.stderr
    data = json.loads((tmp_path / "calibration" / "calibration.json").read_text())
    firsts = sorted(set(data["first"].values()))
    handlers_at = data["first"]["cleanup.<dictcomp>"]  # signals_raise installs them
    step = max(1, len(firsts) // npoints)
    points = [*firsts[::step][:npoints], data["calls"]]  # and the very last call
    runs = []
    for i, k in enumerate(points):
        for j, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
            runs.append((k, sig, DELAYS[(2 * i + j) % len(DELAYS)]))

    def one(n: int) -> tuple[tuple[int, int, float], list[str], bool]:
        k, sig, delay = runs[n]
        where = tmp_path / f"run-{n}"
        proc = _driver(where, k, sig, delay, scenario)
        problems = _problems(where, proc, sig, k <= handlers_at)
        interrupted = "interrupted" in proc.stdout or proc.returncode == -sig
        if problems:
            problems.append("output: " + " | ".join(proc.stdout.strip().splitlines()[-3:]))
        return runs[n], problems, interrupted

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(runs))))
    failures = [f"K={k} {signal.Signals(s).name} +{d}s: {p}" for (k, s, d), p, _ in results if p]
    assert not failures, "\n".join(failures)
    interrupted = sum(i for _, _, i in results)
    assert interrupted >= least, f"only {interrupted} of {len(runs)} runs were interrupted"
