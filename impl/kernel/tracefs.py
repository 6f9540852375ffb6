"""Recording iomap and block events with a private tracefs instance.

A tracefs *instance* (``instances/dioconf-PID``) has its own ring buffer and event
switches, so recording never touches the global tracing settings; leaving the block
disables the events and removes the instance (and unmounts tracefs if it was mounted
here).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .fixture import KernelUnavailable, MountedFs

IOMAP_EVENTS = (
    "iomap_dio_rw_begin",
    "iomap_iter",
    "iomap_iter_dstmap",
    "iomap_dio_invalidate_fail",
    "iomap_dio_rw_queued",
    "iomap_dio_complete",
)
BLOCK_EVENTS = ("block_bio_queue", "block_bio_complete")
BUFFER_KB = 16384  # per CPU


def kernel_dev(dev: tuple[int, int]) -> int:
    """dev_t as the kernel stores it in trace records (MKDEV: major << 20 | minor)."""
    return dev[0] << 20 | dev[1]


def _mounted_tracefs() -> Path | None:
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "tracefs":
            return Path(fields[1])
    return None


@contextlib.contextmanager
def tracefs_root() -> Iterator[Path]:
    """The tracefs mount point, mounting tracefs for the block if needed."""
    root = _mounted_tracefs()
    if root is not None:
        yield root
        return
    mnt = Path(tempfile.mkdtemp(prefix="dioconf-tracefs-"))
    try:
        proc = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", str(mnt)], capture_output=True, text=True
        )
        if proc.returncode:
            raise KernelUnavailable(f"cannot mount tracefs: {proc.stderr.strip()}")
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            mnt.rmdir()


class TraceSession:
    """An enabled tracefs instance; ``read()`` returns what it recorded so far."""

    def __init__(self, inst: Path) -> None:
        self.inst = inst

    def mark(self, text: str) -> None:
        """A line in the recording, in the writer's context (trace_marker)."""
        (self.inst / "trace_marker").write_text(text)

    def clear(self) -> None:
        (self.inst / "trace").write_text("")

    def lost_events(self) -> int:
        lost = 0
        for stats in (self.inst / "per_cpu").glob("cpu*/stats"):
            m = re.search(r"^overrun: (\d+)", stats.read_text(), re.M)
            lost += int(m.group(1)) if m else 0
        return lost

    def read(self) -> str:
        """The recorded text; raises if the ring buffer dropped events."""
        lost = self.lost_events()
        if lost:
            raise RuntimeError(
                f"the trace buffer overflowed and lost {lost} events; record a shorter workload"
            )
        return (self.inst / "trace").read_text()


def _enable(inst: Path, system: str, event: str, filt: str) -> None:
    d = inst / "events" / system / event
    if not d.is_dir():
        raise KernelUnavailable(f"the kernel has no {system}:{event} tracepoint.")
    (d / "filter").write_text(filt)
    (d / "enable").write_text("1")


@contextlib.contextmanager
def trace_session(m: MountedFs) -> Iterator[TraceSession]:
    """Record the iomap events of ``m``'s filesystem and the block events of its loop
    device into a private instance for the duration of the block."""
    with tracefs_root() as root:
        inst = root / "instances" / f"dioconf-{os.getpid()}"
        try:
            inst.mkdir()
        except OSError as exc:
            raise KernelUnavailable(f"cannot create a tracefs instance: {exc}") from exc
        try:
            (inst / "tracing_on").write_text("0")
            (inst / "buffer_size_kb").write_text(str(BUFFER_KB))
            for ev in IOMAP_EVENTS:
                _enable(inst, "iomap", ev, f"dev == {kernel_dev(m.fs_dev)}")
            for ev in BLOCK_EVENTS:
                _enable(inst, "block", ev, f"dev == {kernel_dev(m.loop_dev)}")
            (inst / "trace").write_text("")
            (inst / "tracing_on").write_text("1")
            yield TraceSession(inst)
        finally:
            with contextlib.suppress(OSError):
                (inst / "tracing_on").write_text("0")
            with contextlib.suppress(OSError):
                (inst / "events" / "enable").write_text("0")
            with contextlib.suppress(OSError):
                inst.rmdir()
