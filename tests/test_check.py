"""``dioconf check``: the contract checker, the examples, the CLI and the pytest plugin.

The contract rules are tested on hand-picked operations (deterministic, a fraction of a
second each); the examples under the ci profile without the shrink phase (each broken
one is caught within a few derandomized examples); the CLI and the plugin end to end
in subprocesses, as a user runs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dioconf.conformance import ops as O
from dioconf.conformance.catalogue import COMBOS
from dioconf.conformance.check import FactoryError, load_factory, run_check
from dioconf.conformance.contract import RULES, Checked, checked
from dioconf.conformance.harness import ConformanceFailure, Harness
from dioconf.conformance.run import make_settings, run_combo
from dioconf.impl.examples import FILESYSTEMS
from hypothesis import Phase, settings

from dioconf.cli import main
from dioconf.fsapi import (
    F_NEW,
    BlockFs,
    BufferHead,
    assert_conforms,
)
from examples.broken_early_convert import EarlyConvertFs
from examples.broken_fua_fresh import FuaFreshFs
from examples.broken_no_dirty import NoDirtyFs
from examples.broken_no_new import NoNewFs
from examples.broken_short_mapping import ShortMappingFs
from examples.broken_size_early import SizeEarlyFs
from examples.goodfs import GoodFs
from examples.goodfs_legacy import GoodLegacyFs

ROOT = Path(__file__).resolve().parents[1]
KIB = 1024
EIO = -5
BROKEN = {  # example -> (the rule its report names, or the kinds of its consequences)
    "broken_no_new": ("[new-missing]", {"stale"}),
    "broken_early_convert": ("[early-convert]", {"stale"}),
    "broken_short_mapping": ("[not-covering]", set()),
    "broken_fua_fresh": ("[new-missing]", {"lost", "size"}),
    "broken_no_dirty": ("[dirty-missing]", {"lost", "size"}),
    "broken_size_early": ("[size-before-data]", {"size", "engine"}),
}


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # `examples.goodfs:factory` resolves from the project's root


@pytest.fixture
def harness():
    made: list[Harness] = []

    def make(fs_class: Any, engine: str = "iomap", **kw: Any) -> Harness:
        made.append(Harness("under-test", engine, size=64 << 20, fs_factory=checked(fs_class),
                            **kw))  # fmt: skip
        return made[-1]

    yield make
    for h in made:
        h.close()


def violation(h: Harness, ops: list[O.Op]) -> str:
    with pytest.raises(ConformanceFailure) as info:
        h.run(ops)
    assert info.value.kind == "contract", info.value
    return info.value.message


# -- the rules, one operation sequence each -----------------------------------------------


def test_a_good_filesystem_goes_through_every_kind_of_operation(harness):
    h = harness(GoodFs, fua=True)
    h.run([O.Fallocate(0, 0, 8 * KIB), O.DirectWrite(0, 512, 512, 1, ("DSYNC",)),
           O.DirectWrite(0, 6 * KIB, 4 * KIB, 2, ("DSYNC",)), O.BufferedWrite(1, 100, 50, 3),
           O.Fsync(1), O.Punch(0, 0, 4 * KIB), O.Truncate(0, 5000), O.Crash(),
           O.DirectRead(0, 0, 16 * KIB),
           O.DirectWrite(0, 0, 4 * KIB, 4, plan=(None, O.Pick(0, EIO)))])  # fmt: skip
    h.check_all()
    assert h.stats.crashes == 1 and h.stats.bios > 0


@pytest.mark.parametrize("fs_class,ops,rule", [
    (NoNewFs, [O.DirectWrite(0, 0, 512, 1)], "[new-missing]"),
    (ShortMappingFs, [O.DirectWrite(0, 512, 512, 1)], "[not-covering]"),
    (SizeEarlyFs, [O.DirectWrite(0, 0, 512, 1)], "[size-before-data]"),
    (EarlyConvertFs, [O.Fallocate(0, 0, 4 * KIB), O.DirectWrite(0, 0, 512, 1)],
     "[early-convert]"),
])  # fmt: skip
def test_each_broken_example_breaks_its_rule_at_the_call(harness, fs_class, ops, rule):
    msg = violation(harness(fs_class), ops)
    assert msg.startswith(f"contract violation {rule}: iomap_begin(ino=1, pos=")
    assert "returned" in msg


def test_fua_rules_apply_only_where_o_dsync_can_use_fua(harness):
    # zeroed fresh blocks without NEW/DIRTY: harmless with a write cache and no FUA ...
    harness(FuaFreshFs).run([O.DirectWrite(0, 0, 512, 1, ("DSYNC",)), O.Crash()])
    harness(NoDirtyFs).run([O.DirectWrite(0, 0, 512, 1), O.DirectWrite(0, 0, 1024, 2)])
    # ... a violation on a device that takes FUA
    fresh = harness(FuaFreshFs, fua=True)
    assert "[new-missing]" in violation(fresh, [O.DirectWrite(0, 0, 512, 1)])
    msg = violation(harness(NoDirtyFs, fua=True),
                    [O.DirectWrite(0, 0, 512, 1), O.DirectWrite(0, 0, 1024, 2)])  # fmt: skip
    assert "[dirty-missing]" in msg and "metadata is not committed" in msg  # i_size 512
    ops = [O.DirectWrite(0, 0, 512, 1), O.Fsync(0), O.DirectWrite(0, 0, 1024, 2)]
    msg = violation(harness(NoDirtyFs, fua=True), ops)
    assert "[dirty-missing]" in msg and "past i_size 512" in msg  # committed, then extended


def test_without_the_contract_check_the_oracle_finds_the_lost_dsync_write():
    with (Harness("plain", "iomap", size=64 << 20, fua=True, fs_factory=FuaFreshFs) as h,
          pytest.raises(ConformanceFailure) as info):  # fmt: skip
        h.run([O.DirectWrite(0, 0, 512, 1, ("DSYNC",)), O.Crash()])
    assert info.value.kind in ("size", "lost")  # the allocation never got committed


class _NoConvert(GoodFs):
    def end_io(self, inode, pos, size, error, flags):
        if "WRITE" in flags and not error and size:
            self.extend(inode, pos, size)
        return error


class _NoSize(GoodFs):
    def end_io(self, inode, pos, size, error, flags):
        if "UNWRITTEN" in flags and not error:
            self.convert_unwritten(inode, pos, size)
        return error


class _Swallow(GoodFs):
    def end_io(self, inode, pos, size, error, flags):
        super().end_io(inode, pos, size, error, flags)
        return 0


class _Positive(GoodFs):
    def iomap_end(self, inode, pos, length, written, flags, iomap):
        return written


class _NoSubmit(GoodFs):
    def submit_io(self, inode, bio, pos, sched):
        pass


class _HoleWrite(GoodFs):
    def iomap_begin(self, inode, pos, length, flags):
        return self.lookup(inode, pos, length)


class _BadFlag(GoodFs):
    def iomap_begin(self, inode, pos, length, flags):
        m = super().iomap_begin(inode, pos, length, flags)
        return m._replace(flags=m.flags | {"new"})


class _NewOverData(GoodFs):
    def iomap_begin(self, inode, pos, length, flags):
        m = super().iomap_begin(inode, pos, length, flags)
        return m._replace(flags=m.flags | {F_NEW}) if "WRITE" in flags else m


class _NowaitAlloc(GoodFs):
    def iomap_begin(self, inode, pos, length, flags):
        return super().iomap_begin(inode, pos, length, flags - {"NOWAIT"})


@pytest.mark.parametrize("fs_class,ops,rule", [
    (_NoConvert, [O.DirectWrite(0, 0, 4 * KIB, 1)], "[not-converted]: end_io("),
    (_NoSize, [O.DirectWrite(0, 0, 4 * KIB, 1)], "[size-not-updated]: end_io("),
    (_Swallow, [O.DirectWrite(0, 0, 4 * KIB, 1, plan=(None, O.Pick(0, EIO)))],
     "[error-swallowed]: end_io(ino=1, pos=0, size=4096, error=-5"),
    (_Positive, [O.DirectWrite(0, 0, 4 * KIB, 1)], "[bad-return]: iomap_end("),
    (_NoSubmit, [O.DirectWrite(0, 0, 4 * KIB, 1)], "[submit-missing]: submit_io("),
    (_HoleWrite, [O.DirectWrite(0, 0, 4 * KIB, 1)], "[hole-for-write]"),
    (_BadFlag, [O.DirectWrite(0, 0, 4 * KIB, 1)], "[unknown-flag]"),
    (_NewOverData, [O.DirectWrite(0, 0, 4 * KIB, 1), O.DirectWrite(0, 0, 512, 2)],
     "[new-over-data]"),
    (_NowaitAlloc, [O.DirectWrite(0, 0, 4 * KIB, 1, ("NOWAIT",))], "[alloc-under-nowait]"),
])  # fmt: skip
def test_callback_rules(harness, fs_class, ops, rule):
    h = harness(fs_class, fua=True) if fs_class is _NewOverData else harness(fs_class)
    assert rule in violation(h, ops)


class _LegacyNoNew(GoodLegacyFs):
    def get_block(self, inode, fs_block, b_size, create):
        bh = super().get_block(inode, fs_block, b_size, create)
        bh.new = False
        return bh


class _LegacyTooLong(GoodLegacyFs):
    def get_block(self, inode, fs_block, b_size, create):
        bh = super().get_block(inode, fs_block, b_size, create)
        return BufferHead(bh.mapped, bh.blocknr, b_size + 4096, bh.new) if bh.mapped else bh


@pytest.mark.parametrize("fs_class,rule", [
    (_LegacyNoNew, "[new-missing]: get_block("),
    (_LegacyTooLong, "[bh-too-long]: get_block("),
])  # fmt: skip
def test_get_block_rules(harness, fs_class, rule):
    assert rule in violation(harness(fs_class, "legacy"), [O.DirectWrite(0, 0, 512, 1)])


def test_every_rule_is_documented():
    doc = (ROOT / "docs" / "check-your-filesystem.md").read_text()
    assert [r for r in RULES if f"`{r}`" not in doc] == []


def test_the_wrapper_is_transparent():
    class Minimal:
        block_size = 4096

        def iomap_begin(self, inode, pos, length, flags): ...

    fs = Checked(Minimal(), device=None)
    assert getattr(fs, "end_io", None) is None and getattr(fs, "submit_io", None) is None
    assert fs.name == "Minimal" and fs.block_size == 4096 and fs.iomap_begin
    fs.extra = 1
    assert fs.wrapped.extra == 1


@pytest.mark.parametrize("fs,engine", COMBOS)
def test_the_reference_filesystems_keep_the_contract(fs, engine, tmp_path):
    r = run_combo(fs, engine, "ci", examples=12, out_dir=tmp_path,
                  fs_factory=checked(FILESYSTEMS[fs]))  # fmt: skip
    assert r.ok, r.failure


# -- the examples, as `dioconf check --profile ci` runs them -------------------------------


def _ci(examples: int | None = None) -> settings:
    """The ci profile without shrinking (the failure found first is reported as it is).
    A broken example runs the profile's full count (the derandomized examples change
    with the count): it stops at the first failure, a few seconds at most."""
    return settings(make_settings("ci", examples), phases=[Phase.explicit, Phase.generate])


@pytest.mark.parametrize("name", ["goodfs", "goodfs_legacy"])
def test_the_good_examples_are_clean(name, tmp_path):
    report = run_check(f"examples.{name}:factory", profile=None, hypothesis_settings=_ci(20),
                       out_dir=tmp_path)  # fmt: skip
    assert report.ok, report.describe()
    assert report.engine == ("legacy" if name.endswith("legacy") else "iomap")


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_example_is_caught_with_its_fault_named(name, tmp_path):
    report = run_check(f"examples.{name}:factory", profile=None, hypothesis_settings=_ci(),
                       out_dir=tmp_path)  # fmt: skip
    failure = report.result.failure
    assert failure is not None, f"examples.{name} was not caught"
    rule, consequences = BROKEN[name]
    # the contract check names the rule at the call that breaks it; a sequence that
    # shows the consequence first (a lost O_DSYNC i_size after a crash...) is caught too
    assert rule in failure.message or failure.kind in consequences, report.describe()
    assert report.story and failure.trace and Path(failure.repro).is_file()
    assert rule in (sys.modules[f"examples.{name}"].__doc__ or "")


# -- the command line --------------------------------------------------------------------


def _dioconf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dioconf.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_cli_check_exits_1_with_a_shrunk_reproducible_counterexample(tmp_path):
    run = _dioconf("check", "examples.broken_size_early:factory", "--json", "--out",
                   str(tmp_path))  # fmt: skip
    assert run.returncode == 1, run.stderr
    doc = json.loads(run.stdout)
    (fs,) = doc["filesystems"]
    f = fs["failure"]
    assert not doc["ok"] and f["kind"] == "contract" and "[size-before-data]" in f["message"]
    assert f["operations"] and f["steps"] == len(f["operations"])
    repro = subprocess.run([sys.executable, f["repro"]], cwd="/", capture_output=True, text=True)
    assert repro.returncode == 1 and "[size-before-data]" in repro.stdout, repro.stderr
    replay = _dioconf("replay", f["trace"])
    assert replay.returncode in (0, 1) and "INVALID" not in replay.stderr


def test_cli_check_exits_0_on_a_good_filesystem(tmp_path, capsys):
    assert main(["check", "examples.goodfs:factory", "--examples", "8", "-q",
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "examples.goodfs:factory" in out and "1 passed, 0 failed" in out


BAD_FACTORIES = """
from dioconf.fsapi import BlockFs

