"""A small manual driver for engine models, so tests can place completions precisely."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dioconf.model.types import (
    Action,
    BioEnd,
    Blocked,
    Cut,
    Emit,
    Fault,
    Finished,
    Geometry,
    InvalidateResult,
    MapError,
    Mapping,
    NeedCut,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    Output,
    Request,
    WritebackResult,
)


class Runner:
    """Steps an engine, answering inputs from the given lists, and records what it did.

    ``run_until_blocked`` stops at the first ``Blocked``/``Finished``; ``emit_next``
    stops after the next output, so a test can feed a ``BioEnd`` exactly there.
    """

    def __init__(
        self,
        engine: Any,
        geo: Geometry,
        req: Request,
        i_size: int,
        maps: Iterable[Mapping | MapError] = (),
        *,
        invalidate: int = 0,
        writeback: int = 0,
    ) -> None:
        self.engine = engine
        self.state = engine.start(geo, req, i_size)
        self.maps = list(maps)
        self.invalidate = invalidate
        self.writeback = writeback
        self.outputs: list[Output] = []
        self.asked: list[NeedMap] = []
        self.last: Action | None = None

    def feed(self, inp: BioEnd | Fault) -> None:
        self.state = self.engine.feed(self.state, inp)

    def _answer(self, action: Action) -> bool:
        """Answer an input request; False if the action is not one."""
        if isinstance(action, NeedInvalidate):
            self.state = self.engine.feed(self.state, InvalidateResult(self.invalidate))
        elif isinstance(action, NeedWriteback):
            self.state = self.engine.feed(self.state, WritebackResult(self.writeback))
        elif isinstance(action, NeedMap):
            self.asked.append(action)
            if not self.maps:
                raise AssertionError(f"engine asked for an unexpected mapping: {action}")
            self.state = self.engine.feed(self.state, self.maps.pop(0))
        elif isinstance(action, NeedCut):
            self.state = self.engine.feed(self.state, Cut(action.proposal.len))
        else:
            return False
        return True

    def emit_next(self) -> Output | None:
        """Run to the next output (returned), or None at Blocked/Finished."""
        while True:
            self.state, action = self.engine.step(self.state)
            self.last = action
            if self._answer(action):
                continue
            if isinstance(action, Emit):
                self.outputs.append(action.output)
                return action.output
            return None

    def run_until_blocked(self) -> Action:
        while self.emit_next() is not None:
            pass
        assert isinstance(self.last, Blocked | Finished)
        return self.last

    def finish(self, statuses: dict[int, int] | None = None) -> list[Output]:
        """Complete outstanding bios in submission order (status 0 unless given)."""
        statuses = statuses or {}
        while True:
            action = self.run_until_blocked()
            if isinstance(action, Finished):
                return self.outputs
            index = min(action.outstanding)
            self.feed(BioEnd(index, statuses.get(index, 0)))
