"""Counterexamples reduced to their essentials (`conformance.minimize`): after
Hypothesis has shrunk, no printed step may be removable with the failure kept."""

from __future__ import annotations

from typing import Any

import pytest
from dioconf.conformance.bugs import STORIES, planted
from dioconf.conformance.failure import ConformanceFailure
from dioconf.conformance.minimize import minimize, needless_steps, replay, signature
from dioconf.conformance.ops import CompleteBio, Crash, DirectRead, DirectWrite, Fsync, Truncate
from dioconf.conformance.run import run_combo

# steps every engine runs (the legacy one has no page cache)
NOISE = [Fsync(1), Crash(), DirectWrite(1, 0, 4096, 900), DirectRead(0, 0, 4096), Fsync(0)]


def _padded(ops: tuple[Any, ...]) -> list[Any]:
    """``ops`` with steps that change nothing for the failure between and around them."""
    out: list[Any] = list(NOISE[:2])
    for i, op in enumerate(ops):
        out.append(op)
        if not isinstance(op, DirectWrite) or op.sync:  # not between a request and its bios
            out.append(NOISE[(i + 2) % len(NOISE)])
    return out


@pytest.mark.parametrize("bug", ["last-error-wins", "legacy-aio-dsync-inline",
                                 "invalidate-errno-leaks"])  # fmt: skip
def test_minimize_deletes_every_step_the_failure_does_not_need(bug: str) -> None:
    config, story = STORIES[bug]
    ops = _padded(story)
    with planted(bug):
        failure = replay(config, ops)
        assert failure is not None, "the padded story must still fail"
        small = minimize(failure)
        assert signature(small) == signature(failure)
        assert len(small.ops) <= len(story)
        assert needless_steps(small) == []
        assert not any(op in NOISE for op in small.ops)


def test_minimize_keeps_a_request_with_its_completions() -> None:
    config, story = STORIES["legacy-aio-dsync-inline"]
    with planted("legacy-aio-dsync-inline"):
        small = minimize(replay(config, [Fsync(1), *story, Fsync(0)]))  # type: ignore[arg-type]
    assert any(isinstance(op, CompleteBio) for op in small.ops)
    assert small.ops[-1] == story[-1]


def test_a_story_that_no_longer_runs_is_no_failure() -> None:
    # a completion with nothing in flight is refused: not the failure minimised for
    assert replay({"fs": "overwrite"}, [CompleteBio(0)]) is None


def test_signature_names_kind_and_rule() -> None:
    config, story = STORIES["fua-into-unwritten"]
    with planted("fua-into-unwritten"):
        failure = replay(config, story)
    assert isinstance(failure, ConformanceFailure)
    kind, rule = signature(failure)
    assert kind == failure.kind and rule
    other = replay({"fs": "overwrite"}, [DirectWrite(0, 0, 4096, 1), Truncate(0, 100)])
    assert other is None


def test_run_prints_a_minimal_counterexample(tmp_path: Any) -> None:
    """`dioconf run` with a planted bug: the story it prints and saves has no step
    whose removal keeps the failure."""
    bug = "legacy-aio-dsync-inline"
    result = run_combo("getblock", "legacy", "ci", plant=bug, out_dir=tmp_path)
    f = result.failure
    assert f is not None and f.ops and len(f.story) == len(f.ops) == f.steps
    with planted(bug):
        assert needless_steps(replay(f.config, f.ops)) == []  # type: ignore[arg-type]
    repro = (tmp_path / "repro-getblock-legacy-legacy-aio-dsync-inline.py").read_text()
    assert repro.count("    ") and all(repr(op) in repro for op in f.ops)
