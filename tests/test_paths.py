"""``--out`` and ``--image-dir`` are checked before any work: one line, exit 2
(issue 12, bad paths)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from dioconf.conformance.paths import PathProblem, check_image_dir, check_out_dir

from dioconf.cli import main


def test_out_may_be_missing_when_its_parent_exists(tmp_path: Path) -> None:
    check_out_dir(tmp_path / "new")  # created when a failure is written, not before
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("make, says", [
    (lambda t: (t / "f").write_text("x") and t / "f", "not a directory"),
    (lambda t: t / "missing" / "out", "does not exist"),
])  # fmt: skip
def test_bad_out_dirs(tmp_path: Path, make, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PathProblem, match=says):
        check_out_dir(make(tmp_path))


def test_bad_image_dirs(tmp_path: Path) -> None:
    with pytest.raises(PathProblem, match="no such directory"):
        check_image_dir(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(PathProblem, match="not a directory"):
        check_image_dir(tmp_path / "f")


@pytest.mark.parametrize("cmd", [["run", "--no-proofs", "--fs", "overwrite"],
                                 ["check", "examples.goodfs:factory"]])  # fmt: skip
def test_the_commands_refuse_before_any_work(
    tmp_path: Path, cmd: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*cmd, "-q", "--image-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--image-dir" in err[0] and "no such directory" in err[0]


@pytest.fixture
def small_mount(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs, read-write then read-only (root and mount(8) needed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_or_read_only_filesystem_is_refused(small_mount: Path) -> None:
    with pytest.raises(PathProblem, match="full"):
        check_image_dir(small_mount)  # 1 MiB: less than the images need
    (small_mount / "filler").write_bytes(bytes((1 << 20) - 8192))
    with pytest.raises(PathProblem, match="full"):
        check_out_dir(small_mount / "out")
    (small_mount / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    with pytest.raises(PathProblem, match="read-only"):
        check_out_dir(small_mount / "out")
