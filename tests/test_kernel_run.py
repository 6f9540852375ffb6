"""``dioconf run --kernel``: the suite's operations on the real kernel, here.

Needs root, loop devices and the mkfs tools (skips with the reason elsewhere). The
findings asserted are this machine's kernel's (Linux 6.18): should a kernel fix one,
its test fails and FINDINGS.md must be revisited — as it should.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dioconf.conformance.findings import FINDINGS

from dioconf.cli import main
from tests.kernel_support import leftovers, needs

ALL = [a for name in FINDINGS for a in ("--allow-finding", name)]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dioconf.cli", "run", *args],
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@needs("xfs")
def test_xfs_ci_reports_the_head_pad_corruption_with_a_reproducer(tmp_path, own_tmp):
    proc = _run("--kernel", "xfs", "--profile", "ci", "--json", "--out", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    found = {f["name"]: f for f in doc["findings"]}
    f = found["head-pad-after-dropped-fault"]
    assert f["known"] and f["fs"].startswith("xfs") and f["ops"] <= 3
    assert Path(f["repro"]).is_file()
    story = (Path(f["story"]) / "story.txt").read_text()
    assert "fault@" in story and "read zeros" in story
    assert leftovers(own_tmp) == []
    # the shrunk operations fail the same way again on a fresh filesystem
    again = _run("--replay", str(Path(f["story"]) / "ops.json"))
    assert again.returncode == 1 and "head-pad-after-dropped-fault" in again.stdout
    # and so does the generated standalone reproducer, without dioconf
    gen = subprocess.run([sys.executable, "-I", f["generated_repro"], "--loop-image"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert gen.returncode == 1 and gen.stdout.strip().splitlines()[-1].startswith("BUG")
    assert leftovers(own_tmp) == []


@needs("ext4")
def test_ext4_fast_reports_the_head_pad_corruption_past_its_other_findings(tmp_path):
    """ext4 returns EFAULT, so only the zeros where the request's own data was show it."""
    proc = _run("--kernel", "ext4", "--fast", "--json", "--out", str(tmp_path),
                "--allow-finding", "failed-write-grew-file")  # fmt: skip
    names = {f["name"] for f in json.loads(proc.stdout)["findings"]}
    assert "head-pad-after-dropped-fault" in names, proc.stdout


@pytest.mark.parametrize("fs", [pytest.param(f, marks=needs(f)) for f in ("ext4", "xfs", "btrfs")])
def test_with_the_known_findings_allowed_a_short_run_is_clean(fs, tmp_path, own_tmp):
    proc = _run("--kernel", f"{fs}:all", "--examples", "60", "--json", "--out", str(tmp_path),
                *ALL)  # fmt: skip
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["findings"]
    assert all(t["steps"] > 60 for t in doc["targets"] if not t["skipped"])
    assert leftovers(own_tmp) == []


FINDING_SCRIPTS = [(d.script_for(fs).name, fs) for d in FINDINGS.values()
                   for fs in d.filesystems if d.script_for(fs) is not None]  # fmt: skip


@pytest.mark.parametrize(("script", "fs"), FINDING_SCRIPTS)
def test_each_reproducer_prints_bug_here(script, fs, own_tmp):
    if (reason := _unavailable(fs)) is not None:
        pytest.skip(reason)
    path = Path(__file__).resolve().parent.parent / "findings" / script
    args = ["--fs", fs] if "--fs" in path.read_text() else []
    proc = subprocess.run([sys.executable, str(path), "--loop-image", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("BUG"), proc.stdout + proc.stderr
    assert leftovers(own_tmp) == []


def _unavailable(fs: str) -> str | None:
    from tests.kernel_support import unavailable

    return unavailable(fs)


def test_usage_errors_exit_2_with_one_line(capsys):
    assert main(["run", "--kernel", "zfs"]) == 2
    assert "unknown filesystem 'zfs'" in capsys.readouterr().err
    assert main(["run", "--kernel", "xfs:7k"]) == 2
    assert "unknown geometry xfs:7k" in capsys.readouterr().err
    assert main(["run", "--kernel", "xfs", "--allow-finding", "nope"]) == 2
    assert "unknown finding 'nope'" in capsys.readouterr().err
    assert main(["run", "--fast"]) == 2
    assert "--fast needs --kernel" in capsys.readouterr().err


def test_without_root_the_kernel_run_says_so(monkeypatch, capsys):
    from dioconf.impl.kernel import fixture

    monkeypatch.setattr(fixture.os, "geteuid", lambda: 1000)
    assert main(["run", "--kernel", "ext4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dioconf run: the kernel run needs root (to attach loop devices and mount)."


@needs("xfs")
def test_the_kernel_bench_measures_raw_checked_and_hypothesis(own_tmp):
    from dioconf.bench.kernel import run

    doc = run("xfs", runs=2, ops=150, examples=20)
    assert doc["operations"] == 300 and doc["checked_steps"] == 300
    assert doc["raw_ops_per_s"] > 0 and doc["checked_ops_per_s"] > 0
    assert doc["checked_over_raw"] > 0 and doc["hypothesis_steps"] > 20
    assert doc["syscalls_per_op_checked"] > doc["syscalls_per_op_raw"]  # the checks read
    assert leftovers(own_tmp) == []


def test_kernel_images_go_to_memory_unless_told(monkeypatch, tmp_path):
    from dioconf.impl.kernel import fixture

    monkeypatch.delenv("TMPDIR", raising=False)
    shm = fixture.default_image_dir()
    mounts = Path("/proc/mounts").read_text().split("\n")
    if any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts if line):
        assert shm in (Path("/dev/shm"), None)  # (None: not 4 GiB free)
    else:
        assert shm is None
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # a temporary directory chosen: kept
    assert fixture.default_image_dir() is None
    assert main(["run", "--kernel", "xfs", "--image-dir", str(tmp_path / "nope")]) == 2


@needs("xfs")
def test_hypothesis_runs_trace_examples_through_the_model(tmp_path, own_tmp):
    proc = _run("--kernel", "xfs", "--examples", "100", "--json", "--out", str(tmp_path), *ALL)
    assert proc.returncode == 0, proc.stderr
    (t,) = json.loads(proc.stdout)["targets"]
    assert t["traced"]["requests"] > 0 and t["traced"]["divergences"] == 0
    assert leftovers(own_tmp) == []
