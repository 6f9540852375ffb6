"""The interrupt sweep for ``dioconf run --kernel``: SIGINT or SIGTERM, sent to its process
group at every phase (start-up, image creation, mkfs, losetup, mount, the operations,
remounts, shrinking, writing a failure, cleanup), leaves nothing mounted, attached or
on disk, and says so in one line with exit 128 + signal.

As tests/test_recorder_interrupts.py: tests/interrupt_driver.py signals at the K-th
Python call into impl/kernel, traces and conformance, the K being where each function is
first entered in a calibration run; half of the runs signal a little after that call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.kernel_support import leftovers, needs

DRIVER = Path(__file__).with_name("interrupt_driver.py")
# --fast with remounts and a finding to shrink and write out (ext4 finds one at once)
RUN = ["run", "--kernel", "ext4", "--fast", "--examples", "2", "--ops", "60", "-q"]
POINTS = 40  # phases sampled, two runs each (SIGINT, SIGTERM)
DELAYS = (0.0, 0.002, 0.0, 0.01, 0.0, 0.03)


def _driver(tmp: Path, k: int, sig: int, delay: float) -> subprocess.CompletedProcess[str]:
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp / "tmp")}
    return subprocess.run(
        [sys.executable, str(DRIVER), str(k), str(int(sig)), str(delay),
         str(tmp / "calibration.json"), "--", *RUN, "--out", str(tmp / "out"),
         "--image-dir", str(tmp / "tmp")],
        capture_output=True, text=True, env=env, timeout=180, start_new_session=True,
    )  # fmt: skip


def _problems(tmp: Path, proc: subprocess.CompletedProcess[str], sig: int,
              early: bool) -> list[str]:  # fmt: skip
    out = proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    found = []
    finished = proc.returncode in (0, 1) and "interrupted" not in proc.stderr
    killed = early and sig == signal.SIGTERM and proc.returncode == -sig and not out
    if not finished and not killed:
        if proc.returncode != 128 + sig:
            found.append(f"exit {proc.returncode}, not {128 + sig}")
        if not err or not err[-1].startswith("dioconf run: interrupted"):
            found.append(f"last line {err[-1:]!r}")
    if "Traceback" in out or "Exception ignored" in out:
        found.append("a traceback")
    found += leftovers(tmp / "tmp")
    return found


@needs("ext4")
def test_interrupts_at_every_phase_of_a_kernel_run_leave_nothing_behind(tmp_path):
    cal = _driver(tmp_path / "calibration", 0, signal.SIGINT, 0.0)
    assert cal.returncode in (0, 1), cal.stdout + cal.stderr
    data = json.loads((tmp_path / "calibration" / "calibration.json").read_text())
    firsts = sorted(set(data["first"].values()))
    handlers_at = data["first"]["cleanup.signals_raise"]
    step = max(1, len(firsts) // POINTS)
    points = [*firsts[::step][:POINTS], data["calls"]]
    runs = [(k, sig, DELAYS[(2 * i + j) % len(DELAYS)])
            for i, k in enumerate(points)
            for j, sig in enumerate((signal.SIGINT, signal.SIGTERM))]  # fmt: skip

    def one(n: int) -> tuple[tuple[int, int, float], list[str], bool]:
        k, sig, delay = runs[n]
        where = tmp_path / f"run-{n}"
        proc = _driver(where, k, sig, delay)
        problems = _problems(where, proc, sig, k <= handlers_at)
        if problems:
            problems.append("output: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
        return runs[n], problems, proc.returncode == 128 + sig

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(runs))))
    failures = [f"K={k} {signal.Signals(s).name} +{d}s: {p}" for (k, s, d), p, _ in results if p]
    assert not failures, "\n".join(failures)
    interrupted = sum(i for _, _, i in results)
    assert interrupted >= len(runs) // 2, f"only {interrupted} of {len(runs)} were interrupted"
