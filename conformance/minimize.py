"""A shrunk counterexample reduced to its essentials: no step whose removal keeps it.

Hypothesis shrinks by its own measure (the choice sequence), which leaves steps that
change nothing for the failure: an fsync of a file that is not involved, a crash long
before the failing write. `minimize` runs after it: it deletes one step at a time
(with the bio completions that only belong to the deleted request) and keeps a
deletion when the same failure recurs: the same kind and the same rule
(`signature`). It repeats until a whole pass deletes nothing, so what it returns is
1-minimal: every remaining step is needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from .fast import delete_steps
from .harness import ConformanceFailure, Harness
from .ops import CompleteBio, DirectRead, DirectWrite, Op

MAX_REPLAYS = 400  # replays one minimisation may take at most (a bound on its time)

_CONTRACT_RULE = re.compile(r"contract violation \[([\w-]+)\]")
_SEED_RULE = re.compile(r"seed rule:\s*(.*)")


def signature(failure: ConformanceFailure) -> tuple[str, str]:
    """What makes two failures the same: their kind and the rule they break (the
    contract rule, the model's seed rule for a divergence, the oracle's verdict)."""
    msg = failure.message
    if m := _CONTRACT_RULE.search(msg):
        return failure.kind, m.group(1)
    if m := _SEED_RULE.search(msg):
        return failure.kind, m.group(1).strip()
    if failure.kind == "crash":  # the implementation raised: same exception type
        return failure.kind, msg.split(":", 1)[0]
    first = msg.strip().splitlines()[0] if msg.strip() else ""
    # the oracle's verdicts name inodes, ranges and sizes: keep their wording only
    return failure.kind, re.sub(r"\d+", "N", first.split(":", 1)[0])


def replay(config: dict[str, Any], ops: Sequence[Op],
           fs_factory: Callable[[Any], Any] | None = None,
           image_dir: str | None = None) -> ConformanceFailure | None:  # fmt: skip
    """Run ``ops`` on a fresh harness (and the final check): the failure, or None.

    A story that is no longer valid (a completion with nothing in flight) is None."""
    try:
        with Harness(**config, fs_factory=fs_factory, image_dir=image_dir) as h:
            h.run(ops)
            h.check_all()
    except ConformanceFailure as exc:
        if exc.kind == "crash" and isinstance(exc.__cause__, ValueError):
            return None  # the harness refused the shortened story
        return exc
    except ValueError:
        return None  # refused before running (an op while a request is in flight)
    return None


def _candidates(ops: Sequence[Op], i: int) -> list[list[Op]]:
    """Shorter stories without step ``i``: alone, and with the completions right after
    it (an async request's bios, which cannot complete once it is gone)."""
    out = [[*ops[:i], *ops[i + 1 :]]]
    if isinstance(ops[i], DirectWrite | DirectRead):
        j = i + 1
        while j < len(ops) and isinstance(ops[j], CompleteBio):
            j += 1
        if j > i + 1:
            out.insert(0, [*ops[:i], *ops[j:]])
    return out


def minimize(failure: ConformanceFailure, fs_factory: Callable[[Any], Any] | None = None,
             image_dir: str | None = None,
             max_replays: int = MAX_REPLAYS) -> ConformanceFailure:  # fmt: skip
    """The failure with every step deleted whose removal keeps the same failure."""
    want = signature(failure)
    best = [failure]

    def attempt(ops: list[Op]) -> list[Op] | None:
        got = replay(best[0].config, ops, fs_factory, image_dir)
        if got is not None and signature(got) == want and len(got.ops) <= len(ops):
            best[0] = got
            return list(got.ops)
        return None

    delete_steps(list(failure.ops), attempt, _candidates, budget=max_replays)
    return best[0]


def needless_steps(failure: ConformanceFailure, fs_factory: Callable[[Any], Any] | None = None,
                   image_dir: str | None = None) -> list[int]:  # fmt: skip
    """The steps (0-based) of ``failure`` whose removal alone keeps the same failure
    (empty for a minimal story). For tests and for a report's self-check."""
    want = signature(failure)
    out = []
    for i in range(len(failure.ops)):
        got = replay(failure.config, [*failure.ops[:i], *failure.ops[i + 1 :]], fs_factory,
                     image_dir)  # fmt: skip
        if got is not None and signature(got) == want:
            out.append(i)
    return out

