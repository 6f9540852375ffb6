"""Recording iomap and block events with a private tracefs instance on a private mount.

The tracefs mount is our own and visible to nobody: a *detached* mount made with the new
mount API (``fsopen``/``fsmount``), reached through its file descriptor
(``/proc/self/fd/N``), which the kernel unmounts when the descriptor closes, also when
the process is killed. No other program can unmount it under us, and we never touch a
tracefs mount of somebody else's. (Where the mount API is missing, tracefs is mounted on a
temporary directory of our own instead.)

A tracefs *instance* (``instances/dioconf-PID``) has its own ring buffer and event
switches, so recording never touches the global tracing settings. Its ``trace_pipe`` is
read by a thread while the workload runs and spooled to a file, so a long recording does
not overflow the ring buffer; events lost anyway are counted (``[LOST n EVENTS]``).
Leaving the block stops the reader, disables the events and removes the instance.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import select
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .cleanup import Undo, check_helper, critical, releasing, undo_stack
from .fixture import KernelUnavailable, MountedFs, unmount
from .parse import SYSCALLS, WORK_FILTER, XFS_END_IO_EVENTS

IOMAP_EVENTS = (
    "iomap_dio_rw_begin",
    "iomap_iter",
    "iomap_iter_dstmap",
    "iomap_dio_invalidate_fail",
    "iomap_dio_rw_queued",
    "iomap_dio_complete",
)
# block_bio_complete fires only for remapped bios (BIO_TRACE_COMPLETION), never for a
# loop device's: bio completions are seen as the completion of their block requests
BLOCK_EVENTS = ("block_bio_queue", "block_rq_complete")
# per CPU: 256 MiB in all, between 16 and 64 MiB a CPU (a burst the reader cannot
# follow, e.g. while the machine is busy, fills it before events are lost)
BUFFER_KB = max(16 << 10, min(64 << 10, (256 << 10) // (os.cpu_count() or 1)))
READER_NICE = -10  # the reader thread runs before the workload it records


def kernel_dev(dev: tuple[int, int]) -> int:
    """dev_t as the kernel stores it in trace records (MKDEV: major << 20 | minor)."""
    return dev[0] << 20 | dev[1]


# syscall numbers of the new mount API: the same on every architecture (since 5.2)
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432
FSOPEN_CLOEXEC, FSCONFIG_CMD_CREATE, FSMOUNT_CLOEXEC = 1, 6, 1


def _detached_tracefs() -> int:
    """A file descriptor of a new tracefs mount attached nowhere (OSError if the kernel
    cannot: no mount API, no permission)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def call(*args: object) -> int:
        ret = int(libc.syscall(*args))
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return ret

    fsfd = call(SYS_FSOPEN, b"tracefs", FSOPEN_CLOEXEC)
    try:
        call(SYS_FSCONFIG, fsfd, FSCONFIG_CMD_CREATE, None, None, 0)
        return call(SYS_FSMOUNT, fsfd, FSMOUNT_CLOEXEC, 0)
    finally:
        os.close(fsfd)


def _unmount_dir(mnt: Path) -> None:
    unmount(mnt)
    with contextlib.suppress(FileNotFoundError):
        mnt.rmdir()


