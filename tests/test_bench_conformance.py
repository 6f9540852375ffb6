"""`dioconf bench conformance` reports what it promises (small run; no timing asserted)."""

from __future__ import annotations

import json
import random

import pytest
from dioconf.bench import conformance as bench
from dioconf.conformance.harness import ConformanceFailure, Harness
from dioconf.conformance.orders import pending
from dioconf.conformance.proofs import PROOFS

COUNTERS = ("steps", "requests", "bios", "crashes", "races", "divergences", "quirks")
TOP_KEYS = (
    "python_version", "cpu_count", "combos", "overall", "steps_per_s", "harness",
    "harness_overall", "harness_steps_per_s", "machine_over_harness", "z3",
)  # fmt: skip
RATE_KEYS = ("steps", "requests", "bios", "examples", "seconds", "steps_per_s")


@pytest.fixture(scope="module")
def doc() -> dict:
    return bench.run(examples=3, steps=10, seed=1, combos=[("getblock", "legacy")])


def test_report_is_json_with_the_documented_keys(doc):
    assert json.loads(json.dumps(doc)) == doc
    for key in TOP_KEYS:
        assert key in doc, key
    assert isinstance(doc["python_version"], str) and doc["python_version"].count(".") == 2
    assert isinstance(doc["cpu_count"], int) and doc["cpu_count"] >= 1


def test_machine_and_harness_rows_count_real_work(doc):
    pairs = ((doc["combos"], doc["overall"]), (doc["harness"], doc["harness_overall"]))
    for rows, overall in pairs:
        assert [(r["fs"], r["engine"]) for r in rows] == [("getblock", "legacy")]
        row = rows[0]
        for key in (*RATE_KEYS, *COUNTERS):
            assert isinstance(row[key], int | float) and row[key] >= 0, key
        assert row["steps"] > 0 and row["examples"] > 0 and row["seconds"] > 0
        assert row["steps_per_s"] > 0 and row["requests"] > 0
        assert isinstance(row["failed"], bool)
        assert ("error" in row) == row["failed"]
        for key in RATE_KEYS:
            assert overall[key] == pytest.approx(row[key], rel=0.01), key
    assert doc["steps_per_s"] == doc["overall"]["steps_per_s"]
    assert doc["harness_steps_per_s"] == doc["harness_overall"]["steps_per_s"]
    assert doc["harness"][0]["examples"] == 3
    assert doc["harness"][0]["steps"] <= 3 * 10
    assert sum(doc["harness"][0]["mix"].values()) >= doc["harness"][0]["steps"]
    slowest = doc["harness"][0]["slowest_step"]
    assert slowest["seconds"] > 0 and isinstance(slowest["op"], str) and slowest["op"]


def test_z3_timings(doc):
    z = doc["z3"]
    assert z["proofs"]["count"] == len(PROOFS)  # == len(run_proofs())
    assert z["proofs"]["proved"] == z["proofs"]["count"]
    assert z["proofs"]["seconds"] > 0
    assert z["overflow_boundaries"]["count"] > 0 and z["overflow_boundaries"]["seconds"] > 0
    for engine in ("iomap", "legacy"):
        for n in bench.ORDER_BIOS:
            row = z["orders"][engine][str(n)]
            assert row["calls"] == row["proved"] == 3
            assert 0 < row["mean_seconds"] <= row["max_seconds"]


@pytest.mark.parametrize("n", bench.ORDER_BIOS)
def test_order_states_have_the_bios_in_flight(n):
    for engine, state in bench.order_states(n).items():
        p = pending(engine, state)
        assert p.bios == tuple(range(n)) and not p.finished, engine


def test_a_failing_combo_is_reported_not_raised(monkeypatch):
    def broken(self):
        raise RuntimeError("planted\nsecond line")

    monkeypatch.setattr(Harness, "apply", lambda self, op: broken(self))
    row = bench.run_machine("getblock", "legacy", examples=2, steps=5, seed=1)
    assert row["failed"] and row["error"].endswith("planted")
    assert "second line" not in row["error"]


@pytest.mark.parametrize("combo", [("overwrite", "iomap"), ("reflink", "iomap")])
def test_random_ops_are_valid_and_respect_the_machines_preconditions(combo):
    """The harness accepts every generated operation (a ValueError would say the
    generator broke a precondition); a conformance failure found ends the sequence."""
    rnd = random.Random(3)
    with Harness(*combo) as h:
        since_crash = 0
        for wid in range(1, 31):
            op = bench.random_op(rnd, h, wid, since_crash)
            assert not (isinstance(op, bench.Crash) and since_crash < bench.CRASH_GAP)
            since_crash = 0 if isinstance(op, bench.Crash) else since_crash + 1
            try:
                h.apply(op)
            except ConformanceFailure as exc:
                assert not isinstance(exc.__cause__, ValueError), exc
                break
    assert h.stats.steps > 0
