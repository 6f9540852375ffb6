"""The recorder's tracefs: a private mount nobody else can touch, instances of dead
recorders removed, and the ring buffer read while the workload runs (root, loop
devices and tracefs; skipped with the reason elsewhere)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dioconf.impl.kernel.record import random_scenario, record_command, record_scenario
from dioconf.traces.replay import replay_file

from tests.kernel_support import leftovers, needs, tracefs_instances


@needs("ext4")
def test_a_tracefs_mount_of_someone_else_is_not_used_and_may_go_away(tmp_path, own_tmp):
    """Another tool's tracefs mount is unmounted in the middle of the recording: the
    recording, on its own private mount, does not notice."""
    other = tmp_path / "other-tracefs"
    other.mkdir()
    subprocess.run(["mount", "-t", "tracefs", "nodev", str(other)], check=True)
    cmd = (
        "dd if=/dev/zero of=$DIOCONF_MNT/f bs=4k count=4 oflag=direct status=none && "
        f"umount {other} && "
        "dd if=$DIOCONF_MNT/f of=/dev/null bs=4k iflag=direct status=none"
    )
    try:
        rec = record_command("ext4", ["sh", "-c", cmd], tmp_path / "out")
    finally:
        subprocess.run(["umount", str(other)], capture_output=True)
    assert not rec.failed_checks, rec.failed_checks
    assert rec.requests == 9  # four 4 KiB writes, four reads and the one at EOF
    assert all(replay_file(str(p)).ok for p in rec.traces)
    assert leftovers(own_tmp) == []


@needs("ext4")
def test_two_recordings_at_once_do_not_disturb_each_other(tmp_path, own_tmp):
    def start(seed: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "dioconf", "record", "--fs", "ext4", "--random", str(seed),
             "--ops", "40", "--out", str(tmp_path / f"out{seed}")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    procs = [start(1), start(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
        assert out.strip().splitlines()[-1].endswith("1 clean, 0 not"), out
    assert leftovers(own_tmp, tuple(p.pid for p in procs)) == []


@needs("ext4")
def test_the_instance_of_a_killed_recorder_is_removed_by_the_next(tmp_path, own_tmp):
    """A recorder killed with SIGKILL cannot clean up; its private mount goes with it,
    its tracefs instance stays: the next recording removes it (the pid is dead)."""
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True)
    pid = int(dead.stdout)
    assert not Path(f"/proc/{pid}").exists()
    name = f"dioconf-{pid}"
    tracing = "/sys/kernel/tracing"
    make = f"mount -t tracefs nodev {tracing} && mkdir {tracing}/instances/{name}"
    subprocess.run(["unshare", "-m", "sh", "-c", make], check=True)
    rec = record_scenario("ext4", random_scenario(3, 5), tmp_path / "out")
    assert not rec.failed_checks
    assert name not in tracefs_instances()


@needs("ext4")
def test_a_recording_larger_than_the_ring_buffer_loses_nothing(tmp_path, own_tmp):
    """3,000 requests (about 20,000 events, several hundred KiB) through a 64 KiB
    per-CPU ring buffer: read while the workload runs, nothing is lost (before, the
    buffer was read at the end and the whole recording refused)."""
    ops = 3000
    rec = record_scenario("ext4", random_scenario(5, ops), tmp_path / "out", buffer_kb=64)
    assert not rec.failed_checks
    assert rec.events * 32 > 2 * 64 * 1024 * 2  # far more than both CPUs' buffers hold
    assert (rec.lost, rec.unchecked) == (0, 0)
    assert rec.requests == ops
    assert all(replay_file(str(p)).ok for p in rec.traces)
    assert leftovers(own_tmp) == []
