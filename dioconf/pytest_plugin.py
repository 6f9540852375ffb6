"""The pytest plugin (entry point ``dioconf``): check your filesystem from your tests.

    pytest --dioconf-fs=mypkg.myfs:factory

runs the conformance suite over the filesystem ``factory(device)`` builds, as one test
item (``dioconf-check[mypkg.myfs:factory]``), unless a test of the session uses the
``dioconf_check`` fixture, which then gets the factory::

    def test_my_fs_conforms(dioconf_check):
        dioconf_check()                        # the --dioconf-fs factory
        dioconf_check("mypkg.myfs:factory")    # or name it

or, with no fixture at all, ``assert_conforms`` from ``dioconf.fsapi``. The run follows
the loaded Hypothesis settings profile (``--hypothesis-profile``, ``settings.default``):
its max_examples, stateful step count, derandomize flag and example database, so a
failure found once is replayed first the next time. Counterexamples (trace and Python
reproduction) go to ``--dioconf-out`` (default ``./dioconf-failures``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

FIXTURE = "dioconf_check"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dioconf", "dioconf: check a filesystem's direct-I/O callbacks")
    group.addoption("--dioconf-fs", action="append", default=[], metavar="PKG.MODULE:FACTORY",
                    help="check the filesystem this factory builds (repeatable)")  # fmt: skip
    group.addoption("--dioconf-out", default="dioconf-failures", metavar="DIR",
                    help="where counterexamples go (default ./dioconf-failures)")  # fmt: skip
    group.addoption("--dioconf-engine", choices=["iomap", "legacy"], default=None,
                    help="the engine (default: iomap with iomap_begin, else legacy)")  # fmt: skip


def _check(config: pytest.Config, factory: Any, **kwargs: Any) -> Any:
    from .fsapi import assert_conforms

    kwargs.setdefault("out_dir", config.getoption("--dioconf-out"))
    kwargs.setdefault("engine", config.getoption("--dioconf-engine"))
    return assert_conforms(factory, **kwargs)


@pytest.fixture
def dioconf_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``dioconf_check(factory=None, **kwargs)``: check the filesystem of ``factory``
    (a callable or ``"pkg.module:factory"``; default: each ``--dioconf-fs``), failing
    the test with the shrunk counterexample. ``kwargs`` go to
    ``dioconf.fsapi.check_filesystem`` (``examples``, ``profile``, ``settings``...).
    Returns the report (the last one, for several factories)."""
    config = request.config

    def check(factory: Any = None, **kwargs: Any) -> Any:
        specs = [factory] if factory is not None else config.getoption("--dioconf-fs")
        if not specs:
            pytest.skip("no filesystem to check: pass --dioconf-fs=pkg.module:factory")
        report = None
        for spec in specs:
            report = _check(config, spec, **kwargs)
        return report

    return check


class CheckItem(pytest.Item):
    """``dioconf check`` of one ``--dioconf-fs`` factory, as a test item."""

    def __init__(self, *, spec: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    def runtest(self) -> None:
        from .conformance.check import FactoryError

        try:
            _check(self.config, self.spec)
        except FactoryError as exc:  # the message alone: the traceback is the tool's own
            pytest.fail(f"--dioconf-fs={self.spec}: {exc}", pytrace=False)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:  # fmt: skip
        if isinstance(excinfo.value, AssertionError):
            return str(excinfo.value)  # the report: kind, message, operations, files
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int, str]:
        return Path(self.spec.partition(":")[0].replace(".", "/")), 0, self.name


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:  # fmt: skip
    specs = config.getoption("--dioconf-fs")
    if not specs or any(FIXTURE in getattr(i, "fixturenames", ()) for i in items):
        return
    for spec in specs:
        items.append(CheckItem.from_parent(session, name=f"dioconf-check[{spec}]", spec=spec))
