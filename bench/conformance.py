"""``dioconf bench conformance``: what the conformance suite costs, in one run.

Four measurements, all rates and times taken in the same run (never asserted):

- **machine**: the Hypothesis state machine (`conformance.machine`) per filesystem and
  engine, generation only (no shrinking, no explain phase, no database, a fixed seed),
  as steps/s including real image I/O, engine-level and file-level checks;
- **harness**: the same shape of work (``examples`` harnesses of ``steps`` operations)
  from a seeded ``random.Random`` straight into `conformance.harness.Harness`, without
  Hypothesis; ``machine_over_harness`` is the ratio of the two rates, mostly
  Hypothesis's own overhead (the operation mixes differ: the machine's draws are
  Hypothesis's, the harness's uniform over the enabled rules);
- **proofs**: z3's `run_proofs()` and `overflow_boundaries()`;
- **orders**: the mean time of `check_completion_orders` on model states with 1, 4 and
  16 bios in flight, per engine, with zero, mixed and symbolic statuses.

A combination whose run raises (a divergence found) is reported as failed with the
exception's first line; the benchmark goes on.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import platform
import pstats
import random
import time
from collections import Counter
from typing import Any

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.stateful import run_state_machine_as_test

from ..conformance.catalogue import COMBOS
from ..conformance.harness import Harness, Stats
from ..conformance.machine import GEOMETRIES, REFLINK, machine_for
from ..conformance.ops import (
    BufferedRead,
    BufferedWrite,
    CompleteBio,
    Crash,
    DirectRead,
    DirectWrite,
    Fallocate,
    FileWrite,
    Fsync,
    Op,
    Pick,
    Punch,
    Reflink,
    Truncate,
)
from ..conformance.orders import check_completion_orders
from ..conformance.proofs import overflow_boundaries, run_proofs
from ..conformance.strategies import FAR
from ..model.iomap import ENGINE as IOMAP_ENGINE
from ..model.legacy import ENGINE as LEGACY_ENGINE
from ..model.types import (
    Blocked,
    Cut,
    Emit,
    Finished,
    Geometry,
    InvalidateResult,
    Mapping,
    NeedCut,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    Request,
    WritebackResult,
)

ORDER_BIOS = (1, 4, 16)
EIO, EAGAIN = -5, -11
STATUSES = (0, 0, 0, EIO)
CRASH_GAP = 3  # operations between crashes (the machine's crash precondition)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


def _counts(stats: Stats) -> dict[str, int]:
    """Every counter of a `Stats` (steps, requests, bios, crashes, ...; the findings met
    by name as their total, ``quirks``)."""
    counts = {name: int(value) for name, value in attrs.asdict(stats).items()
              if name != "findings"}  # fmt: skip
    return {**counts, "quirks": stats.quirks}


# --------------------------------------------------------------------------- machine


def machine_settings(examples: int, steps: int) -> settings:
    """Generation only: no shrinking, no explain phase, no database, quiet."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=False,  # the fixed seed (`hypothesis.seed`) decides instead
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=(Phase.generate,),
        verbosity=Verbosity.quiet,
        print_blob=False,
        report_multiple_bugs=False,
    )


def run_machine(fs: str, engine: str, examples: int, steps: int, seed: int) -> dict[str, Any]:
    """One combination through the Hypothesis state machine, counted and timed."""
    cls = hypothesis_seed(seed)(machine_for(fs, engine))
    error = None
    t0 = time.perf_counter()
    try:
        run_state_machine_as_test(cls, settings=machine_settings(examples, steps))
    except Exception as exc:  # a divergence (or a broken run): report it, go on
        error = _first_line(exc)
    seconds = time.perf_counter() - t0
    doc: dict[str, Any] = {"fs": fs, "engine": engine, "failed": error is not None}
    if error is not None:
        doc["error"] = error
    doc.update(_counts(cls.totals))
    doc.update(
        examples=int(cls.examples),
        seconds=round(seconds, 3),
        steps_per_s=_rate(cls.totals.steps, seconds),
    )
    return doc


# --------------------------------------------------------------------------- raw harness


