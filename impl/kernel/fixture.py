"""A filesystem on a loop device, set up and always torn down again.

``kernel_fs(fs)`` creates a sparse image file, formats it, attaches it to a free loop
device and mounts it; leaving the ``with`` block (normally, on an exception, or on
SIGINT/SIGTERM once ``cleanup.signals_raise()`` is active) unmounts it, detaches the loop
device, restores the loop queue settings it changed and removes the image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from attrs import frozen

from ...model.types import Geometry
from .cleanup import check_helper, critical, run_helper, undo_stack
from .fusedisk import FUSE_DEV, FuseDisk

FILESYSTEMS = ("ext4", "xfs", "btrfs")
MKFS = {
    # lazy init off: no ext4lazyinit bios racing with the workload
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
}
PACKAGES = {"ext4": "e2fsprogs", "xfs": "xfsprogs", "btrfs": "btrfs-progs"}
DEFAULT_IMAGE_SIZE = 512 << 20  # xfs needs at least 300 MiB
SHM = Path("/dev/shm")
SHM_ROOM = 4 << 30  # free space /dev/shm must have to hold the images by default


def default_image_dir() -> Path | None:
    """Where kernel images go unless told: the system's temporary directory (None) when
    ``TMPDIR`` names one, else ``/dev/shm`` when it is a tmpfs with room (a loop device
    over a file in memory, as fstests runs on brd or zram: the kernel's code paths are
    the same, the backing file's I/O costs nothing), else the temporary directory."""
    if os.environ.get("TMPDIR"):
        return None
    try:
        fstype = next((line.split()[2] for line in Path("/proc/mounts").read_text().splitlines()
                       if line.split()[1] == str(SHM)), "")  # fmt: skip
        st = os.statvfs(SHM)
    except OSError:
        return None
    if fstype != "tmpfs" or not os.access(SHM, os.W_OK) or st.f_bavail * st.f_frsize < SHM_ROOM:
        return None
    return SHM


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
    # the loop device's backing file served through FUSE, with injectable I/O errors
    disk: FuseDisk | None = None

    @property
    def loop_name(self) -> str:
        return Path(self.loop).name

    def sysfs(self, attr: str) -> Path:
        return Path("/sys/block") / self.loop_name / "queue" / attr


def _run(cmd: list[str]) -> str:
    return check_helper(cmd)


def _mounted(path: Path) -> bool:
    target = str(path)
    return any(
        line.split()[4] == target for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


def unmount(path: Path) -> None:
    """Unmount whatever is mounted on ``path`` (nothing: done). Raises when it stays."""
    if not _mounted(path):
        return
    proc = run_helper(["umount", str(path)])
    if _mounted(path):
        raise RuntimeError(proc.stderr.strip() or f"{path} is still mounted")


def remount(m: MountedFs) -> None:
    """Unmount ``m`` and mount it again (its files' descriptors must be closed): the
    page cache starts empty and everything comes from the disk. Should mounting fail,
    the mount point is left empty; ``kernel_fs`` still detaches and removes the rest."""
    with critical():
        if not _remount_syscalls(m):  # (the helpers say why, where the syscalls fail)
            unmount(m.mnt)
            _run(["mount", m.loop, str(m.mnt)])


def _remount_syscalls(m: MountedFs) -> bool:
    """umount2(2) and mount(2) directly: no helper processes (a remount is an operation
    of the conformance runs, and a helper's start-up costs more than the remount)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    target = str(m.mnt).encode()
    if libc.umount2(target, 0):
        return False
    return not libc.mount(m.loop.encode(), target, m.fs.encode(), 0, None)


def _unmount_lazily(path: Path) -> None:
    """The last resort, once plain unmounting failed: detach the mount from the tree."""
    if _mounted(path):
        run_helper(["umount", "-l", str(path)])
    if _mounted(path):
        raise RuntimeError(f"{path} is still mounted")


def _loops_of(image: Path) -> list[str]:
    """The loop devices backed by ``image`` (``losetup -j``)."""
    out = run_helper(["losetup", "-j", str(image)]).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]


def _detach_image(image: Path) -> None:
    """Detach every loop device backed by ``image``: also one a ``losetup`` that was
    interrupted attached without saying which."""
    for loop in _loops_of(image):
        run_helper(["losetup", "-d", loop])
    left = _loops_of(image)
    if left:
        raise RuntimeError(f"{', '.join(left)} still attached to {image}")


def _remove_tree(tmp: Path) -> None:
    """Remove the temporary directory, never through a mount still on it."""
    for sub in ("mnt", "fuse"):
        if _mounted(tmp / sub):
            raise RuntimeError(f"{tmp / sub} is still mounted; not removing {tmp}")
    shutil.rmtree(tmp, ignore_errors=True)
    if tmp.exists():
        raise RuntimeError(f"{tmp} could not be removed")


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
    fuse: bool = False,
    mkfs_options: tuple[str, ...] = (),
    sector_size: int | None = None,
) -> Iterator[MountedFs]:
    """Mount a fresh ``fs`` on a loop device for the duration of the block; ``fuse``:
    the loop device's backing file is the image served through FUSE (``m.disk``, whose
    ``fail()`` makes chosen ranges answer an errno). ``mkfs_options``: added to the
    mkfs command (a block size); ``sector_size``: the loop device's logical block size
    (``losetup --sector-size``)."""
    check_environment(fs)
    if fuse and not FUSE_DEV.exists():
        raise KernelUnavailable(f"no FUSE: {FUSE_DEV} is missing.")
    with undo_stack() as undo:
        tmp = undo.acquire(
            f"remove the temporary directory of {fs}",
            lambda: Path(tempfile.mkdtemp(prefix=f"dioconf-{fs}-", dir=workdir)),
            _remove_tree,
        )
        image = tmp / f"{fs}.img"
        with open(image, "wb") as f:
            f.truncate(size)  # sparse
        _run([*MKFS[fs], *mkfs_options, str(image)])
        backing, disk = image, None
        if fuse:
            fmnt = tmp / "fuse"
            fmnt.mkdir()
            disk = FuseDisk(image, fmnt)
            undo.push("stop the FUSE disk server", disk.stop)
            undo.push(f"unmount {fmnt} (lazily)", lambda: _unmount_lazily(fmnt))
            undo.push(f"unmount {fmnt}", lambda: unmount(fmnt))
            with critical():
                disk.start()
            backing = disk.path
        # released by identity: also a device attached by an interrupted losetup
        undo.push(f"detach the loop device of {backing}", lambda: _detach_image(backing))
        with critical():
            sector = ["--sector-size", str(sector_size)] if sector_size else []
            loop = _run(["losetup", "--find", "--show", *sector, str(backing)]).strip()
        cache = Path("/sys/block") / Path(loop).name / "queue" / "write_cache"
        if write_cache is not None:
            undo.acquire(f"restore {cache}", lambda: cache.read_text().strip(), cache.write_text)
            cache.write_text("write back" if write_cache else "write through")
        mnt = tmp / "mnt"
        mnt.mkdir()
        undo.push(f"unmount {mnt} (lazily)", lambda: _unmount_lazily(mnt))
        undo.push(f"unmount {mnt}", lambda: unmount(mnt))
        with critical():
            _run(["mount", loop, str(mnt)])
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
            disk=disk,
        )
