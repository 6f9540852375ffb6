"""z3 proofs of the model's arithmetic rules over 64-bit bit-vectors, with overflow.

Every proof runs a function of ``dioconf.model.arith`` -- the code the model runs -- twice:
on 64-bit vectors, which compute what the kernel computes (loff_t, ssize_t, size_t,
wrapping), and on 128-bit vectors holding the same inputs extended, which compute the
mathematical value (no expression here gets near 2**127). The obligation "exact" says the
two agree: no overflow. The other obligations state the rule's property with means the
model does not use (``%`` as z3 URem, bounds), so a wrong rule cannot prove itself. An
obligation is proved when "premises and not obligation" is unsatisfiable, in each of a
few cases that partition the inputs (one per block size, ...: small queries are fast);
``sat`` is a counterexample, reported with the inputs. The rule under proof is a
parameter, so a deliberately broken one can be passed in (tests/test_proofs.py).

``overflow_boundaries`` asks z3 (Optimize, minimality re-checked) for the smallest input
at which a kernel-width computation differs from the mathematical one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import z3
from attrs import frozen
from dioconf.model import arith

W, WIDE = 64, 128  # kernel width; "mathematical" width
LOFF_MAX = (1 << 63) - 1  # also SSIZE_MAX
U64_MAX = (1 << 64) - 1
MAX_ERRNO = 4095
TIMEOUT_MS = 3000  # per z3 check; a check that runs out makes the proof "unknown"

Rule = Callable[..., Any]
Case = tuple[str, Sequence[Any]]


@frozen
class ProofResult:
    """One proof; ``status`` is "proved", "counterexample" or "unknown"."""

    name: str
    seed: str
    statement: str
    status: str
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "proved"


@frozen
class OverflowBoundary:
    """The smallest ``measure`` at which ``expression`` computed in ``ctype`` differs from
    the mathematical value: ``status`` "found" (minimality proved), "none" or "unknown".
    ``limit``: the largest measure the model's documented input range allows (None: the
    model sets no bound)."""

    name: str
    seed: str
    expression: str
    ctype: str
    measure: str
    status: str
    boundary: int | None
    limit: int | None
    witness: tuple[tuple[str, int], ...]
    detail: str
    seconds: float

    @property
    def reachable(self) -> bool:
        """The boundary lies inside the model's documented input range."""
        return self.boundary is not None and (self.limit is None or self.boundary <= self.limit)


class Var:
    """One input: the 64-bit vector ``n`` and its extension ``w`` to the wide width."""

    def __init__(self, name: str, signed: bool = True) -> None:
        self.name, self.signed = name, signed
        self.n = z3.BitVec(name, W)
        self.w = (z3.SignExt if signed else z3.ZeroExt)(WIDE - W, self.n)


def exact(narrow: Any, wide: Any, signed: bool = True) -> Any:
    """The 64-bit result, read as its C type, equals the mathematical one."""
    if isinstance(narrow, bool | z3.BoolRef):
        return narrow == wide
    return (z3.SignExt if signed else z3.ZeroExt)(WIDE - W, narrow) == wide


def _value(m: z3.ModelRef, v: Var) -> int:
    x = m.eval(v.n, model_completion=True).as_long()
    return x - (1 << W) if v.signed and x >> (W - 1) else x


def show(v: int) -> str:
    """``v`` near a power of two as ``2**k - d``; else decimal."""
    for k in range(20, 66):
        d = v - (1 << k)
        if abs(d) < 1 << 17:
            return f"2**{k}" + (f" - {-d}" if d < 0 else f" + {d}" if d else "")
    return str(v)


def split(label: str, cond: Any) -> list[Case]:
    """Two cases, ``cond`` and its negation (they only partition the inputs)."""
    return [(label, [cond]), (f"not {label}", [z3.Not(cond)])]


def pow2_cases(v: Var, lo: int, hi: int) -> list[Case]:
    """One case per power of two 2**lo .. 2**hi for ``v``."""
    return [(f"{v.name}={1 << k}", [v.n == (1 << k)]) for k in range(lo, hi + 1)]


