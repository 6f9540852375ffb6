"""Ctrl-C (or SIGTERM) on ``dioconf run`` and ``dioconf check``: it stops, says
"interrupted" with what finished, exits 130, never 0, and leaves no image behind
(issue 12)."""

from __future__ import annotations

import os
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


def _interrupt(args: list[str], images: Path, sig: int, tmp: Path) -> None:
    """Start ``dioconf ARGS`` with TMPDIR ``tmp``, signal it once an image exists under
    ``images``, and check how it ends: exit 130, "interrupted", no traceback, and no
    image left under ``images`` or ``tmp``."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "dioconf", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert _wait_for(lambda: any(images.iterdir())), "it never started an example"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    assert "interrupted" in err and "Traceback" not in err, err[-2000:]
    assert not list(images.iterdir()), "an image was left behind"
    assert not list(tmp.iterdir()), "a temporary file was left behind"


@pytest.mark.parametrize("jobs, sig", [(1, signal.SIGINT), (2, signal.SIGINT),
                                       (1, signal.SIGTERM)])  # fmt: skip
@pytest.mark.parametrize("where", ["image-dir", "tmp"])
def test_an_interrupted_run_exits_130_and_cleans_up(tmp_path: Path, jobs: int, sig: int,
                                                    where: str) -> None:  # fmt: skip
    """Images under --image-dir, or the device's own temporary ones under TMPDIR."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = ["run", "--profile", "nightly", "--no-proofs", "-q", "--jobs", str(jobs),
            "--out", str(tmp_path / "out")]  # fmt: skip
    images = tmp
    if where == "image-dir":
        images = tmp_path / "images"
        images.mkdir()
        args += ["--image-dir", str(images)]
    _interrupt(args, images, sig, tmp)


def test_an_interrupted_check_exits_130(tmp_path: Path) -> None:
    images, tmp = tmp_path / "images", tmp_path / "tmp"
    images.mkdir()
    tmp.mkdir()
    _interrupt(["check", "examples.goodfs:factory", "--profile", "nightly", "-q",
                "--image-dir", str(images), "--out", str(tmp_path / "out")],
               images, signal.SIGINT, tmp)  # fmt: skip


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with_kids = (task / "children").read_text().split()
        kids += [int(k) for k in with_kids]
    return kids


def test_workers_of_a_killed_run_stop_and_clean_up(tmp_path: Path) -> None:
    """SIGKILL on ``dioconf run --jobs 2`` cannot be handled by the run itself: its
    workers learn of it from the kernel (PR_SET_PDEATHSIG), stop at their next example
    and remove their images, instead of running on as orphans."""
    images, tmp = tmp_path / "images", tmp_path / "tmp"
    images.mkdir()
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "dioconf", "run", "--profile", "nightly",
                             "--no-proofs", "-q", "--jobs", "2", "--image-dir", str(images),
                             "--out", str(tmp_path / "out")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert _wait_for(lambda: any(images.iterdir())), "it never started an example"
        workers = _children(proc.pid)
        assert workers, "no worker processes"
        proc.kill()
        proc.wait()
        gone = _wait_for(lambda: not any(Path(f"/proc/{w}").exists() for w in workers))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert gone, "workers outlived their killed parent"
    assert not list(images.iterdir()), "an image was left behind"
    assert not list(tmp.iterdir()), "a temporary file was left behind"
