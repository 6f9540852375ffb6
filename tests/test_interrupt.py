"""Ctrl-C (or SIGTERM) on ``dioconf run``: it stops, says "interrupted" with what
finished, exits 130, never 0, and leaves no image behind (issue 12)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _wait_for(cond, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll for a condition (the run's first image) rather than sleep a fixed time."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("jobs, sig", [(1, signal.SIGINT), (2, signal.SIGINT),
                                       (1, signal.SIGTERM)])  # fmt: skip
def test_an_interrupted_run_exits_130_and_cleans_up(tmp_path: Path, jobs: int, sig: int) -> None:
    images = tmp_path / "images"
    images.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dioconf", "run", "--profile", "nightly", "--no-proofs", "-q",
         "--jobs", str(jobs), "--image-dir", str(images), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: any(images.iterdir())), "the run never started an example"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "Traceback" not in err, err[-2000:]
    assert not list(images.iterdir()), "an image was left behind"


def test_an_interrupted_check_exits_130(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dioconf", "check", "examples.goodfs:factory", "--profile",
         "nightly", "-q", "--image-dir", str(images), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: any(images.iterdir())), "the check never started an example"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "Traceback" not in err, err[-2000:]
    assert not list(images.iterdir()), "an image was left behind"