def prove(name: str, seed: str, statement: str, inputs: Sequence[Var], premises: Sequence[Any],
          obligations: dict[str, Any], timeout_ms: int = TIMEOUT_MS,
          cases: Sequence[Case] = (("", ()),)) -> ProofResult:  # fmt: skip
    """Prove that ``premises`` imply every obligation, in every one of ``cases``."""
    t0, checks, unknown = time.perf_counter(), 0, ""
    status, detail = "proved", f"{len(obligations)} obligation(s): " + "; ".join(obligations)
    for label, extra in cases:
        for what, ob in obligations.items():
            s = z3.SolverFor("QF_BV")
            s.set(timeout=timeout_ms)
            s.add(*premises, *extra, z3.Not(ob))
            r, checks = s.check(), checks + 1
            where = f" ({label})" if label else ""
            if r == z3.sat:  # a counterexample ends the proof
                at = ", ".join(f"{v.name}={show(_value(s.model(), v))}" for v in inputs)
                status, detail = "counterexample", f"fails: {what} -- at {at}{where}"
                return ProofResult(name, seed, statement, status, detail, time.perf_counter() - t0)
            if r != z3.unsat and not unknown:
                unknown = f"{what}{where}: z3 {s.reason_unknown()} (timeout {timeout_ms} ms)"
    if unknown:
        status, detail = "unknown", unknown
    detail += f" [{checks} z3 checks]"
    return ProofResult(name, seed, statement, status, detail, time.perf_counter() - t0)


# --------------------------------------------------------------------------- proofs


def prove_short_read_cap(
    cap: Rule = arith.short_read_cap, *, legacy: bool = False, timeout_ms: int = TIMEOUT_MS
) -> ProofResult:
    """iomap_dio_complete's (or legacy dio_complete's) cap of a read at i_size."""
    pos, i_size, size = Var("pos"), Var("i_size"), Var("dio_result" if legacy else "dio_size")
    n, w = cap(pos.n, size.n, i_size.n), cap(pos.w, size.w, i_size.w)
    # size <= len and pos + len <= LOFF_MAX (Request): pos + size <= LOFF_MAX
    premises = [pos.w >= 0, pos.w < i_size.w, i_size.w <= LOFF_MAX, size.w > 0]
    return prove(
        "legacy short-read cap" if legacy else "short-read cap",
        "dio_complete (L253-255)" if legacy else "iomap_dio_complete (L119-122)",
        "for 0 <= pos < i_size <= LOFF_MAX, 0 < size <= len and pos + len <= LOFF_MAX: "
        "ret = min(size, i_size - pos) as computed has 0 < ret <= size and pos + ret <= "
        "i_size, no overflow",
        [pos, i_size, size],
        [*premises, pos.w + size.w <= LOFF_MAX],
        {
            "exact (ssize_t ret)": exact(n, w),
            "0 < ret <= size": z3.And(w > 0, w <= size.w),
            "pos + ret <= i_size": pos.w + w <= i_size.w,
            "ret is the largest such (ret == size or pos + ret == i_size)": z3.Or(
                w == size.w, pos.w + w == i_size.w
            ),
        },
        timeout_ms,
        split("the read ends past i_size", pos.w + size.w > i_size.w),
    )


def prove_alignment(misaligned: Rule = arith.misaligned, *, timeout_ms: int = TIMEOUT_MS):
    """iomap_dio_bio_iter's alignment test, against ``%``."""
    pos, length, align = Var("pos"), Var("length"), Var("align", False)
    spec = z3.And(z3.URem(pos.n, align.n) == 0, z3.URem(length.n, align.n) == 0)
    test = misaligned(pos.n, length.n, align.n) == 0
    return prove("alignment", "iomap_dio_bio_iter (L413-414)",
        "for align a power of two 1..2**16 and loff_t pos, length >= 0: (pos | length) & "
        "(align - 1) == 0 iff pos % align == 0 and length % align == 0",
        [pos, length, align],
        [pos.n >= 0, length.n >= 0],
        {"test iff pos % align == 0 and length % align == 0": test == spec},
        timeout_ms,
        pow2_cases(align, 0, 16),
    )


