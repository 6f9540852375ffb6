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
