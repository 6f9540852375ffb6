"""fio, a real direct-I/O client, recorded with ``dioconf record -- fio ...`` on each
filesystem (btrfs: a NOCOW directory, or btrfs falls back to buffered I/O): async
(libaio, io_uring) and concurrent (two jobs on one file) random writes that extend the
file, replayed with no divergence. Root, loop devices, tracefs and fio are needed; CI
installs fio."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel_support import needs

FIO = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
JOBS = {
    "libaio": "--ioengine=libaio --iodepth=16 --rw=randwrite --bs=4k --numjobs=2",
    "io_uring": "--ioengine=io_uring --iodepth=16 --rw=randrw --bs=4k",
}


@FIO
@pytest.mark.parametrize(
    "fs", [pytest.param(fs, marks=needs(fs)) for fs in ("ext4", "xfs", "btrfs")]
)
@pytest.mark.parametrize("job", sorted(JOBS))
def test_fio_replays_clean(fs: str, job: str, tmp_path: Path) -> None:
    nocow = "chattr +C $DIOCONF_MNT/d && " if fs == "btrfs" else ""
    cmd = (
        f"mkdir $DIOCONF_MNT/d && {nocow}fio --name=j --directory=$DIOCONF_MNT/d "
        f"--filename=f --size=1m --direct=1 --fallocate=none {JOBS[job]} --output=/dev/null"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dioconf", "record", "--fs", fs, "--out", str(tmp_path),
         "--name", f"fio-{job}", "--", "sh", "-c", cmd],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS" in proc.stdout and "DIVERGE" not in proc.stdout, proc.stdout
    requests = int(proc.stdout.split(": ", 1)[1].split(" requests")[0])
    assert requests >= 256, proc.stdout  # 1 MiB in 4 KiB requests, each one recorded
