"""The protocol every engine model follows, and a small default driver.

An engine is a module (or object) with three pure functions::

    start(geometry, request, i_size) -> State
    step(state) -> (State, Action)
    feed(state, input) -> State

``step`` never consumes an input: when it returns a ``Need*`` action, the returned state
(which the caller keeps) is waiting for that input, and stepping it again gives the same
action; the caller must ``feed`` the matching input to make progress.
``Emit`` actions have already been applied to the returned state. ``BioEnd`` and
``Fault`` inputs may be fed at any point (that is how races are stated); feeding any
other input the engine did not ask for raises ``ModelUsageError``. The iomap model
also takes ``DefaultCuts`` (for ``Cut``: a run of full bios at once, emitted as one
``BioRun``) and ``BioEndAll`` (one ``BioEnd`` for each bio in flight, oldest first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from typing import Any, Protocol

from attrs import frozen

from .types import (
    Action,
    BioEnd,
    Blocked,
    Cut,
    Emit,
    Fault,
    Finished,
    Geometry,
    Input,
    InvalidateResult,
    MapError,
    Mapping,
    ModelUsageError,
    NeedCut,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    Output,
    Request,
    WritebackResult,
)


class Engine(Protocol):
    name: str

    def start(
        self, geometry: Geometry, request: Request, i_size: int, glue: str = "none"
    ) -> Any: ...

    def step(self, state: Any) -> tuple[Any, Action]: ...

    def feed(self, state: Any, inp: Input) -> Any: ...


@frozen
class ModelEngine:
    """An engine model as one value: its name and its three pure functions."""

    name: str
    start: Callable[..., Any]
    step: Callable[[Any], tuple[Any, Action]]
    feed: Callable[[Any, Input], Any]


Mapper = Callable[[NeedMap], Mapping | MapError]


def drive(
    engine: Engine,
    geometry: Geometry,
    request: Request,
    i_size: int,
    mapper: Mapper | Iterable[Mapping | MapError],
    *,
    invalidate: int = 0,
    writeback: int = 0,
    faults: Iterable[int | Fault] = (),
    statuses: MappingABC[int, int] | None = None,
    max_steps: int = 1_000_000,
) -> list[Output]:
    """Run one request to completion with simple environment choices.

    ``mapper`` answers mapping requests (a callable, or a list consumed in order);
    bios complete in submission order, only when the engine blocks, with the status
    given in ``statuses`` (default 0). Returns the outputs in order.
    """
    if not callable(mapper):
        answers = list(mapper)

        def mapper(need: NeedMap) -> Mapping | MapError:
            if not answers:
                raise ModelUsageError(f"engine asked for a mapping at {need.pos}; none left")
            return answers.pop(0)

    statuses = dict(statuses or {})
    state = engine.start(geometry, request, i_size)
    for at in faults:  # a byte offset (-EFAULT there), or a Fault with its errno
        state = engine.feed(state, at if isinstance(at, Fault) else Fault(at))
    outputs: list[Output] = []
    for _ in range(max_steps):
        state, action = engine.step(state)
        if isinstance(action, Emit):
            outputs.append(action.output)
        elif isinstance(action, NeedInvalidate):
            state = engine.feed(state, InvalidateResult(invalidate))
        elif isinstance(action, NeedWriteback):
            state = engine.feed(state, WritebackResult(writeback))
        elif isinstance(action, NeedMap):
            state = engine.feed(state, mapper(action))
        elif isinstance(action, NeedCut):
            state = engine.feed(state, Cut(action.proposal.len))
        elif isinstance(action, Blocked):
            index = action.outstanding.first
            state = engine.feed(state, BioEnd(index, statuses.get(index, 0)))
        elif isinstance(action, Finished):
            return outputs
        else:  # pragma: no cover - defensive
            raise ModelUsageError(f"unknown action {action!r}")
    raise ModelUsageError(f"engine did not finish within {max_steps} steps")