def _offset(rnd: random.Random, size: int, bs: int, lbs: int, page: int) -> int:
    """Like `conformance.strategies.offset`: near a boundary that matters."""
    bases = (0, 0, bs, page, 4 * bs, size, size, size - size % bs, -(-size // bs) * bs)
    base = rnd.choice((*bases, 16 * bs, 256 * page, FAR))
    unit = rnd.choice((lbs, lbs, bs, 512, 1))
    return max(0, min(base + rnd.randint(-2, 2) * unit, FAR + 64 * bs))


def _length(rnd: random.Random, pos: int, bs: int, lbs: int, page: int) -> int:
    n = rnd.choice(
        (lbs, lbs, 2 * lbs, bs, bs, 2 * bs, 3 * bs + lbs, 8 * bs, 256 * page + bs, lbs + 1, 100)
    )
    return min(n, FAR + (1 << 20) - 1 - pos)


def _flags(rnd: random.Random, pool: list[str], order: tuple[str, ...]) -> tuple[str, ...]:
    picked = set(rnd.sample(pool, rnd.randint(0, min(2, len(pool)))))
    return tuple(f for f in order if f in picked)


def _plan(rnd: random.Random) -> tuple[Pick | None, ...]:
    return tuple(
        None if rnd.random() < 0.5 else Pick(rnd.randrange(4), rnd.choice(STATUSES))
        for _ in range(rnd.randint(0, 6))
    )


def _fault(rnd: random.Random, n: int, page: int) -> int | None:
    return rnd.randint(0, max(1, n // page)) * page if rnd.random() < 0.125 else None


def random_op(rnd: random.Random, h: Harness, wid: int, since_crash: int = CRASH_GAP) -> Op:
    """One operation the state machine could have drawn now (its preconditions: a crash
    only ``CRASH_GAP`` operations after the last one), each enabled rule equally likely."""
    crash = since_crash >= CRASH_GAP
    if h.pending is not None:  # only completions or a crash
        if crash and rnd.random() < 0.1:
            return Crash()
        return CompleteBio(rnd.randrange(4), rnd.choice(STATUSES))
    legacy = h.engine == "legacy"
    kinds = ["dw", "dr", "falloc", "punch", "trunc", "fsync"] + ["crash"] * crash
    kinds += [] if legacy else ["fw", "bw", "br"]
    kinds += ["reflink"] if h.fs in REFLINK else []
    kinds += ["complete"] if h.inflight() > 0 else []
    kind = rnd.choice(kinds)
    index = rnd.randrange(len(h.files))
    bs, lbs, page = h.block_size, h.logical_block_size, h.page_size
    size = h.files[index].size
    pos = _offset(rnd, size, bs, lbs, page)
    n = _length(rnd, pos, bs, lbs, page)
    order = ("DSYNC", "SYNC", "NOWAIT", "ATOMIC")
    if kind == "dw":
        pool = ["NOWAIT", "DSYNC", "SYNC"] + ([] if legacy else ["ATOMIC"])
        dio_pool = [] if legacy else ["PARTIAL", "FORCE_WAIT", "OVERWRITE_ONLY"]
        return DirectWrite(
            index, pos, n, wid,
            flags=_flags(rnd, pool, order),
            dio=_flags(rnd, dio_pool, ("FORCE_WAIT", "OVERWRITE_ONLY", "PARTIAL")),
            sync=legacy or rnd.random() < 0.75,
            fault_at=_fault(rnd, n, page),
            done_before=0 if legacy else rnd.choice((0, 0, 0, lbs, 3 * bs)),
            plan=_plan(rnd),
        )  # fmt: skip
    if kind == "dr":
        return DirectRead(
            index, pos, n,
            flags=_flags(rnd, ["NOWAIT"], order),
            dio=_flags(rnd, [] if legacy else ["PARTIAL", "FORCE_WAIT"], ("FORCE_WAIT", "PARTIAL")),
            sync=rnd.random() < 0.75,
            fault_at=_fault(rnd, n, page),
            done_before=0 if legacy else rnd.choice((0, 0, 0, lbs)),
            plan=_plan(rnd),
        )  # fmt: skip
    if kind == "fw":
        return FileWrite(index, pos, n, wid, _flags(rnd, ["NOWAIT", "DSYNC", "SYNC"], order))
    if kind == "bw":
        return BufferedWrite(index, pos, n, wid)
    if kind == "br":
        return BufferedRead(index, pos, n)
    if kind in ("falloc", "punch"):
        pos -= pos % bs
        n = min(rnd.choice((bs, 2 * bs, 8 * bs)), FAR + (1 << 20) - pos - bs)
        if kind == "punch":
            return Punch(index, pos, n)
        return Fallocate(index, pos, n, keep_size=rnd.random() < 0.5)
    if kind == "trunc":
        return Truncate(index, pos)
    if kind == "reflink":
        return Reflink(index, 1 - index)
    if kind == "fsync":
        return Fsync(index)
    if kind == "complete":
        return CompleteBio(rnd.randrange(4), rnd.choice(STATUSES))
    return Crash()


def run_harness(fs: str, engine: str, examples: int, steps: int, seed: int) -> dict[str, Any]:
    """``examples`` fresh harnesses of ``steps`` seeded random operations each, without
    Hypothesis (set-up, final check and close included, as in the machine); also the
    slowest single step."""
    rnd = random.Random(f"{seed}:{fs}:{engine}")
    total, mix = Stats(), Counter[str]()
    failures: list[str] = []
    slowest = (0.0, "")  # (seconds, operation): cliffs hide in a mean
    t0 = time.perf_counter()
    for _ in range(examples):
        lbs, cache, fua = rnd.choice(GEOMETRIES)
        h = Harness(fs, engine, logical_block_size=lbs, write_cache=cache, fua=fua)
        since_crash = 0
        try:
            for wid in range(1, steps + 1):
                op = random_op(rnd, h, wid, since_crash)
                since_crash = 0 if isinstance(op, Crash) else since_crash + 1
                mix[type(op).__name__] += 1
                t = time.perf_counter()
                try:
                    h.apply(op)
                finally:
                    dt = time.perf_counter() - t
                    if dt > slowest[0]:
                        slowest = (dt, op.describe())
            h.check_all()
        except Exception as exc:  # a divergence: this example ends, the next one starts
            failures.append(_first_line(exc))
        finally:
            total.add(h.stats)
            h.close()
    seconds = time.perf_counter() - t0
    doc: dict[str, Any] = {"fs": fs, "engine": engine, "failed": bool(failures)}
    if failures:
        doc.update(failures=len(failures), error=failures[0])
    doc.update(_counts(total))
    doc.update(
        examples=examples,
        seconds=round(seconds, 3),
        steps_per_s=_rate(total.steps, seconds),
        mix=dict(sorted(mix.items())),
        slowest_step={"seconds": round(slowest[0], 4), "op": slowest[1]},
    )
    return doc


# --------------------------------------------------------------------------- z3


def _drive(engine: Any, req: Request, maps: list[Mapping]) -> Any:
    """Step a model engine, answering its inputs, until it blocks on its bios."""
    geo = Geometry(4096, 512, 4096, write_cache=True, fua=False)
    state = engine.start(geo, req, 1 << 30)
    while True:
        state, action = engine.step(state)
        if isinstance(action, NeedInvalidate):
            state = engine.feed(state, InvalidateResult(0))
        elif isinstance(action, NeedWriteback):
            state = engine.feed(state, WritebackResult(0))
        elif isinstance(action, NeedMap):
            state = engine.feed(state, maps.pop(0))
        elif isinstance(action, NeedCut):
            state = engine.feed(state, Cut(action.proposal.len))
        elif isinstance(action, Blocked | Finished):
            return state
        elif not isinstance(action, Emit):  # pragma: no cover - every action is handled
            raise AssertionError(action)


def order_states(nbios: int) -> dict[str, Any]:
    """Per engine, a model state of a sync write waiting on ``nbios`` bios: one block and
    one disjoint extent per bio (legacy: REQ_NOWAIT, so -EAGAIN stays -EAGAIN)."""
    iomap = [
        Mapping(4096 * i, 4096, "MAPPED", frozenset(), (1 << 22) + 4096 * i) for i in range(nbios)
    ]
    legacy = [
        Mapping(4096 * i, 4096, "MAPPED", frozenset(), (2 * i + 1) << 20) for i in range(nbios)
    ]
    size = 4096 * nbios
    return {
        "iomap": _drive(IOMAP_ENGINE, Request("write", 0, size), iomap),
        "legacy": _drive(LEGACY_ENGINE, Request("write", 0, size, iocb={"NOWAIT"}), legacy),
    }


def run_orders(bios: tuple[int, ...] = ORDER_BIOS) -> dict[str, Any]:
    """Mean time of `check_completion_orders` with zero, mixed and symbolic statuses."""
    out: dict[str, Any] = {"iomap": {}, "legacy": {}}
    for n in bios:
        for engine, state in order_states(n).items():
            variants: list[list[int] | None] = [
                [0] * n,
                [(0, EIO, EAGAIN)[i % 3] for i in range(n)],
                None,
            ]
            times, proved = [], 0
            for statuses in variants:
                c = check_completion_orders(engine, state, statuses)
                times.append(c.seconds)
                proved += c.ok
            out[engine][str(n)] = {
                "calls": len(times),
                "proved": proved,
                "mean_seconds": round(sum(times) / len(times), 4),
                "max_seconds": round(max(times), 4),
            }
    return out


def run_z3() -> dict[str, Any]:
    """`run_proofs`, `overflow_boundaries` and the completion-order checks, timed."""
    t0 = time.perf_counter()
    proofs = run_proofs()
    t1 = time.perf_counter()
    boundaries = overflow_boundaries()
    t2 = time.perf_counter()
    return {
        "proofs": {
            "count": len(proofs),
            "proved": sum(p.ok for p in proofs),
            "seconds": round(t1 - t0, 3),
        },
        "overflow_boundaries": {
            "count": len(boundaries),
            "found": sum(b.status == "found" for b in boundaries),
            "seconds": round(t2 - t1, 3),
        },
        "orders": run_orders(),
    }


# --------------------------------------------------------------------------- run


def _overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    # each row's time from its own rate (taken over its unrounded seconds): a short row's
    # seconds rounded to 1 ms would move the overall rate by more than its own
    seconds = sum(r["steps"] / r["steps_per_s"] if r["steps_per_s"] else r["seconds"]
                  for r in rows)  # fmt: skip
    steps = sum(r["steps"] for r in rows)
    return {
        "steps": steps,
        "requests": sum(r["requests"] for r in rows),
        "bios": sum(r["bios"] for r in rows),
        "examples": sum(r["examples"] for r in rows),
        "seconds": round(seconds, 3),
        "steps_per_s": _rate(steps, seconds),
        "failed": sum(r["failed"] for r in rows),
    }


def run(
    examples: int = 60, steps: int = 40, seed: int = 1, combos: list[tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Every measurement of the module docstring; a JSON-serialisable dict."""
    combos = list(COMBOS if combos is None else combos)
    machine = [run_machine(fs, engine, examples, steps, seed) for fs, engine in combos]
    harness = [run_harness(fs, engine, examples, steps, seed) for fs, engine in combos]
    overall, raw = _overall(machine), _overall(harness)
    return {
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count() or 1,
        "examples": examples,
        "stateful_step_count": steps,
        "seed": seed,
        "combos": machine,
        "overall": overall,
        "steps_per_s": overall["steps_per_s"],
        "harness": harness,
        "harness_overall": raw,
        "harness_steps_per_s": raw["steps_per_s"],
        "machine_over_harness": round(overall["steps_per_s"] / max(raw["steps_per_s"], 1e-9), 3),
        "z3": run_z3(),
    }


def profile(
    fs: str = "overwrite",
    engine: str = "iomap",
    examples: int = 60,
    steps: int = 40,
    seed: int = 1,
    top: int = 15,
    sort: str = "tottime",
) -> str:
    """cProfile of one combination through the machine: the ``top`` entries by ``sort``."""
    prof = cProfile.Profile()
    doc = prof.runcall(run_machine, fs, engine, examples, steps, seed)
    out = io.StringIO()
    print(json.dumps(doc), file=out)
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(top)
    return out.getvalue()


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(), indent=2))
