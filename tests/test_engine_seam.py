"""The engine-level suite reaches what it tests only through the seam
(``conformance/engine_backend.py``), and draws only what the backend declares."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import attrs
import pytest
from dioconf.conformance import ops as O
from dioconf.conformance.machine import machine_for
from dioconf.impl.engine_backend import WorldBackend
from dioconf.impl.examples import FILESYSTEMS
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

import dioconf

ROOT = Path(dioconf.__file__).resolve().parent.parent / "conformance"
SUITE = ("harness", "file_ops", "verdicts", "inflight", "machine", "snapshot", "failure",
         "engine_backend")  # fmt: skip
# of the implementation, the suite may name: errors and constants, the catalogue of
# reference filesystems, and the adapter
ALLOWED = {"impl.api", "impl.examples", "impl.engine_backend"}


def _impl_imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.ImportFrom) and node.level == 2 and node.module
                and node.module.split(".")[0] == "impl"):  # fmt: skip
            out.add(node.module)
    return out


def test_the_suite_reaches_the_implementation_only_through_the_seam() -> None:
    reached = {m: _impl_imports(m) - ALLOWED for m in SUITE}
    assert {m: r for m, r in reached.items() if r} == {}


class _Limited:
    """A World backend that declares less than it could (no crash, no pins)."""

    def __init__(self, inner: WorldBackend, **caps: bool) -> None:
        self.inner = inner
        self.caps = attrs.evolve(inner.caps, **caps)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _drawn(**caps: bool) -> list[type]:
    """The kinds of operations 40 derandomized examples of the xfs-like machine apply
    on a backend declaring ``caps``."""
    stories: list[list[O.Op]] = []

    def factory(schedule: Any) -> Any:
        inner = WorldBackend(FILESYSTEMS["xfs-like"], size=64 << 20, schedule=schedule)
        b = _Limited(inner, **caps)
        stories.append([])
        return b

    machine = machine_for("xfs-like", "iomap", backend_factory=factory)
    close = machine.teardown

    def teardown(self: Any) -> None:
        if self.h is not None:
            stories[-1].extend(self.h.ops)
        close(self)

    machine.teardown = teardown  # type: ignore[method-assign]
    run_state_machine_as_test(machine, settings=settings(
        max_examples=40, stateful_step_count=30, derandomize=True, deadline=None,
        suppress_health_check=list(HealthCheck), database=None))  # fmt: skip
    return [type(op) for story in stories for op in story]


def test_operations_a_backend_lacks_are_never_drawn() -> None:
    full = _drawn()
    assert {O.Crash, O.MmapDirty} <= set(full)  # (the control: drawn when declared)
    limited = _drawn(crash=False, page_cache_pins=False)
    assert not {O.Crash, O.MmapDirty, O.Unpin} & set(limited)
    assert O.DirectWrite in limited


def test_a_backend_of_the_other_engine_is_refused() -> None:
    from dioconf.conformance.harness import Harness

    def legacy(schedule: Any) -> Any:
        return WorldBackend(FILESYSTEMS["xfs-like"], engine="legacy", size=64 << 20,
                            schedule=schedule)  # fmt: skip

    with pytest.raises(ValueError, match="legacy engine"):
        Harness("xfs-like", "iomap", backend_factory=legacy)
