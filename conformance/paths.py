"""Where a run writes, checked before it starts: ``--out`` (counterexamples) and
``--image-dir`` (sparse images). A directory that cannot be written, a file in its
place, a missing parent or a full filesystem is a usage error (exit 2) named in one
line, before any work, never a traceback after the whole run."""

from __future__ import annotations

import os
from pathlib import Path

OUT_SPACE = 1 << 20  # a counterexample trace and script are small
IMAGE_SPACE = 64 << 20  # what the examples write into their sparse images


class PathProblem(Exception):
    """A path a run cannot write to (the message names it and why)."""


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_out_dir(path: str | os.PathLike[str], option: str = "--out",
                  need: int = OUT_SPACE) -> None:  # fmt: skip
    """``path`` is, or can be made, a writable directory with ``need`` bytes free. It is
    not created here (a clean run writes nothing)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise PathProblem(f"{option} {p}: not a directory")
        target = p
    else:
        target = next((a for a in p.absolute().parents if a.exists()), Path("/"))
        if not target.is_dir():
            raise PathProblem(f"{option} {p}: {target} is not a directory")
        if target != p.absolute().parent:
            missing = p.absolute().parent
            raise PathProblem(f"{option} {p}: the parent directory {missing} does not exist")
    if os.statvfs(target).f_flag & os.ST_RDONLY:
        raise PathProblem(f"{option} {p}: {target} is on a read-only filesystem")
    if not os.access(target, os.W_OK | os.X_OK):
        raise PathProblem(f"{option} {p}: {target} is not writable")
    if _free(target) < need:
        raise PathProblem(f"{option} {p}: the filesystem of {target} is full "
                          f"(less than {need >> 20} MiB free)")  # fmt: skip


def check_image_dir(path: str | os.PathLike[str] | None) -> None:
    """``--image-dir``: an existing writable directory with room for the images."""
    if path is None:
        return
    p = Path(path)
    if not p.is_dir():
        raise PathProblem(f"--image-dir {p}: " + ("not a directory" if p.exists()
                                                  else "no such directory"))  # fmt: skip
    check_out_dir(p, "--image-dir", IMAGE_SPACE)