def prove_legacy_alignment(blkbits: Rule = arith.blockdev_blkbits, *, timeout_ms=TIMEOUT_MS):
    """__blockdev_direct_IO's dio block: the fs block, else the logical block, else -EINVAL."""
    pos, count, ib, lb = Var("pos"), Var("count", False), Var("i_blkbits", False), Var("lbs_bits")
    res = blkbits(pos.n, count.n, ib.n, lb.n)

    def aligned(bits: Any) -> Any:
        block = z3.BitVecVal(1, W) << bits
        return z3.And(z3.URem(pos.n, block) == 0, z3.URem(count.n, block) == 0)

    fs_ok, lbs_ok = aligned(ib.n), aligned(lb.n)
    cases = [(f"i_blkbits={i}, lbs_bits={j}", [ib.n == i, lb.n == j])
             for i in range(9, 17) for j in range(9, i + 1)]  # fmt: skip
    return prove("legacy alignment", "__blockdev_direct_IO (L1144-1150)",
        "for 9 <= lbs_bits <= i_blkbits <= 16, loff_t pos >= 0 and size_t count: accepted iff "
        "pos and count are multiples of the logical block; blkbits = i_blkbits if they are "
        "multiples of the fs block, else lbs_bits",
        [pos, count, ib, lb],
        [pos.n >= 0],
        {
            "accepted iff logical-block aligned": (res != -1) == lbs_ok,
            "fs-block aligned -> fs block": z3.Implies(fs_ok, res == ib.n),
            "else logical block": z3.Implies(z3.And(lbs_ok, z3.Not(fs_ok)), res == lb.n),
        },
        timeout_ms,
        cases,
    )


def prove_pads(
    head: Rule = arith.zero_head, tail: Rule = arith.zero_tail, *, timeout_ms: int = TIMEOUT_MS
) -> ProofResult:
    """iomap_dio_bio_iter's head and tail zeroing around the data [pos, end)."""
    pos, end, bs = Var("pos"), Var("end"), Var("fs_block_size", False)
    (hs, hl), (ts, tl) = head(pos.n, bs.n), tail(end.n, bs.n)
    (hsw, hlw), (tsw, tlw) = head(pos.w, bs.w), tail(end.w, bs.w)
    top = ts + tl  # envelope end, as u64 (exact: < 2**64); as loff_t see overflow_boundaries
    return prove("pads", "iomap_dio_bio_iter (L518-525, L557-564) / iomap_dio_zero",
        "for fs block sizes 2**9..2**16 and 0 <= pos < end <= LOFF_MAX: head pad, data and "
        "tail pad exactly cover [round_down(pos), round_up(end)), the pads do not overlap "
        "the data, each pad < fs block size, no overflow",
        [pos, end, bs],
        [pos.n >= 0, pos.n < end.n],
        {
            "exact (pad lengths, zeroing starts)": z3.And(
                exact(hs, hsw), exact(hl, hlw), exact(ts, tsw), exact(tl, tlw)
            ),
            "each pad < fs block size (fits unsigned len)": z3.And(
                z3.ULT(hl, bs.n), z3.ULT(tl, bs.n)
            ),
            "head pad ends at pos, tail pad starts at end": z3.And(
                hsw + hlw == pos.w, tsw == end.w
            ),
            "head start = round_down(pos): a block multiple in (pos - bs, pos]": z3.And(
                z3.URem(hs, bs.n) == 0, hs >= 0, hs <= pos.n
            ),
            "tail end = round_up(end): a block multiple in [end, end + bs)": z3.And(
                z3.URem(top, bs.n) == 0, z3.ULE(end.n, top)
            ),
        },
        timeout_ms,
        pow2_cases(bs, 9, 16),
    )