def private_root(undo: Undo) -> Path:
    """The root of a tracefs mount of our own, released by ``undo``."""
    try:
        fd = undo.acquire("close the private tracefs mount", _detached_tracefs, os.close)
        return Path(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    mnt = undo.acquire(
        "remove the private tracefs mount point",
        lambda: Path(tempfile.mkdtemp(prefix="dioconf-tracefs-")),
        _unmount_dir,
    )
    try:
        check_helper(["mount", "-t", "tracefs", "nodev", str(mnt)])
    except RuntimeError as exc:
        raise KernelUnavailable(f"cannot mount tracefs: {exc}") from exc
    return mnt


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def remove_stale_instances(root: Path) -> list[str]:
    """Remove the instances of recorders that died without cleaning up (killed with
    SIGKILL); the names removed."""
    removed = []
    for inst in (root / "instances").iterdir():
        m = re.fullmatch(r"dioconf-(\d+)", inst.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                _remove_instance(inst)
                removed.append(inst.name)
    return removed


def _remove_instance(inst: Path) -> None:
    """Disable and remove ``inst``; nothing to do when it is gone."""
    if not inst.exists():
        return
    with contextlib.suppress(OSError):
        (inst / "tracing_on").write_text("0")
    with contextlib.suppress(OSError):
        (inst / "events" / "enable").write_text("0")
    inst.rmdir()


class TraceSession:
    """An enabled tracefs instance whose ``trace_pipe`` a thread spools to a file."""

    POLL_MS = 100

    def __init__(self, inst: Path, spool: Path) -> None:
        self.inst = inst
        self.spool = spool
        self.work_traced = False  # iomap_dio_complete_work's starts are recorded
        self.syscalls_traced = False  # the read/write system calls are recorded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def mark(self, text: str) -> None:
        """A line in the recording, in the writer's context (trace_marker)."""
        (self.inst / "trace_marker").write_text(text)

    def start(self) -> None:
        fd = os.open(self.inst / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._pump, args=(fd,), daemon=True,
                                        name="dioconf-trace-reader")  # fmt: skip
        self._thread.start()

    def _pump(self, fd: int) -> None:
        with contextlib.suppress(OSError):  # (needs root, as recording does)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), READER_NICE)
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        try:
            with open(self.spool, "ab") as out:
                while True:
                    poll.poll(self.POLL_MS)
                    drained = self._drain(fd, out)
                    if drained and self._stop.is_set():
                        return
        except BaseException as exc:  # reported by stop(), in the main thread
            self._error = exc
        finally:
            os.close(fd)

    def _drain(self, fd: int, out: object) -> bool:
        """Copy what is readable now; True once the pipe is empty."""
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return True
            out.write(chunk)  # type: ignore[attr-defined]

    @releasing  # an interrupted Thread.join can mark a running thread stopped (3.11)
    def stop(self) -> None:
        """Stop tracing, read what is left and end the reader (idempotent)."""
        with contextlib.suppress(OSError):
            (self.inst / "tracing_on").write_text("0")
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"reading the trace failed: {error}") from error

    def lost_events(self) -> int:
        """Events the ring buffer overwrote before they were read (per-CPU ``overrun``)."""
        lost = 0
        for stats in (self.inst / "per_cpu").glob("cpu*/stats"):
            m = re.search(r"^overrun: (\d+)", stats.read_text(), re.M)
            lost += int(m.group(1)) if m else 0
        return lost

    def finish(self) -> tuple[Path, int]:
        """Stop; the spooled text and the number of events lost."""
        self.stop()
        return self.spool, self.lost_events()


def _enable(inst: Path, system: str, event: str, filt: str) -> None:
    d = inst / "events" / system / event
    if not d.is_dir():
        raise KernelUnavailable(f"the kernel has no {system}:{event} tracepoint.")
    if filt:
        (d / "filter").write_text(filt)
    (d / "enable").write_text("1")


def _enable_all(inst: Path, events: list[tuple[str, str, str]]) -> bool:
    """Enable optional events: all of them (True) or, where one is missing or refuses
    its filter, none (False)."""
    done: list[Path] = []
    try:
        for system, event, filt in events:
            _enable(inst, system, event, filt)
            done.append(inst / "events" / system / event)
    except (OSError, KernelUnavailable):
        for d in done:
            with contextlib.suppress(OSError):
                (d / "enable").write_text("0")
        return False
    return True


@contextlib.contextmanager
def trace_session(
    m: MountedFs, spool: Path, *, buffer_kb: int = BUFFER_KB
) -> Iterator[TraceSession]:
    """Record the iomap events of ``m``'s filesystem and the block events of its loop
    device into a private instance for the duration of the block; the text goes to
    ``spool`` as it comes."""
    with undo_stack() as undo:
        root = private_root(undo)
        remove_stale_instances(root)
        inst = root / "instances" / f"dioconf-{os.getpid()}"
        # released by name, so registered before it exists
        undo.push(f"remove the tracefs instance {inst.name}", lambda: _remove_instance(inst))
        try:
            inst.mkdir()
        except OSError as exc:
            raise KernelUnavailable(f"cannot create a tracefs instance: {exc}") from exc
        (inst / "tracing_on").write_text("0")
        # events of different CPUs are ordered by time: the default "local" clock is not
        # synchronised across CPUs, "mono" (ktime_get_mono_fast_ns) is
        with contextlib.suppress(OSError):
            (inst / "trace_clock").write_text("mono")
        (inst / "buffer_size_kb").write_text(str(buffer_kb))
        for ev in IOMAP_EVENTS:
            _enable(inst, "iomap", ev, f"dev == {kernel_dev(m.fs_dev)}")
        for ev in BLOCK_EVENTS:
            _enable(inst, "block", ev, f"dev == {kernel_dev(m.loop_dev)}")
        if m.fs == "xfs":  # which ->end_io work a direct write's completion did
            for ev in XFS_END_IO_EVENTS:
                _enable(inst, "xfs", ev, f"dev == {kernel_dev(m.fs_dev)}")
        # the read and write system calls around the requests (``syscall`` lines), and
        # writeback errors, which fail a direct read's kiocb_write_and_wait: optional
        # (a kernel without CONFIG_FTRACE_SYSCALLS records the rest)
        syscalls_traced = _enable_all(
            inst, [("syscalls", f"sys_{side}_{call}", "")
                   for call in SYSCALLS for side in ("enter", "exit")])  # fmt: skip
        _enable_all(inst, [("filemap", "filemap_set_wb_err", f"s_dev == {kernel_dev(m.fs_dev)}")])
        # which completions ran from iomap's workqueue (``ctx``): every kernel has the
        # events, only newer ones filter a function pointer by name (without the filter
        # the whole machine's work items would flood the buffer: no ctx then)
        work_traced = _enable_all(
            inst, [("workqueue", f"workqueue_execute_{side}", WORK_FILTER)
                   for side in ("start", "end")])  # fmt: skip
        (inst / "trace").write_text("")
        session = TraceSession(inst, spool)
        session.work_traced = work_traced
        session.syscalls_traced = syscalls_traced
        with critical():
            session.start()
            undo.push("stop the trace reader", session.stop)
        (inst / "tracing_on").write_text("1")
        yield session