class NoCallbacks(BlockFs):
    pass

class Raises(BlockFs):
    def __init__(self, device):
        raise RuntimeError("disk on fire")

class SmallBlocks(BlockFs):
    def __init__(self, device):
        super().__init__(device, 1024)

    def iomap_begin(self, inode, pos, length, flags): ...

class Bare:
    block_size = 4096

    def iomap_begin(self, inode, pos, length, flags): ...

def bare(device):
    return Bare()

NOT_CALLABLE = 3
"""


@pytest.mark.parametrize("spec,message", [
    ("examples.nope:factory", "cannot import examples.nope"),
    ("examples.goodfs:nope", "has no attribute 'nope'"),
    ("examples.goodfs", "expected pkg.module:factory"),
    ("badfs:NOT_CALLABLE", "is a int, not a callable"),
    ("badfs:NoCallbacks", "neither iomap_begin"),
    ("badfs:Raises", "factory(device) raised RuntimeError: disk on fire"),
    ("badfs:SmallBlocks", "block_size is 1024"),
    ("badfs:bare", "lacks create, file, extent_at"),
])  # fmt: skip
def test_cli_check_exits_2_for_a_factory_it_cannot_use(spec, message, tmp_path, capsys,
                                                       monkeypatch):  # fmt: skip
    (tmp_path / "badfs.py").write_text(BAD_FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", spec, "-q", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dioconf check: {spec}") and message in err, err


def test_every_unusable_factory_is_reported_before_anything_runs(tmp_path, capsys,
                                                                 monkeypatch):  # fmt: skip
    """A good factory and two bad ones: nothing runs, both bad ones are named (on stderr,
    and as JSON with --json), exit 2."""
    (tmp_path / "badfs.py").write_text(BAD_FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    specs = ["examples.goodfs:factory", "badfs:Raises", "examples.nope:factory"]
    assert main(["check", *specs, "--json", "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["ok"] is False and set(doc["errors"]) == set(specs[1:])
    assert "disk on fire" in doc["errors"]["badfs:Raises"] and err.count("dioconf check:") == 2
    assert not (tmp_path / "out").exists()


def test_a_factory_is_loaded_from_a_file_path_too(tmp_path):
    (tmp_path / "myfs.py").write_text("from examples.goodfs import factory\n")
    assert load_factory(f"{tmp_path / 'myfs.py'}:factory").__name__ == "factory"
    with pytest.raises(FactoryError, match="no file"):
        load_factory(f"{tmp_path / 'missing.py'}:factory")


# -- as a library and from pytest ----------------------------------------------------------


def test_assert_conforms_raises_with_the_report(tmp_path):
    assert assert_conforms(GoodFs, settings=_ci(5), out_dir=str(tmp_path)).ok
    with pytest.raises(AssertionError, match=r"(?s)FAIL, contract violation.*\[not-covering\]"):
        assert_conforms("examples.broken_short_mapping:factory", settings=_ci(),
                        out_dir=str(tmp_path))  # fmt: skip


def test_a_custom_filesystem_without_the_base_class_is_checked(tmp_path):
    class Wrapped:  # everything by delegation: only the protocol, no BlockFs in its type
        def __init__(self, device):
            self._fs = GoodFs(device)

        def __getattr__(self, name):
            return getattr(self._fs, name)

    assert not isinstance(Wrapped, type(BlockFs)) or not issubclass(Wrapped, BlockFs)
    report = run_check(Wrapped, profile=None, hypothesis_settings=_ci(5), out_dir=tmp_path)
    assert report.ok and report.spec.endswith("Wrapped")


PLUGIN_CONFTEST = """
from hypothesis import Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