def prove_ret_accounting(pos_after: Rule = arith.ki_pos_after, total: Rule = arith.add_done_before,
                         *, timeout_ms: int = TIMEOUT_MS) -> ProofResult:  # fmt: skip
    """iomap_dio_complete: ki_pos and the result, from ret and done_before."""
    pos, length, ret, db = Var("pos"), Var("len", False), Var("ret"), Var("done_before", False)
    pn, pw = pos_after(pos.n, ret.n), pos_after(pos.w, ret.w)
    tn, tw = total(ret.n, db.n), total(ret.w, db.w)
    premises = [pos.w >= 0, pos.w + length.w <= LOFF_MAX, db.w + length.w <= LOFF_MAX]
    return prove("ret accounting", "iomap_dio_complete (L141-153)",
        "for ret = -errno, 0 or the (capped) bytes done <= len, pos + len <= LOFF_MAX and "
        "done_before + len <= SSIZE_MAX: if ret > 0, ki_pos = pos + ret and the result is "
        "ret + done_before (> 0); else ki_pos = pos and the result is ret (done_before is "
        "not added); no overflow",
        [pos, length, ret, db],
        [*premises, ret.w >= -MAX_ERRNO, ret.w <= length.w],
        {
            "exact (result as ssize_t)": exact(tn, tw),
            "exact (ki_pos as loff_t)": exact(pn, pw),
            "ret > 0: ki_pos = pos + ret, result = ret + done_before > 0": z3.Implies(
                ret.w > 0, z3.And(pw - pos.w == ret.w, tw - db.w == ret.w, tw > 0)
            ),
            "ret <= 0: result = ret, ki_pos = pos": z3.Implies(
                ret.w <= 0, z3.And(tw == ret.w, pw == pos.w)
            ),
            "pos <= ki_pos <= pos + len": z3.And(pos.w <= pw, pw <= pos.w + length.w),
        },
        timeout_ms,
        split("ret > 0", ret.n > 0),
    )


def prove_legacy_ki_pos(fn: Rule = arith.legacy_ki_pos, *, timeout_ms: int = TIMEOUT_MS):
    """dio_complete (aio) and the sync caller: how far ki_pos moves."""
    pos, count, tr, ret = Var("pos"), Var("count", False), Var("transferred"), Var("ret")
    aio = z3.Bool("is_async")
    n, w = fn(pos.n, ret.n, tr.n, aio), fn(pos.w, ret.w, tr.w, aio)
    premises = [pos.w >= 0, pos.w + count.w <= LOFF_MAX, tr.w >= 0, tr.w <= count.w]
    return prove("legacy ki_pos", "dio_complete (L305) / the caller of __blockdev_direct_IO",
        "for 0 <= transferred <= count, pos + count <= LOFF_MAX and ret = transferred or "
        "-errno/0: aio moves ki_pos by transferred (also when ret is an error), sync by "
        "max(ret, 0); no overflow",
        [pos, count, tr, ret],
        [*premises, z3.Or(ret.w == tr.w, z3.And(ret.w >= -MAX_ERRNO, ret.w <= 0))],
        {
            "exact (loff_t)": exact(n, w),
            "aio: ki_pos += transferred": z3.Implies(aio, w - pos.w == tr.w),
            "sync: ki_pos += max(ret, 0)": z3.Implies(
                z3.Not(aio), w - pos.w == z3.If(ret.w > 0, ret.w, 0)
            ),
            "pos <= ki_pos <= pos + count": z3.And(pos.w <= w, w <= pos.w + count.w),
        },
        timeout_ms,
        split("is_async", aio),
    )


