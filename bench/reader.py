"""``dioconf bench reader``: the trace reader on mutated traces, in files per second.

Each file is a hand trace (``traces/hand``) with one mutation drawn from a seeded
``random.Random``: truncated, bytes flipped, deep nesting appended, a field given a
huge, negative or wrongly typed value, a duplicate or unknown key, a BOM, a NUL byte,
a line dropped or repeated. Every file must be read or refused with a
``TraceFormatError``; anything else is counted as a crash (and must stay 0).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from ..traces.format import TraceFormatError, read_trace

HAND = Path(__file__).resolve().parents[1] / "traces" / "hand"
_VALUES = (2**70, -(2**70), -1, None, True, "", [], {}, [[[[1]]]])


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """``data`` (a trace file) with one mutation drawn from ``rnd`` (see the module)."""
    b = bytearray(data)
    how = rnd.choice(("truncate", "flip", "nest", "value", "bom", "nul", "lines"))
    if how == "truncate":
        del b[rnd.randrange(len(b) + 1):]
    elif how == "flip":
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
    elif how == "nest":
        depth = rnd.choice((10, 1000, 100_000))
        b += b"[" * depth + b"]" * depth + b"\n"
    elif how == "value":
        lines = b.decode().split("\n")
        i = rnd.randrange(max(1, len(lines) - 1))
        obj = json.loads(lines[i])
        key = rnd.choice(sorted(obj)) if obj else "x"
        value = rnd.choice(_VALUES)
        kind = rnd.choice(("replace", "unknown", "duplicate"))
        if kind == "replace":
            lines[i] = json.dumps({**obj, key: value})
        elif kind == "unknown":
            lines[i] = json.dumps({**obj, "zz_unknown": value})
        else:
            lines[i] = json.dumps(obj)[:-1] + f', "{key}": {json.dumps(value)}}}'
        b = bytearray("\n".join(lines).encode())
    elif how == "bom":
        b[:0] = b"\xef\xbb\xbf"
    elif how == "nul":
        b.insert(rnd.randrange(len(b) + 1), 0)
    else:
        lines = b.split(b"\n")
        i = rnd.randrange(len(lines))
        if rnd.random() < 0.5:
            lines.insert(i, lines[rnd.randrange(len(lines))])
        else:
            lines.pop(i)
        b = bytearray(b"\n".join(lines))
    return bytes(b)


def run(files: int = 2000, seed: int = 1) -> dict[str, Any]:
    seeds = [p.read_bytes() for p in sorted(HAND.glob("*.jsonl"))]
    rnd = random.Random(seed)
    counts = {"read": 0, "refused": 0, "crashed": 0}
    crashes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dioconf-bench-reader-") as tmp:
        path = Path(tmp) / "mutant.jsonl"
        start = time.perf_counter()
        for _ in range(files):
            path.write_bytes(mutate(rnd.choice(seeds), rnd))
            try:
                read_trace(path)
                counts["read"] += 1
            except TraceFormatError:
                counts["refused"] += 1
            except Exception as exc:  # a crash of the reader: reported, must stay 0
                counts["crashed"] += 1
                crashes.append(f"{type(exc).__name__}: {exc}"[:200])
        seconds = time.perf_counter() - start
    return {"files": files, "seed": seed, **counts, "seconds": round(seconds, 3),
            "files_per_s": round(files / seconds, 1) if seconds else 0.0,
            "crashes": crashes[:5]}  # fmt: skip
