"""The shipped kernel traces (traces/kernel) replay with no divergence, and the profile
rules they needed are still needed (so they cannot rot silently)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dioconf.traces.format import parse_trace, read_trace
from dioconf.traces.replay import replay_trace

KERNEL = Path(__file__).resolve().parents[1] / "traces" / "kernel"
TRACES = sorted(KERNEL.glob("*/*.jsonl"))


def test_at_least_40_traces_over_three_filesystems():
    assert len(TRACES) >= 40
    assert {p.parent.name for p in TRACES} == {"ext4", "xfs", "btrfs"}


@pytest.mark.parametrize("path", TRACES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_kernel_trace_replays(path):
    trace = read_trace(path)
    h = trace.header.raw
    assert (h["source"], h["fs"]) == ("kernel", path.parent.name)
    assert h["kernel"].startswith("6.18")
    assert h["profile"] == ("linux-6.18-btrfs" if h["fs"] == "btrfs" else "linux-6.18")
    result = replay_trace(trace)
    assert result.ok, result.divergence


def _with_profile(path: Path, profile: str):
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["profile"] = profile
    return replay_trace(parse_trace([json.dumps(header), *lines[1:]], str(path)))


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
def test_fua_rule_is_needed(fs):
    """Without the linux-6.18 FUA rule the write-cache-off O_DSYNC trace diverges on
    the first bio's FUA bit (DIVERGENCES.md item 1)."""
    seed = "seed-btrfs" if fs == "btrfs" else "seed"
    result = _with_profile(KERNEL / fs / "dsync-cache-off.jsonl", seed)
    assert not result.ok
    assert "fua=true" in result.divergence.model_predicts
    assert "fua=false" in result.divergence.trace_says


def test_btrfs_glue_is_needed():
    """Without btrfs_dio_iomap_end the faulting read over data would return -EFAULT
    instead of 0 (DIVERGENCES.md item 2)."""
    result = _with_profile(KERNEL / "btrfs" / "faulting-buffers.jsonl", "linux-6.18")
    assert not result.ok
    assert result.divergence.req == 1
    assert "ret=-14" in result.divergence.model_predicts


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
def test_async_write_completion_rule_is_needed(fs):
    """Linux 6.18 completes every async write from iomap's workqueue; the seed would
    complete these pure overwrites inline (DIVERGENCES.md item 28)."""
    seed = "seed-btrfs" if fs == "btrfs" else "seed"
    result = _with_profile(KERNEL / fs / "async-rw.jsonl", seed)
    assert not result.ok
    assert result.divergence.field == "ctx"
    assert "ctx=inline" in result.divergence.model_predicts
    assert "ctx=workqueue" in result.divergence.trace_says