def prove_zero_block(chunk: Rule = arith.zero_block_chunk, to_bytes: Rule = arith.blocks_to_bytes,
                     *, timeout_ms: int = TIMEOUT_MS) -> ProofResult:  # fmt: skip
    """dio_zero_block's ranges (dio blocks) at the start and the end of a new fs block."""
    b, f, bits = Var("block_in_file", False), Var("blkfactor", False), Var("blkbits", False)
    per, fs_block = z3.BitVecVal(1, W) << f.n, z3.BitVecVal(1, W) << (bits.n + f.n)
    obligations: dict[str, Any] = {}
    for end in (False, True):
        n, w, side = chunk(b.n, f.n, end), chunk(b.w, f.w, end), ("end" if end else "start")
        edge = b.n + n if end else b.n - n
        obligations[f"{side}: zeroing reaches an fs block boundary"] = z3.URem(edge, per) == 0
        obligations[f"{side}: nothing iff block_in_file is on a boundary"] = (n == 0) == (
            z3.URem(b.n, per) == 0
        )
        obligations[f"{side}: exact, bytes < fs block size"] = z3.And(
            exact(n, w, False),
            exact(to_bytes(n, bits.n), to_bytes(w, bits.w), False),
            z3.ULT(to_bytes(n, bits.n), fs_block),
        )
    cases = [(f"blkfactor={i}, blkbits={j}", [f.n == i, bits.n == j])
             for i in range(1, 8) for j in range(9, 17 - i)]  # fmt: skip
    return prove("dio_zero_block ranges", "dio_zero_block (L853-866)",
        "for blkfactor >= 1, blkbits >= 9, blkbits + blkfactor <= 16 and block_in_file of an "
        "loff_t: the zeroed dio blocks run from the fs block start to block_in_file (start) "
        "or from it to the fs block end (end), none on a boundary, less than an fs block",
        [b, f, bits],
        [(b.w << bits.w) <= LOFF_MAX],
        obligations,
        timeout_ms,
        cases,
    )


def prove_block_conversion(to_block: Rule = arith.pos_to_block,
                           to_bytes: Rule = arith.blocks_to_bytes, *,
                           timeout_ms: int = TIMEOUT_MS) -> ProofResult:  # fmt: skip
    """offset >> blkbits and block << blkbits (__blockdev_direct_IO, submit_page_section)."""
    pos, bits = Var("pos"), Var("blkbits", False)
    blk, blk_w = to_block(pos.n, bits.n), to_block(pos.w, bits.w)
    back, back_w = to_bytes(blk, bits.n), to_bytes(blk_w, bits.w)
    down = pos.n - z3.URem(pos.n, z3.BitVecVal(1, W) << bits.n)
    return prove(
        "block conversion",
        "__blockdev_direct_IO (L1209, L1224) / submit_page_section (L812)",
        "for 0 <= pos <= LOFF_MAX and 9 <= blkbits <= 16: (pos >> blkbits) << blkbits is pos "
        "rounded down to the dio block, no overflow",
        [pos, bits],
        [pos.n >= 0],
        {
            "exact (sector_t block, loff_t offset)": z3.And(
                exact(blk, blk_w, False), exact(back, back_w)
            ),
            "back == round_down(pos, dio block)": back == down,
        },
        timeout_ms,
        [(f"blkbits={k}", [bits.n == k]) for k in range(9, 17)],
    )


def prove_round_up(fn: Rule = arith.round_up, *, timeout_ms: int = TIMEOUT_MS) -> ProofResult:
    """ALIGN(i_size, dio block) of do_direct_IO's hole-at-EOF test."""
    x, a = Var("i_size"), Var("dio_block", False)
    r, rw = fn(x.n, a.n), fn(x.w, a.w)
    return prove("round_up (ALIGN)", "do_direct_IO (L980-987)",
        "for dio blocks 2**9..2**16 and 0 <= i_size <= LOFF_MAX - (dio_block - 1): "
        "ALIGN(i_size, dio_block) is the smallest block multiple >= i_size, no overflow",
        [x, a],
        [x.w >= 0, x.w + a.w - 1 <= LOFF_MAX],
        {
            "exact (loff_t)": exact(r, rw),
            "a block multiple in [i_size, i_size + dio_block)": z3.And(
                z3.URem(r, a.n) == 0, x.n <= r, rw - x.w < a.w
            ),
        },
        timeout_ms,
        pow2_cases(a, 9, 16),
    )


