"""z3 proofs of the model's arithmetic (conformance/proofs.py, model/arith.py).

Expected values are worked out by hand from the seeds; the broken rules below are
deliberate mistakes that the same proof harness must refute with a counterexample.
"""

from __future__ import annotations

import pytest
import z3
from dioconf.conformance import proofs as P
from dioconf.model import arith

LOFF_MAX = (1 << 63) - 1


# --------------------------------------------------------------------------- arith on ints


def test_arith_rules_on_python_ints():
    """The rules compute the seed's values on plain ints (worked by hand)."""
    # iomap_dio_bio_iter: write [5000, 6000) with 4096-byte blocks: head zeroes
    # [4096, 5000) (pad 5000 & 4095 = 904), tail zeroes [6000, 8192) (4096 - 1904)
    assert arith.zero_head(5000, 4096) == (4096, 904)
    assert arith.zero_tail(6000, 4096) == (6000, 2192)
    assert arith.zero_tail(8192, 4096) == (8192, 0)
    assert arith.misaligned(512, 4096, 512) == 0 and arith.misaligned(100, 512, 512) == 100
    # iomap_dio_complete: 8192 bytes read at 0 of a 5000-byte file -> 5000
    assert arith.short_read_cap(0, 8192, 5000) == 5000
    assert arith.short_read_cap(0, 4096, 5000) == 4096
    # ret > 0: ki_pos += ret, ret += done_before; otherwise both unchanged
    assert (arith.ki_pos_after(7, 10), arith.add_done_before(10, 100)) == (17, 110)
    assert (arith.ki_pos_after(7, -5), arith.add_done_before(-5, 100)) == (7, -5)
    assert arith.add_done_before(0, 100) == 0
    assert arith.first_error(0, -5) == -5 and arith.first_error(-11, -5) == -11
    # __blockdev_direct_IO: 4096-aligned -> 12; 512-aligned only -> 9; else -1 (-EINVAL)
    assert arith.blockdev_blkbits(4096, 8192, 12, 9) == 12
    assert arith.blockdev_blkbits(512, 4096, 12, 9) == 9
    assert arith.blockdev_blkbits(100, 512, 12, 9) == -1
    # dio_zero_block: 8 dio blocks per fs block, block_in_file 13 = 8 + 5
    assert arith.zero_block_chunk(13, 3, False) == 5
    assert arith.zero_block_chunk(13, 3, True) == 3
    assert arith.zero_block_chunk(16, 3, True) == 0
    assert arith.round_up(5000, 512) == 5120 and arith.round_up(5120, 512) == 5120
    assert (arith.pos_to_block(5000, 9), arith.blocks_to_bytes(9, 9)) == (9, 4608)
    # dio_bio_complete: -EAGAIN kept only for REQ_NOWAIT bios
    assert arith.legacy_io_error(0, -11, True) == -11
    assert arith.legacy_io_error(0, -11, False) == -5
    assert arith.legacy_io_error(-11, 0, True) == -11
    # dio_complete: aio adds transferred even on error; sync adds max(ret, 0)
    assert arith.legacy_ki_pos(0, -5, 4096, True) == 4096
    assert arith.legacy_ki_pos(0, -5, 4096, False) == 0
    assert arith.past_size(10, 10, 19) and not arith.past_size(10, 10, 20)


def test_arith_on_bitvectors_wraps_like_c():
    """The same functions on 64-bit vectors give the kernel's wrapped values."""
    end = z3.BitVecVal(LOFF_MAX, 64)
    # ALIGN(LOFF_MAX, 4096) = 2**63, which as loff_t is -2**63
    assert z3.simplify(arith.round_up(end, 4096)).as_signed_long() == -(1 << 63)
    # pos + len > i_size wraps negative at pos + len = 2**63: "not past" (math: past)
    pos, length = z3.BitVecVal(1 << 62, 64), z3.BitVecVal(1 << 62, 64)
    assert z3.is_false(z3.simplify(arith.past_size(pos, length, z3.BitVecVal(0, 64))))
    assert z3.is_true(z3.simplify(arith.ult(z3.BitVecVal(1, 64), z3.BitVecVal(-1, 64))))


def test_ite_needs_a_vector_branch():
    with pytest.raises(TypeError, match="bit-vector branch"):
        arith.ite(z3.Bool("c"), 1, 2)


# --------------------------------------------------------------------------- proofs


def test_every_proof_of_the_model_proves():
    results = P.run_proofs()
    assert [r.name for r in results if not r.ok] == []
    assert len(results) == 11
    assert {r.name for r in results} >= {
        "short-read cap", "legacy short-read cap", "alignment", "legacy alignment", "pads",
        "ret accounting", "legacy ki_pos", "dio_zero_block ranges",
    }  # fmt: skip
    assert all(r.seed and r.statement and r.seconds >= 0 for r in results)


def _tail_off_by(delta):
    def tail(end, bs):
        pad = end & (bs - 1)
        return end, arith.ite(pad != 0, bs - pad + delta, 0)

    return tail


