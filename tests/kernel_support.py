"""Helpers of the real-kernel tests: skip markers, and what a test left behind.

The leftover check looks only at what the test itself created (its own TMPDIR, its
recorder's pid), and lists tracefs instances through a tracefs mount of its own in a
private mount namespace (``unshare -m``), independent of the recorder's code and of
whether tracefs is mounted on the machine.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from dioconf.impl.kernel.fixture import KernelUnavailable, check_environment

TEMP_PREFIXES = ("dioconf-ext4-", "dioconf-xfs-", "dioconf-btrfs-", "dioconf-tracefs-")


def unavailable(fs: str) -> str | None:
    try:
        check_environment(fs)
    except KernelUnavailable as exc:
        return str(exc)
    return None


def needs(fs: str) -> pytest.MarkDecorator:
    reason = unavailable(fs)
    return pytest.mark.skipif(reason is not None, reason=f"{fs}: {reason}")


def tracefs_instances() -> list[str]:
    """The names of all tracefs instances on the machine."""
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         "mount -t tracefs nodev /sys/kernel/tracing && ls -1 /sys/kernel/tracing/instances"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout.split()


def leftovers(tmp: Path, pids: tuple[int, ...] = ()) -> list[str]:
    """What a test set up and did not take down: loop devices and mounts of files under
    ``tmp`` (its own TMPDIR), tracefs instances of ``pids`` (``dioconf-PID``, default:
    this process), the fixture's temporary directories under ``tmp``."""
    found = []
    where = str(tmp)
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    found += [f"loop: {ln}" for ln in losetup.splitlines() if where in ln]
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount: {ln}" for ln in mounts.splitlines() if where in ln]
    names = {f"dioconf-{pid}" for pid in pids or (os.getpid(),)}
    found += [f"tracefs instance {n}" for n in tracefs_instances() if n in names]
    for prefix in TEMP_PREFIXES:
        found += [f"temp dir {p}" for p in tmp.glob(prefix + "*")]
    return found
