"""One catalogue (conformance/catalogue.py): the filesystems, engines, combos and
profiles are named once, and everything that lists them takes them from there."""

from __future__ import annotations

from dioconf.conformance.catalogue import COMBOS, ENGINE_NAMES, FS_NAMES, PROFILES
from dioconf.impl.examples import ENGINES, FILESYSTEMS, IOMAP
from dioconf.model.engines import ENGINES as ENGINE_MODELS

from dioconf.cli import build_parser


def test_the_combos_are_the_implementations_filesystems_with_their_engines():
    assert tuple(FILESYSTEMS) == FS_NAMES and len(set(FS_NAMES)) == len(FS_NAMES)
    assert all(FILESYSTEMS[f].name == f for f in FS_NAMES)
    assert {e for _, e in COMBOS} == set(ENGINE_NAMES) == set(ENGINE_MODELS)
    assert dict(COMBOS) == {f: ENGINES.get(f, "iomap") for f in FILESYSTEMS}
    assert tuple(f for f, e in COMBOS if e == "iomap") == IOMAP


def test_the_command_line_offers_what_the_catalogue_names():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command in ("run", "check"):
        profile = next(a for a in sub.choices[command]._actions if a.dest == "profile")
        assert list(profile.choices) == list(PROFILES)
    run = sub.choices["run"]
    engine = next(a for a in run._actions if a.dest == "engine")
    assert list(engine.choices) == list(ENGINE_NAMES)
    fs_help = next(a for a in run._actions if a.dest == "fs").help
    assert all(name in fs_help for name in FS_NAMES)


def test_every_tool_has_the_same_profiles():
    from dioconf.conformance import catalogue as c

    names = list(c.PROFILES)
    assert names == ["ci", "dev", "nightly"]
    for table in (c.PYTEST_EXAMPLES, c.KERNEL_PROFILES, c.FAST_PROFILES):
        assert list(table) == names
    # ci is the derandomized one everywhere; the others draw fresh seeds
    for table in (c.PROFILES, c.KERNEL_PROFILES):
        assert [derandomized for *_, derandomized in table.values()] == [True, False, False]