def prove_past_size(fn: Rule = arith.past_size, *, timeout_ms: int = TIMEOUT_MS):
    """pos + len > i_size of __iomap_dio_rw and __blockdev_direct_IO."""
    pos, length, size = Var("pos"), Var("len", False), Var("i_size")
    return prove(
        "past i_size",
        "__iomap_dio_rw (L726-731, L757) / __blockdev_direct_IO (L1166-1171)",
        "for pos >= 0, pos + len <= LOFF_MAX and i_size >= 0: the loff_t test "
        "pos + len > i_size gives the mathematical answer",
        [pos, length, size],
        [pos.w >= 0, pos.w + length.w <= LOFF_MAX, size.w >= 0],
        {"exact": exact(fn(pos.n, length.n, size.n), fn(pos.w, length.w, size.w))},
        timeout_ms,
    )


PROOFS: tuple[Callable[..., ProofResult], ...] = (
    prove_short_read_cap, functools.partial(prove_short_read_cap, legacy=True), prove_alignment,
    prove_legacy_alignment, prove_pads, prove_ret_accounting, prove_legacy_ki_pos,
    prove_zero_block, prove_block_conversion, prove_round_up, prove_past_size,
)  # fmt: skip


def run_proofs(timeout_ms: int = TIMEOUT_MS) -> list[ProofResult]:
    """Run every proof of the model's own arithmetic (``timeout_ms`` per z3 check)."""
    return [p(timeout_ms=timeout_ms) for p in PROOFS]


# --------------------------------------------------------------------------- overflow boundaries


def find_boundary(name: str, seed: str, expression: str, ctype: str, fn: Rule,
                  inputs: Sequence[tuple[Var, int, int]], measure: tuple[str, Rule],
                  limit: int | None, timeout_ms: int = TIMEOUT_MS) -> OverflowBoundary:  # fmt: skip
    """Smallest ``measure`` (of the wide inputs) at which ``fn`` computed in ``ctype`` (64
    bits) differs from ``fn`` computed exactly, for inputs in their [lo, hi] ranges."""
    t0, vs = time.perf_counter(), [v for v, _, _ in inputs]
    ranges = [z3.And(lo <= v.w, v.w <= hi) for v, lo, hi in inputs]
    signed = not ctype.startswith(("u", "size_t", "sector_t"))
    differs = z3.Not(exact(fn(*[v.n for v in vs]), fn(*[v.w for v in vs]), signed))
    text, of = measure
    m = of(*[v.w for v in vs])
    opt = z3.Optimize()
    opt.set(timeout=timeout_ms)
    opt.add(*ranges, differs)
    opt.minimize(m)
    r = opt.check()
    status, value, witness, detail = "none", None, (), "never differs for inputs in range"
    if r == z3.sat:
        model = opt.model()
        value = model.eval(m, model_completion=True).as_long()
        witness = tuple((v.name, _value(model, v)) for v in vs)
        below = z3.SolverFor("QF_BV")  # minimality: no input with a smaller measure differs
        below.set(timeout=timeout_ms)
        below.add(*ranges, differs, z3.ULT(m, value))
        at = ", ".join(f"{k}={show(v)}" for k, v in witness)
        status, detail = "found", f"{text} = {show(value)} (e.g. {at})"
        if below.check() != z3.unsat:
            status, detail = "unknown", f"{detail}; minimality not confirmed"
    elif r != z3.unsat:
        status, detail = "unknown", f"z3: {opt.reason_unknown()}"
    return OverflowBoundary(name, seed, expression, ctype, text, status, value, limit, witness,
                            detail, time.perf_counter() - t0)  # fmt: skip


