"""Interruption of a long command (``dioconf run``): SIGINT and SIGTERM set a flag the
command checks between examples and at the end, so that it stops within an example,
cleans up, says "interrupted" with what finished, and exits 130: never 0 after an
interrupt, never a traceback."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class Interruption:
    """Set once a signal arrived."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""


@contextlib.contextmanager
def interruptible() -> Iterator[Interruption]:
    """SIGINT/SIGTERM only set the flag: the command checks it where stopping is clean
    (each example of a run), never in the middle of whatever runs when the signal comes
    (an exception raised from a handler can land in a gc callback or a ``__del__``,
    where Python prints it and carries on). The previous handlers come back on exit."""
    state = Interruption()

    def handler(signum: int, _frame: FrameType | None) -> None:
        state.signal = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)
