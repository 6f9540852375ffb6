"""A filesystem on a loop device, set up and always torn down again.

``kernel_fs(fs)`` creates a sparse image file, formats it, attaches it to a free loop
device and mounts it; leaving the ``with`` block (normally, on an exception, or on
SIGINT/SIGTERM once ``signals_raise()`` is active) unmounts it, detaches the loop
device, restores the loop queue settings it changed and removes the image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from attrs import frozen

from ...model.types import Geometry

FILESYSTEMS = ("ext4", "xfs", "btrfs")
MKFS = {
    # lazy init off: no ext4lazyinit bios racing with the workload
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
}
PACKAGES = {"ext4": "e2fsprogs", "xfs": "xfsprogs", "btrfs": "btrfs-progs"}
DEFAULT_IMAGE_SIZE = 512 << 20  # xfs needs at least 300 MiB


class KernelUnavailable(Exception):
    """The real-kernel backend cannot run here; the message says what is missing."""


def check_environment(fs: str) -> None:
    """Raise KernelUnavailable with one clear sentence when ``fs`` cannot be recorded."""
    if fs not in FILESYSTEMS:
        raise KernelUnavailable(
            f"unknown filesystem {fs!r}; choose one of {', '.join(FILESYSTEMS)}"
        )
    if os.geteuid() != 0:
        raise KernelUnavailable("recording needs root (to attach loop devices and mount).")
    if not Path("/dev/loop-control").exists():
        raise KernelUnavailable("no loop devices: /dev/loop-control is missing.")
    if not shutil.which("losetup"):
        raise KernelUnavailable("losetup is not installed (Debian package util-linux).")
    if not shutil.which(MKFS[fs][0]):
        raise KernelUnavailable(f"{MKFS[fs][0]} is not installed (Debian package {PACKAGES[fs]}).")
    if fs not in Path("/proc/filesystems").read_text():
        raise KernelUnavailable(f"the running kernel does not support {fs}.")
    if "tracefs" not in Path("/proc/filesystems").read_text():
        raise KernelUnavailable("the running kernel has no tracefs.")


@frozen
class MountedFs:
    fs: str
    image: Path
    loop: str  # /dev/loopN
    mnt: Path
    fs_dev: tuple[int, int]  # st_dev of the mount: what iomap events call "dev"
    loop_dev: tuple[int, int]  # the loop device: what block events call "dev"
    geometry: Geometry
    kernel: str

    @property
    def loop_name(self) -> str:
        return Path(self.loop).name

    def sysfs(self, attr: str) -> Path:
        return Path("/sys/block") / self.loop_name / "queue" / attr


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"{' '.join(cmd)} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout


def _unmount(path: Path) -> None:
    for cmd in (["umount", str(path)], ["umount", "-l", str(path)]):
        if subprocess.run(cmd, capture_output=True, check=False).returncode == 0:
            return


def _detach(loop: str) -> None:
    subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def _superblock_dev(mnt: Path) -> tuple[int, int]:
    """The superblock's s_dev, which iomap events report. stat() is not enough: on
    btrfs st_dev is a per-subvolume anonymous device."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mnt):
            major, minor = fields[2].split(":")
            return int(major), int(minor)
    raise RuntimeError(f"{mnt} is not in /proc/self/mountinfo")


def _geometry(mnt: Path, loop: str) -> Geometry:
    queue = Path("/sys/block") / Path(loop).name / "queue"
    return Geometry(
        fs_block_size=os.statvfs(mnt).f_bsize,
        logical_block_size=int((queue / "logical_block_size").read_text()),
        page_size=os.sysconf("SC_PAGE_SIZE"),
        write_cache=(queue / "write_cache").read_text().strip() == "write back",
        fua=(queue / "fua").read_text().strip() == "1",
    )


@contextlib.contextmanager
def kernel_fs(
    fs: str,
    *,
    size: int = DEFAULT_IMAGE_SIZE,
    workdir: str | os.PathLike[str] | None = None,
    write_cache: bool | None = None,
) -> Iterator[MountedFs]:
    """Mount a fresh ``fs`` on a loop device for the duration of the block."""
    check_environment(fs)
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix=f"dioconf-{fs}-", dir=workdir))
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        image = tmp / f"{fs}.img"
        with open(image, "wb") as f:
            f.truncate(size)  # sparse
        _run([*MKFS[fs], str(image)])
        loop = _run(["losetup", "--find", "--show", str(image)]).strip()
        stack.callback(_detach, loop)
        cache = Path("/sys/block") / Path(loop).name / "queue" / "write_cache"
        if write_cache is not None:
            old = cache.read_text().strip()
            stack.callback(cache.write_text, old)
            cache.write_text("write back" if write_cache else "write through")
        mnt = tmp / "mnt"
        mnt.mkdir()
        _run(["mount", loop, str(mnt)])
        stack.callback(_unmount, mnt)
        st_loop = os.stat(loop).st_rdev
        yield MountedFs(
            fs=fs,
            image=image,
            loop=loop,
            mnt=mnt,
            fs_dev=_superblock_dev(mnt),
            loop_dev=(os.major(st_loop), os.minor(st_loop)),
            geometry=_geometry(mnt, loop),
            kernel=os.uname().release,
        )


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SystemExit and SIGINT into KeyboardInterrupt (even
    when the process started with SIGINT ignored, as a shell's background job does),
    so that ``with`` blocks unwind and clean up."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