# a database and random generation of its own: under CI=true Hypothesis's default
# profile (the parent) has neither
settings.register_profile("quick", max_examples=20, stateful_step_count=30,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
                          derandomize=False)
"""
PLUGIN_TEST = """
from dioconf.fsapi import assert_conforms

def test_my_fs_conforms():
    assert_conforms("examples.goodfs:factory")

def test_with_the_fixture(dioconf_check):
    assert dioconf_check().ok
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: the examples package, a conftest with a Hypothesis profile."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "conftest.py").write_text(PLUGIN_CONFTEST)
    return tmp_path


def _pytest(project: Path, *args: str, seed: bool = True) -> subprocess.CompletedProcess[str]:
    """pytest in the project, under its random "quick" profile, with a fixed seed unless
    ``seed`` is false (a random run of a good filesystem could find more than these tests
    are about; without a seed, Hypothesis keeps what it finds in its database)."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("PYTEST_XDIST_WORKER", None)
    args = ("--hypothesis-seed=1", *args) if seed else args
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--hypothesis-profile=quick", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_pytest_plugin_checks_the_dioconf_fs_factory(project):
    good = _pytest(project, "--dioconf-fs=examples.goodfs:factory")
    assert good.returncode == 0 and "1 passed" in good.stdout, good.stdout + good.stderr
    bad = _pytest(project, "--dioconf-fs=examples.broken_no_new:factory", seed=False)
    assert bad.returncode == 1 and "[new-missing]" in bad.stdout, bad.stdout + bad.stderr
    assert "dioconf-check[examples.broken_no_new:factory]" in bad.stdout
    assert any((project / ".hypothesis" / "examples").iterdir())  # the profile's database


def test_pytest_plugin_fixture_and_one_line_test(project):
    (project / "test_myfs.py").write_text(PLUGIN_TEST)
    run = _pytest(project, "test_myfs.py", "--dioconf-fs=examples.goodfs:factory")
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout + run.stderr
