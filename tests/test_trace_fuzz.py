"""The trace reader never crashes: mutations of valid traces (truncation, byte flips,
nesting, huge and negative integers, wrong types, duplicate and unknown keys, a BOM,
NUL bytes, lines dropped or repeated: `dioconf.bench.reader.mutate`) are read, or
refused with a `TraceFormatError` naming the line: never any other exception (issue 12).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from dioconf.bench.reader import HAND, mutate
from dioconf.traces.format import TraceFormatError, read_trace
from hypothesis import given, settings
from hypothesis import strategies as st

SEEDS = [p.read_bytes() for p in sorted(HAND.glob("*.jsonl"))[:12]]
# the nightly profile reads 100,000 mutants (about 3 minutes); ci and dev their own counts
FUZZ = (settings(max_examples=100_000) if os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
        else settings())  # fmt: skip


@pytest.fixture(scope="module")
def mutant_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each mutant is written (one file, rewritten; removed with pytest's tmp)."""
    return tmp_path_factory.mktemp("fuzz") / "mutant.jsonl"


@FUZZ
@given(data=st.sampled_from(SEEDS), rnd=st.randoms(use_true_random=False))
def test_the_reader_refuses_or_reads_never_crashes(mutant_path: Path, data: bytes,
                                                   rnd: random.Random) -> None:  # fmt: skip
    mutant_path.write_bytes(mutate(data, rnd))
    try:
        read_trace(mutant_path)
    except TraceFormatError as e:
        assert e.line >= 0 and str(e)


def test_bench_reader_counts_no_crash() -> None:
    from dioconf.bench.reader import run

    doc = run(files=300, seed=2)
    assert doc["read"] + doc["refused"] + doc["crashed"] == 300
    assert doc["crashed"] == 0, doc["crashes"]
    assert doc["refused"] > 0 and doc["files_per_s"] > 0
