"""Every completion order of a request's in-flight bios, checked symbolically with z3.

For a model state of either engine, the completions still to come are the in-flight
bios and, while it still holds it, the submitter's reference drop. z3 places them in a
symbolic order -- a permutation matrix (party i completes k-th), one per row and column
as pseudo-boolean constraints; plain position variables with ``Distinct`` need
pigeonhole reasoning and time out at 16 bios -- and runs the model's own rules along it:
the error rule of ``dioconf.model.arith`` (iomap: ``first_error``, the cmpxchg of
iomap_dio_set_error, the first error wins; legacy: ``legacy_io_error`` of
dio_bio_complete, the last failing bio *processed* wins, mapped to -EIO/-EAGAIN) and the
reference count (each drop takes one; whoever takes it to zero completes). Checked, for
all orders at once (no enumeration):

1. exactly one party sees the count reach zero, and it never goes below zero
   (iomap_dio_bio_end_io / __iomap_dio_rw's drop; legacy dio_bio_end_aio / drop_refcount);
2. the final error is in the allowed set: iomap: the error already set, else the status
   of some failing party, else 0; legacy: the mapped status of a failing bio that can be
   processed last, else the io_error already set;
3. the allowed set is tight: for each allowed error z3 finds an order reaching it (a
   witness; tests replay witnesses on the model). The parties that can complete are
   reported too.

Legacy: a sync dio's completed bios wait on ``dio->bio_list`` (LIFO) until the submitter
pops them, so processing order is any interleaving of the in-flight bios with the listed
ones in list order; the submitter drops last when it waits (sync, or aio in
dio_await_one). Statuses are a list/dict of ints (0 or -errno) or ``None``: symbolic,
every status in 0, -1..-4095 at once. Bios the rules cannot tell apart (equal statuses,
or all of them when symbolic) are kept in index order, without loss of generality:
swapping two of them changes no rule's input. Encodings are cached per shape.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import z3
from attrs import frozen
from dioconf.model import arith, iomap_complete, iomap_state, legacy_complete, legacy_state
from dioconf.model.evolve import evolve
from dioconf.model.types import Complete

MAX_ERRNO = 4095
TIMEOUT_MS = 2000  # per z3 check
_LEGACY_DONE = {
    legacy_state.FAIL_DIO,
    legacy_state.DIO_COMPLETE,
    legacy_state.WRITE_SYNC,
    legacy_state.KI_COMPLETE,
    legacy_state.FINISHED,
}


@frozen
class Pending:
    """What a model state says about the completions still to come."""

    engine: str
    bios: tuple[int, ...]  # in-flight bio indices
    held: bool  # the submitter still holds its reference
    ref: int  # dio->ref / dio->refcount
    error: int  # dio->error / dio->io_error so far
    queued: tuple[tuple[int, int], ...]  # legacy bio_list, (index, status), newest first
    submitter_last: bool  # the submitter drops only after every bio (it waits first)
    nowait_bio: bool  # legacy: bios carry REQ_NOWAIT (BLK_STS_AGAIN stays -EAGAIN)
    finished: bool  # the completion has already run


@frozen
class OrderCheck:
    """Result of ``check_completion_orders``; ``status``: proved / counterexample / unknown.

    ``parties``: in-flight bios by index, then the listed ones (legacy bio_list, newest
    first), then the submitter if it still holds its reference."""

    engine: str
    parties: tuple[str, ...]
    statuses: tuple[int, ...] | None  # per in-flight bio; None: symbolic
    allowed: frozenset[int] | None  # allowed final errors; None when symbolic
    # parties whose drop can take the count to zero (a waiting iomap submitter is then
    # woken and runs the completion itself, iomap_dio_done L186-196)
    completers: frozenset[str]
    status: str
    detail: str
    witnesses: tuple[tuple[int, tuple[str, ...]], ...]  # (error, an order reaching it)
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "proved"


def pending(engine_name: str, state: Any) -> Pending:
    """Read the in-flight bios, reference count and error of an engine state."""
    if engine_name == "iomap":
        s = state
        done = s.phase == iomap_state.DONE
        held = s.phase not in (iomap_state.WAIT_BIOS, iomap_state.DONE)
        return Pending("iomap", tuple(sorted(s.outstanding)), held and not done, s.ref,
                       s.error, (), False, False, done)  # fmt: skip
    if engine_name == "legacy":
        s = state
        queued, node = [], s.bio_list
        while node is not None:
            queued.append((node[0], node[1]))
            node = node[2]
        waits = not s.is_async or s.phase == legacy_state.DIO_AWAIT_ONE
        done = s.phase in _LEGACY_DONE
        held = s.phase != legacy_state.AIO_WAIT and not done
        return Pending("legacy", tuple(sorted(s.inflight)), held, s.refcount, s.io_error,
                       tuple(queued), waits, s.cfg.write and s.cfg.nowait, done)  # fmt: skip
    raise ValueError(f"unknown engine {engine_name!r}; expected 'iomap' or 'legacy'")


def _statuses(p: Pending, statuses: Mapping[int, int] | Sequence[int] | None) -> tuple | None:
    if statuses is None:
        return None
    if isinstance(statuses, Mapping):
        unknown = set(statuses) - set(p.bios)
        if unknown:
            raise ValueError(f"statuses for bios {sorted(unknown)}, not in flight {p.bios}")
        values = tuple(statuses.get(i, 0) for i in p.bios)
    else:
        values = tuple(statuses)
        if len(values) != len(p.bios):
            raise ValueError(f"{len(values)} statuses for {len(p.bios)} in-flight bios")
    bad = [v for v in values if not -MAX_ERRNO <= v <= 0]
    if bad:
        raise ValueError(f"statuses must be 0 or -errno (-1..-{MAX_ERRNO}), got {bad}")
    return values


def _submitter_status(engine_name: str, state: Any, given: int | None) -> int:
    if given is not None or engine_name != "iomap":
        return given or 0
    if state.phase != iomap_state.AFTER_LOOP:
        return 0  # still submitting: assume it ends its loop without an error
    # __iomap_dio_rw (L814-826): what the submitter sets before its drop (model's rule)
    after, _ = iomap_complete.after_loop(evolve(state, error=0))
    return after.error


def allowed_errors(p: Pending, statuses: Sequence[int], submitter_status: int = 0) -> frozenset:
    """The final errors the rules allow for these statuses, over all completion orders."""
    if p.engine == "iomap":
        if p.error:  # iomap_dio_set_error: an error already set stays
            return frozenset({p.error})
        failing = [st for st in (*statuses, submitter_status if p.held else 0) if st]
        return frozenset(failing) or frozenset({0})
    mapped = [arith.legacy_io_error(0, st, p.nowait_bio) for st in statuses if st]
    deepest = [st for _, st in p.queued if st][-1:]  # processed last among the listed bios
    mapped += [arith.legacy_io_error(0, st, p.nowait_bio) for st in deepest]
    return frozenset(mapped) or frozenset({p.error})


def _iomap_error(error: Any, status: Any, _nowait_bio: Any) -> Any:
    # iomap_dio_set_error (L174-177): a bio's status goes through the cmpxchg
    return arith.first_error(error, status)


Rule = Callable[[Any, Any, Any], Any]
ERROR_RULES: dict[str, Rule] = {
    "iomap": _iomap_error,
    "legacy": arith.legacy_io_error,  # dio_bio_complete (L494-499)
}


class _Encoding:
    """A symbolic order of ``n`` parties and the model's rules run along it.

    The order is a permutation matrix: ``at[i][k]`` says party i completes k-th, exactly
    one per row and per column (pseudo-boolean constraints, which z3 counts with; position
    variables would need pigeonhole reasoning). ``runs`` are groups of parties kept in
    list order: the legacy bio_list (popped newest first), and bios the rules cannot tell
    apart (equal statuses, or all bios when statuses are symbolic), ordered by index
    without loss of generality -- swapping two of them changes no rule's input.
    With an error ``rule``, ``final`` is the error after every party; without one, the
    parties are the reference holders, each dropping one: ``one_completer`` says exactly
    one drop reaches zero (and none goes below), ``completes[i]`` that party i's does.
    """

    def __init__(self, rule: Rule | None, n: int, runs: tuple, last: bool) -> None:
        at = [[z3.Bool(f"at_{i}_{k}") for k in range(n)] for i in range(n)]
        self.at, self.n = at, n
        self.st = [z3.Int(f"st_{i}") for i in range(n)]
        self.err0, self.ref0, self.nowait = z3.Int("error0"), z3.Int("ref0"), z3.Bool("nowait")
        base = [z3.PbEq([(at[i][k], 1) for k in range(n)], 1) for i in range(n)]
        base += [z3.PbEq([(at[j][k], 1) for j in range(n)], 1) for k in range(n)]
        for run in runs:  # a run's parties complete in list order
            for a, b in itertools.pairwise(run):
                base += [z3.Implies(at[b][k], z3.Or(at[a][:k] or [False])) for k in range(n)]
        if last:  # the submitter waits for every bio before it drops its reference
            base.append(at[n - 1][n - 1])
        self.base = base
        if rule is not None:
            err = self.err0
            for k in range(n):
                status = self.st[-1] if n else 0
                for i in reversed(range(n - 1)):
                    status = z3.If(at[i][k], self.st[i], status)
                err = rule(err, status, self.nowait)
            self.final = err
            return
        ref, zeros, nonneg = self.ref0, [], []
        for _ in range(n):  # every party here drops one reference
            ref = ref - 1
            zeros.append(ref == 0)
            nonneg.append(ref >= 0)
        self.one_completer = z3.And(z3.PbEq([(z, 1) for z in zeros], 1), *nonneg) if n else (
            self.ref0 == 0)  # fmt: skip
        self.completes = [z3.Or([z3.And(at[i][k], zeros[k]) for k in range(n)]) for i in range(n)]

    def order(self, m: z3.ModelRef, names: Sequence[str]) -> tuple[str, ...]:
        step = [next(k for k, v in enumerate(row) if z3.is_true(m.eval(v, True)))
                for row in self.at]  # fmt: skip
        return tuple(names[i] for i in sorted(range(self.n), key=step.__getitem__))


_CACHE: dict[tuple, _Encoding] = {}


def _encoding(rule: Rule | None, n: int, runs: tuple, last: bool) -> _Encoding:
    key = (rule, n, runs, last)
    if key not in _CACHE:
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = _Encoding(*key)
    return _CACHE[key]


def check_completion_orders(
    engine_name: str,
    state: Any,
    statuses: Mapping[int, int] | Sequence[int] | None = None,
    *,
    submitter_status: int | None = None,
    tight: bool = True,
    error_rule: Rule | None = None,
    timeout_ms: int = TIMEOUT_MS,
) -> OrderCheck:
    """Check properties 1-3 (module docstring) for the completions pending in ``state``.

    ``statuses``: per in-flight bio (a dict by bio index, or a list in index order), or
    None for symbolic ones. ``submitter_status``: the error the submitter sets before its
    drop (iomap); by default derived from the state at AFTER_LOOP, else 0 (the submitter
    is assumed to issue no more bios). ``tight=False`` skips property 3 and completers.
    ``submitter_status`` is iomap only (the legacy submitter never sets io_error).
    ``error_rule(error, status, nowait_bio) -> error``: the engine's rule by default
    (``ERROR_RULES``); tests pass a broken one.
    """
    t0 = time.perf_counter()
    p = pending(engine_name, state)
    values = _statuses(p, statuses)
    sub = _submitter_status(engine_name, state, submitter_status)
    # parties: bios (grouped by status), listed bios (bio_list order), the submitter
    bios = sorted(zip(p.bios, values or [None] * len(p.bios), strict=True),
                  key=lambda b: (b[1] or 0, b[0]))  # fmt: skip
    names = [f"bio {b}" for b, _ in bios] + [f"bio {b} (listed)" for b, _ in p.queued]
    names += ["submitter"] * p.held
    nb, n = len(bios), len(names)
    parties = (*sorted(names[:nb], key=lambda x: int(x.split()[1])), *names[nb:])
    groups = itertools.groupby(range(nb), key=lambda i: bios[i][1])
    runs = tuple(r for _, g in groups if len(r := tuple(g)) > 1)
    listed = tuple(range(nb, nb + len(p.queued)))
    last = p.held and p.submitter_last

    def result(status: str, detail: str, allowed: frozenset | None = None,
               completers: frozenset = frozenset(), witnesses: tuple = ()) -> OrderCheck:
        return OrderCheck(engine_name, parties, values, allowed, completers, status,
                          detail, witnesses, time.perf_counter() - t0)  # fmt: skip

    if p.finished:
        return result("proved", "already completed: no completion pending", frozenset({p.error}))
    # 1 on the reference holders only: listed bios dropped theirs when they completed,
    # so where they fall in the order changes no count (the projection is exact)
    holders = names[:nb] + names[nb + len(listed) :]
    ref_enc = _encoding(None, len(holders), runs, last)
    rs = z3.Solver()
    rs.set(timeout=timeout_ms)
    rs.add(*ref_enc.base, ref_enc.ref0 == p.ref)
    r = rs.check(z3.Not(ref_enc.one_completer))
    if r == z3.sat:
        order = ", ".join(ref_enc.order(rs.model(), holders))
        why = f"not exactly one party sees the reference count ({p.ref}) reach zero"
        return result("counterexample", f"{why}; order: {order}")
    # 2 on every party, with the engine's error rule
    enc = _encoding(error_rule or ERROR_RULES[engine_name], n, (*runs, listed), last)
    s = z3.Solver()
    s.set(timeout=timeout_ms)
    s.add(*enc.base, enc.err0 == p.error, enc.nowait == p.nowait_bio)
    s.add(*[enc.st[nb + i] == st for i, (_, st) in enumerate(p.queued)])
    if p.held:
        s.add(enc.st[-1] == (sub if engine_name == "iomap" else 0))
    if values is not None:
        s.add(*[enc.st[i] == v for i, (_, v) in enumerate(bios)])
        allowed = allowed_errors(p, values, sub)
        in_allowed = z3.Or([enc.final == v for v in sorted(allowed)])
    else:
        s.add(*[z3.And(enc.st[i] >= -MAX_ERRNO, enc.st[i] <= 0) for i in range(nb)])
        allowed, in_allowed = None, _symbolic_allowed(p, enc, nb, sub)
    r2 = s.check(z3.Not(in_allowed))
    if r2 == z3.sat:
        order = ", ".join(enc.order(s.model(), names))
        why = f"final error {s.model().eval(enc.final, True)} not in the allowed set"
        return result("counterexample", f"{why}; order: {order}", allowed)
    if z3.unknown in (r, r2):
        why = (rs if r == z3.unknown else s).reason_unknown()
        return result("unknown", f"z3: {why} (timeout {timeout_ms} ms)", allowed)
    if not tight:
        return result("proved", "every order: exactly one completer, error allowed", allowed)
    witnesses, completers = [], set()
    for v in sorted(allowed) if allowed is not None else []:  # 3: each error is reachable
        if s.check(enc.final == v) != z3.sat:
            return result("counterexample", f"no order reaches allowed error {v}", allowed)
        witnesses.append((v, enc.order(s.model(), names)))
    for i, cond in enumerate(ref_enc.completes):
        if holders[i] not in completers and rs.check(cond) == z3.sat:  # and its run's peers
            completers.update(holders[j] for j in next((g for g in runs if i in g), (i,)))
    shown = sorted(allowed) if allowed is not None else "the symbolic set"
    detail = f"{n} parties; every order: exactly one completer, final error in {shown}"
    return result("proved", detail, allowed, frozenset(completers), tuple(witnesses))


def _symbolic_allowed(p: Pending, enc: _Encoding, nb: int, sub: int) -> Any:
    """The allowed-set rule over symbolic bio statuses (concrete listed ones)."""
    if p.engine == "iomap":
        cands = enc.st[:nb] + ([enc.st[-1]] if p.held and sub else [])
        if p.error:
            return enc.final == p.error
        some = z3.Or([c != 0 for c in cands] or [False])
        return z3.If(some, z3.Or([z3.And(c != 0, enc.final == c) for c in cands] or [False]),
                     enc.final == 0)  # fmt: skip
    mapped = [(c != 0, arith.legacy_io_error(0, c, p.nowait_bio)) for c in enc.st[:nb]]
    deepest = [st for _, st in p.queued if st][-1:]
    mapped += [(True, arith.legacy_io_error(0, st, p.nowait_bio)) for st in deepest]
    some = z3.Or([f for f, _ in mapped] or [False])
    return z3.If(some, z3.Or([z3.And(f, enc.final == v) for f, v in mapped] or [False]),
                 enc.final == p.error)  # fmt: skip


def allowed_results(
    engine_name: str,
    state: Any,
    statuses: Mapping[int, int] | Sequence[int],
    *,
    submitter_status: int | None = None,
) -> frozenset[int]:
    """The results (``Complete.ret``) the model allows once the pending completions run,
    one per allowed final error, computed by the model's own completion code (assumes
    the submitter issues no more bios)."""
    p = pending(engine_name, state)
    if p.finished:
        raise ValueError("the request has already completed")
    values = _statuses(p, statuses)
    if values is None:
        raise ValueError("allowed_results needs concrete statuses (ints), not None")
    sub = _submitter_status(engine_name, state, submitter_status)
    out = set()
    for err in allowed_errors(p, values, sub):
        if engine_name == "iomap":
            done = iomap_complete.iomap_dio_complete(evolve(state, error=err), "submitter")
            out.add(next(o.ret for o in reversed(done.pending) if isinstance(o, Complete)))
        else:
            s = evolve(state, io_error=err, bio_list=None, phase=legacy_state.DIO_COMPLETE)
            out.add(legacy_complete.dio_complete(s)[0].out_ret)
    return frozenset(out)
