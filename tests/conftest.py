"""Test configuration: Hypothesis profiles (``ci`` is bounded and derandomized), and the
real-kernel tests' own TMPDIR."""

import os
import tempfile
from pathlib import Path

import pytest
from dioconf.conformance.catalogue import PYTEST_EXAMPLES
from hypothesis import HealthCheck, settings

# the profiles' sizes for these tests come from the catalogue, with every tool's
settings.register_profile(
    "ci",
    max_examples=PYTEST_EXAMPLES["ci"],
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=PYTEST_EXAMPLES["dev"], deadline=None)
settings.register_profile("nightly", max_examples=PYTEST_EXAMPLES["nightly"], deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of this test's own (for it and the recorders it starts), so that its
    leftover check sees only what it created."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp
