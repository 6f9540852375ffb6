"""The trace reader never crashes: mutations of valid traces (truncation, byte flips,
nesting, huge and negative integers, wrong types, duplicate and unknown keys, a BOM,
NUL bytes) are read, or refused with a `TraceFormatError` naming the line: never any
other exception (issue 12)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from dioconf.traces.format import TraceFormatError, read_trace
from hypothesis import given, settings
from hypothesis import strategies as st

HAND = sorted((Path(__file__).resolve().parents[1] / "traces" / "hand").glob("*.jsonl"))
SEEDS = [p.read_bytes() for p in HAND[:12]]
_DIR = tempfile.mkdtemp(prefix="dioconf-fuzz-")
# the nightly profile reads 100,000 mutants (about a minute); ci and dev their own counts
FUZZ = (settings(max_examples=100_000) if os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
        else settings())  # fmt: skip


def _mutate_value(draw, obj):  # type: ignore[no-untyped-def]
    """One field of a JSON object given another value, a duplicate or an unknown key."""
    keys = sorted(obj)
    key = draw(st.sampled_from(keys)) if keys else "x"
    value = draw(st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([None, True, "", [], {}]),
        st.text(max_size=5), st.just([[[[[[1]]]]]]),
    ))  # fmt: skip
    kind = draw(st.sampled_from(["replace", "unknown", "duplicate"]))
    if kind == "replace":
        return json.dumps({**obj, key: value})
    if kind == "unknown":
        return json.dumps({**obj, "zz_unknown": value})
    text = json.dumps(obj)
    return text[:-1] + (", " if obj else "") + f'"{key}": {json.dumps(value)}}}'


@st.composite
def mutated(draw):  # type: ignore[no-untyped-def]
    data = bytearray(draw(st.sampled_from(SEEDS)))
    how = draw(st.sampled_from(["truncate", "flip", "nest", "value", "bom", "nul", "lines"]))
    if how == "truncate":
        del data[draw(st.integers(0, len(data))):]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif how == "nest":
        depth = draw(st.sampled_from([10, 1000, 100_000]))
        data += b"[" * depth + b"]" * depth + b"\n"
    elif how == "value":
        lines = data.decode().split("\n")
        i = draw(st.integers(0, max(0, len(lines) - 2)))
        lines[i] = _mutate_value(draw, json.loads(lines[i]))
        data = bytearray("\n".join(lines).encode())
    elif how == "bom":
        data[:0] = b"\xef\xbb\xbf"
    elif how == "nul":
        data.insert(draw(st.integers(0, len(data))), 0)
    else:  # lines dropped or repeated
        lines = data.split(b"\n")
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))]) if draw(st.booleans()) \
            else lines.pop(i)
        data = bytearray(b"\n".join(lines))
    return bytes(data)


@FUZZ
@given(mutated())
def test_the_reader_refuses_or_reads_never_crashes(data: bytes) -> None:
    path = Path(_DIR) / "mutant.jsonl"
    path.write_bytes(data)
    try:
        read_trace(path)
    except TraceFormatError as e:
        assert e.line >= 0 and str(e)


def test_bench_reader_counts_no_crash() -> None:
    from dioconf.bench.reader import run

    doc = run(files=300, seed=2)
    assert doc["read"] + doc["refused"] + doc["crashed"] == 300
    assert doc["crashed"] == 0, doc["crashes"]
    assert doc["refused"] > 0 and doc["files_per_s"] > 0
