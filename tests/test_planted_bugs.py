"""Planted engine bugs (`conformance.bugs`): well formed, planting restores the engine,
the harness catches each bug's short story, and the quality report's rows. (The ci
profile with each bug planted is tests/test_quality.py; the full report, shrinking
included, is `dioconf bench quality`: it takes minutes.)
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import pytest
from dioconf.conformance.bugs import (
    BUGS,
    ENGINE_MODULES,
    STORIES,
    UNREACHED,
    PlantError,
    filesystems,
    planted,
)
from dioconf.conformance.catalogue import COMBOS
from dioconf.conformance.harness import ConformanceFailure, Harness


def _bindings() -> dict[tuple[str, str], Any]:
    """Every callable of the loaded dioconf modules, and every attribute of their
    classes, as bound now."""
    seen: dict[tuple[str, str], Any] = {}
    for modname, mod in list(sys.modules.items()):
        if not modname.startswith("dioconf.") or mod is None:
            continue
        for attr, value in vars(mod).items():
            if callable(value):
                seen[(modname, attr)] = value
            if isinstance(value, type) and value.__module__ == modname:
                for cattr, cvalue in vars(value).items():
                    seen[(f"{modname}.{attr}", cattr)] = cvalue
    return seen


def test_bugs_are_well_formed():
    assert len(BUGS) >= 12
    assert len(set(BUGS) - set(UNREACHED)) >= 12
    combos = set(COMBOS)
    for name, bug in BUGS.items():
        assert bug.name == name
        assert bug.engine in ("iomap", "legacy")
        assert bug.summary and bug.kernel
        assert all((fs, bug.engine) in combos for fs in filesystems(name)), name
    assert set(UNREACHED) <= set(BUGS) and set(STORIES) <= set(BUGS)
    for name, (config, _) in STORIES.items():
        assert config["fs"] in filesystems(name), name


@pytest.mark.parametrize("name", sorted(BUGS))
def test_planting_restores_the_engine(name: str):
    for modname in ENGINE_MODULES:
        __import__(modname)
    before = _bindings()
    with planted(name):
        during = _bindings()
        changed = [key for key, value in before.items() if during.get(key) is not value]
        assert changed, f"{name} planted nothing"
        assert all(key[0].startswith("dioconf.impl.") for key in changed), changed
    after = _bindings()
    assert [key for key, value in before.items() if after.get(key) is not value] == []


def test_planting_restores_even_on_error():
    from dioconf.impl import iomap_dio, pagecache, world

    rw, submit = iomap_dio.iomap_dio_rw, iomap_dio._submit
    with pytest.raises(RuntimeError, match="boom"), planted("overwrite-only-extends"):
        # rebound where other modules imported it by name
        assert world.iomap_dio_rw is iomap_dio.iomap_dio_rw is pagecache.iomap_dio_rw
        assert world.iomap_dio_rw is not rw
        raise RuntimeError("boom")
    assert iomap_dio.iomap_dio_rw is rw and world.iomap_dio_rw is rw
    assert pagecache.iomap_dio_rw is rw
    with pytest.raises(RuntimeError, match="boom"), planted("ref-after-submit"):
        raise RuntimeError("boom")
    assert iomap_dio._submit is submit


def test_unknown_bug_is_a_clear_error():
    with pytest.raises(PlantError, match="unknown bug 'nope'; known: "):
        planted("nope")


@pytest.mark.parametrize("name", sorted(STORIES))
def test_unreached_bug_fails_its_story(name: str):
    """What the strategies do not generate, the harness still sees: the story passes on
    main and fails with the bug planted."""
    config, ops = STORIES[name]
    for plant in (None, name):
        with planted(plant) if plant else contextlib.nullcontext(), Harness(**config) as h:
            if plant is None:
                h.run(ops)
                h.check_all()
            else:
                with pytest.raises(ConformanceFailure):
                    h.run(ops)
                    h.check_all()


def test_quality_report_row_of_a_bug_caught_at_once(tmp_path: Any) -> None:
    """`dioconf bench quality`'s document for one bug: caught on its first filesystem,
    with the shrunk counterexample's steps and a trace that replays diverging."""
    from dioconf.bench.quality import run as run_quality

    doc = run_quality("ci", ["legacy-read-past-eof"], jobs=1)
    assert doc["bugs"] == 1 and doc["caught"] == 1 and doc["missed"] == []
    (row,) = doc["rows"]
    assert row["failed_on"] == "getblock" and row["kind"] == "engine"
    assert row["steps"] >= 1 and row["trace_diverges"] is True and row["seconds"] > 0
