"""How a story fails (`ConformanceFailure`) and what a run counts (`Stats`)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from attrs import define, field

if TYPE_CHECKING:
    from .harness import Harness
    from .ops import Op

KINDS = ("engine", "contents", "stale", "lost", "size", "contract", "crash")


class ConformanceFailure(AssertionError):
    """The implementation and the model (or its oracle) disagree, or a callback broke
    its contract. ``kind``: one of `KINDS`; ``story``: the operations applied."""

    def __init__(self, kind: str, message: str, harness: Harness) -> None:
        self.kind = kind
        self.message = message
        self.ops: list[Op] = list(harness.ops)
        self.events: list[dict[str, Any]] = [dict(e) for e in harness.backend.events_since(0)]
        self.header: dict[str, Any] = dict(harness.backend.header)
        self.config: dict[str, Any] = harness.config()
        self.abandoned: frozenset[int] = frozenset(harness.abandoned)
        super().__init__(f"{kind}: {message}\n{self.story()}")

    def replayable_events(self) -> list[dict[str, Any]]:
        """The recorded events without the requests a crash cut short (the trace format
        has no crash: such a request would look unfinished)."""
        return [e for e in self.events if e.get("req") not in self.abandoned]

    def story(self) -> str:
        lines = [f"  {i + 1:3}. {op.describe()}" for i, op in enumerate(self.ops)]
        return "operations (the last one failed):\n" + "\n".join(lines)


@define
class Stats:
    steps: int = 0
    requests: int = 0
    bios: int = 0
    crashes: int = 0
    races: int = 0  # completions the schedule placed out of the default order
    divergences: int = 0
    order_checks: int = 0  # z3 checks over all completion orders of in-flight bios
    # known seed quirks met (and allowed for), by name: findings of the seed
    # (FINDINGS.md), which the implementation reproduces on purpose; reported by name,
    # never silently allowed
    findings: Counter[str] = field(factory=Counter)

    @property
    def quirks(self) -> int:
        return sum(self.findings.values())

    def add(self, other: Stats) -> None:
        for name in ("steps", "requests", "bios", "crashes", "races", "divergences",
                     "order_checks"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.findings.update(other.findings)