@pytest.mark.parametrize(
    ("proof", "fails"),
    [
        # a cap without min: a 8192-byte read at 0 of a 5000-byte file returns 8192
        (lambda: P.prove_short_read_cap(lambda pos, size, i_size: size), "pos + ret <= i_size"),
        # always i_size - pos: more than was read when the read ends before i_size
        (lambda: P.prove_short_read_cap(lambda pos, size, i_size: i_size - pos), "ret <= size"),
        # a mask of align instead of align - 1 (pos=1, length=0, align=1 is aligned)
        (lambda: P.prove_alignment(lambda pos, length, a: (pos | length) & a), "test iff"),
        # + instead of |: pos = length = align / 2 sums to a multiple
        (lambda: P.prove_alignment(lambda pos, length, a: (pos + length) & (a - 1)), "test iff"),
        # tail pad one byte long: end = 1 zeroes 512 bytes, a whole block
        (lambda: P.prove_pads(tail=_tail_off_by(1)), "each pad < fs block size"),
        # tail pad one byte short: zeroing stops before the block end
        (lambda: P.prove_pads(tail=_tail_off_by(-1)), "tail end = round_up(end)"),
        # head zeroing starting one byte late overlaps the data's first byte
        (
            lambda: P.prove_pads(head=lambda pos, bs: (pos - (pos & (bs - 1)) + 1, pos & (bs - 1))),
            "head pad ends at pos",
        ),
        # done_before added to an error or to 0
        (lambda: P.prove_ret_accounting(total=lambda ret, db: ret + db), "ret <= 0"),
        # ki_pos moved by an error code
        (lambda: P.prove_ret_accounting(pos_after=lambda pos, ret: pos + ret), "ret <= 0"),
        # no fallback to the logical block
        (
            lambda: P.prove_legacy_alignment(
                lambda pos, count, ib, lb: arith.ite(((pos | count) & ((1 << ib) - 1)) == 0, ib, -1)
            ),
            "accepted iff",
        ),
        # the end chunk without the subtraction from the fs block
        (
            lambda: P.prove_zero_block(chunk=lambda b, f, end: b & ((1 << f) - 1)),
            "end: zeroing reaches",
        ),
        # x + a instead of x + a - 1: overflows loff_t at x = 2**63 - a (before the math)
        (lambda: P.prove_round_up(lambda x, a: (x + a) & ~(a - 1)), "exact (loff_t)"),
        (lambda: P.prove_block_conversion(to_bytes=lambda b, k: b << (k - 1)), "round_down"),
        # aio moving ki_pos by ret (an error) instead of transferred
        (lambda: P.prove_legacy_ki_pos(lambda pos, ret, tr, aio: pos + ret), "aio"),
        (lambda: P.prove_past_size(lambda pos, n, size: arith.gt(pos + n, size + 1)), "exact"),
    ],
)
def test_a_broken_rule_gets_a_counterexample(proof, fails):
    r = proof()
    assert r.status == "counterexample", r
    assert fails in r.detail and " at " in r.detail


def test_a_check_that_runs_out_of_time_is_unknown_not_a_hang():
    r = P.prove_pads(timeout_ms=1)
    assert r.status == "unknown" and "timeout" in r.detail


# --------------------------------------------------------------------------- overflow boundaries

# Worked by hand: loff_t overflows at 2**63; round_up(x, b) = (x + b - 1) & ~(b - 1)
# overflows once x + b - 1 >= 2**63, i.e. from x = 2**63 - (b - 1); as u64 from 2**64 -
# (b - 1); block << k as loff_t from block = 2**(63 - k); i_size - pos of two loff_t in
# [0, LOFF_MAX] never overflows.
EXPECTED = {
    ("pos + len > i_size", "loff_t"): (1 << 63, False),
    ("offset + ret > i_size", "ssize_t"): (1 << 63, False),
    ("i_size - pos", "loff_t"): (None, False),
    ("ki_pos += ret", "loff_t"): (1 << 63, False),
    ("ret += done_before", "ssize_t"): (1 << 63, True),  # the model bounds no done_before
    ("round_up(end, 4096)", "loff_t"): ((1 << 63) - 4095, True),
    ("round_up(end, 4096)", "u64"): ((1 << 64) - 4095, False),
    ("round_up(end, 512)", "loff_t"): ((1 << 63) - 511, True),
    ("round_up(end, 65536)", "loff_t"): ((1 << 63) - 65535, True),
    ("ALIGN(i_size, 512)", "loff_t"): ((1 << 63) - 511, True),
    ("block_in_file << 9", "loff_t"): (1 << 54, False),
    ("block_in_file << 12", "loff_t"): (1 << 51, False),
}


def test_overflow_boundaries_are_the_hand_derived_values():
    found = {(b.name, b.ctype): b for b in P.overflow_boundaries()}
    assert set(found) == set(EXPECTED)
    for key, (value, reachable) in EXPECTED.items():
        b = found[key]
        assert b.boundary == value, (key, b)
        assert b.status == ("none" if value is None else "found"), b
        assert b.reachable == reachable, b


def test_report_lists_proofs_and_boundaries():
    results = [P.prove_alignment(), P.prove_round_up(lambda x, a: (x + a) & ~(a - 1))]
    text = P.format_report(results, P.overflow_boundaries()[:2])
    assert "proved" in text and "counterexample" in text
    assert "1 proved, 1 counterexample(s), 0 unknown" in text
    assert "pos + len = 2**63" in text and "outside the documented range" in text