def overflow_boundaries(timeout_ms: int = TIMEOUT_MS) -> list[OverflowBoundary]:
    """Where kernel-width versions of the model's computations first overflow."""
    pos, length, i_size, size = Var("pos"), Var("len", False), Var("i_size"), Var("size")
    end, uend, blk = Var("end"), Var("end", False), Var("block_in_file", False)
    ret, db = Var("ret"), Var("done_before", False)
    sum2 = lambda a, b, *_: a + b  # noqa: E731
    first = lambda a, *_: a  # noqa: E731
    loff, u64 = (0, LOFF_MAX), (0, U64_MAX)
    # name, seed, expression, C type, rule, inputs with ranges, measure, documented limit
    table: list[tuple[Any, ...]] = [
        ("pos + len > i_size", "__iomap_dio_rw (L757)", "pos + len", "loff_t", arith.past_size,
         [(pos, *loff), (length, *u64), (i_size, *loff)], ("pos + len", sum2), LOFF_MAX),
        ("offset + ret > i_size", "iomap_dio_complete (L120)", "offset + ret", "ssize_t",
         arith.short_read_cap, [(pos, *loff), (size, *loff), (i_size, *loff)],
         ("pos + size", sum2), LOFF_MAX),
        ("i_size - pos", "iomap_dio_complete (L122)", "dio->i_size - offset", "loff_t",
         lambda i, p: i - p, [(i_size, *loff), (pos, *loff)], ("i_size", first), LOFF_MAX),
        ("ki_pos += ret", "iomap_dio_complete (L144)", "ki_pos + ret", "loff_t",
         arith.ki_pos_after, [(pos, *loff), (ret, 1, LOFF_MAX)], ("pos + ret", sum2), LOFF_MAX),
        ("ret += done_before", "iomap_dio_complete (L153)", "ret + done_before", "ssize_t",
         arith.add_done_before, [(ret, 1, LOFF_MAX), (db, *u64)],
         ("ret + done_before", sum2), None),
    ]  # fmt: skip
    for bs, ctype, var, hi in ((4096, "loff_t", end, LOFF_MAX), (4096, "u64", uend, U64_MAX),
                               (512, "loff_t", end, LOFF_MAX), (65536, "loff_t", end, LOFF_MAX)):
        table.append((f"round_up(end, {bs})", "iomap_dio_bio_iter (L557-564): zeroing ends there",
                      f"(end + {bs - 1}) & ~{bs - 1}", ctype,
                      functools.partial(arith.round_up, align=bs), [(var, 0, hi)],
                      ("end", first), LOFF_MAX))  # fmt: skip
    table.append(("ALIGN(i_size, 512)", "do_direct_IO (L980-987)", "(i_size + 511) & ~511",
                  "loff_t", functools.partial(arith.round_up, align=512), [(i_size, *loff)],
                  ("i_size", first), LOFF_MAX))  # fmt: skip
    for bits in (9, 12):
        table.append((f"block_in_file << {bits}", "submit_page_section (L812)",
                      f"cur_page_fs_offset = block_in_file << {bits}", "loff_t",
                      functools.partial(arith.blocks_to_bytes, blkbits=bits), [(blk, *u64)],
                      ("block_in_file", first), LOFF_MAX >> bits))  # fmt: skip
    return [find_boundary(*row, timeout_ms=timeout_ms) for row in table]


# --------------------------------------------------------------------------- report


def format_report(
    results: Sequence[ProofResult], boundaries: Sequence[OverflowBoundary] = ()
) -> str:
    """A plain-text report of proof results and overflow boundaries."""
    lines = ["z3 proofs of the model's arithmetic (model/arith.py), 64-bit bit-vectors:"]
    for r in results:
        lines += [f"  {r.status:<14} {r.seconds:6.3f}s  {r.name} -- {r.seed}",
                  f"      {r.statement}", f"      {r.detail}"]  # fmt: skip
    n = {s: sum(r.status == s for r in results) for s in ("proved", "counterexample", "unknown")}
    lines.append(f"{n['proved']} proved, {n['counterexample']} counterexample(s), "
                 f"{n['unknown']} unknown in {sum(r.seconds for r in results):.2f}s")  # fmt: skip
    if boundaries:
        lines.append("overflow boundaries (smallest input where the kernel width differs):")
    for b in boundaries:
        where = "" if b.boundary is None else (
            "; reachable in the model's documented range" if b.reachable
            else "; outside the documented range")  # fmt: skip
        limit = "" if b.limit is None else f" (limit {show(b.limit)})"
        lines += [f"  {b.name} [{b.expression} as {b.ctype}] -- {b.seed}",
                  f"      {b.status}: {b.detail}{where}{limit}  {b.seconds:.3f}s"]  # fmt: skip
    return "\n".join(lines)
