"""Bug classes a user's own filesystem can have that the suite once missed (issue 11,
section 5): each is caught by `dioconf check --profile ci` in a filesystem that has it
(tests/userfs.py), under the contract rule that names the callback result at fault."""

from __future__ import annotations

from typing import Any

import pytest

from dioconf.fsapi import check_filesystem
from tests import userfs


@pytest.mark.parametrize("name", sorted(userfs.EXPECTED))
def test_the_ci_profile_names_the_callback_at_fault(name: str, tmp_path: Any) -> None:
    report = check_filesystem(f"tests.userfs:{name}", profile="ci", out_dir=str(tmp_path))
    failure = report.result.failure
    assert failure is not None, f"{name}: the ci profile did not catch its bug"
    rule = userfs.EXPECTED[name]
    assert failure.kind == "contract" and f"[{rule}]" in failure.message, failure.message
    # the story is minimal: no step can go with the failure kept
    assert failure.steps == len(failure.ops) >= 1


def test_the_correct_filesystem_passes_the_same_rules(tmp_path: Any) -> None:
    report = check_filesystem("examples.goodfs:factory", profile="ci", examples=60,
                              out_dir=str(tmp_path))  # fmt: skip
    assert report.ok, report.describe()


def test_without_the_checker_another_files_data_is_named_as_such() -> None:
    """The oracle alone (no contract checker): a block reused before its free was
    committed shows the other file's write after a crash, and the failure says so."""
    from dioconf.conformance.harness import ConformanceFailure, Harness
    from dioconf.conformance.ops import Crash, DirectWrite, Fsync, Punch

    ops = [DirectWrite(0, 0, 4096, 1), Fsync(0), Punch(0, 0, 4096), DirectWrite(1, 0, 4096, 2),
           Crash()]  # fmt: skip
    with (Harness(fs="reuse", fs_factory=userfs.reuse_before_commit, write_cache=False) as h,
          pytest.raises(ConformanceFailure) as info):  # fmt: skip
        h.run(ops)
    assert info.value.kind == "stale"
    assert "another file's data: write #2 (to file 1)" in info.value.message
