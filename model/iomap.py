"""Model of the iomap direct-I/O engine, fs/iomap/direct-io.c (seed: iomap-direct-io.c).

This module holds the entry rules (__iomap_dio_rw up to the iomap_iter loop) and the
protocol; ``iomap_iter.py``, ``iomap_bio.py`` and ``iomap_complete.py`` hold the rest.
Each function models one kernel function or one rule inside it and names it in
a one-line comment. ``step`` runs silent transitions until the engine produces an
action; ``feed`` accepts the input asked for, or a bio completion / user-buffer fault
at any time. Line numbers (L…) refer to ../shared/seeds/iomap-direct-io.c.
"""

from __future__ import annotations

from collections.abc import Callable

from . import arith
from . import errno as E
from .engine import ModelEngine
from .evolve import evolve
from .iomap_bio import bio_loop, bio_next, bio_out, bio_tail, cut_answer, cut_run
from .iomap_complete import after_loop, bio_end_all, iomap_dio_bio_end_io
from .iomap_iter import iomap_dio_iter, iomap_iter, map_answer
from .iomap_state import (
    AFTER_LOOP,
    BIO_LOOP,
    BIO_NEXT,
    BIO_OUT,
    BIO_TAIL,
    BUF_WRITETHROUGH,
    COMP_WORK,
    DIO_ITER,
    DONE,
    FSBLOCK_ALIGNED,
    ITER,
    NEED_SYNC,
    NO_INVALIDATE,
    START,
    USER_BACKED,
    WAIT_BIOS,
    WAIT_CUT,
    WAIT_INVALIDATE,
    WAIT_MAP,
    WAIT_WRITEBACK,
    WRITE,
    WRITE_THROUGH,
    IomapState,
)
from .types import (
    Action,
    BioEnd,
    BioEndAll,
    Blocked,
    Complete,
    Cut,
    DefaultCuts,
    Emit,
    Fault,
    Finished,
    Geometry,
    InodeSize,
    Input,
    InvalidateResult,
    MapError,
    Mapping,
    ModelUsageError,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    Request,
    WritebackResult,
)

Rule = Callable[[IomapState], tuple[IomapState, Action | None]]


# --------------------------------------------------------------------------- entry


def start(geo: Geometry, req: Request, i_size: int, glue: str = "none") -> IomapState:
    """A request enters iomap_dio_rw() with the inode at ``i_size``; ``glue`` names the
    filesystem code around the engine (``none`` or ``btrfs``)."""
    if glue not in ("none", "btrfs", "ext4"):
        raise ModelUsageError(f"unknown filesystem glue {glue!r} (known: none, btrfs, ext4)")
    if i_size < 0:
        raise ModelUsageError(f"i_size must be >= 0, got {i_size}")
    if "LOCKING" in req.dio or "SKIP_HOLES" in req.dio:
        raise ModelUsageError("LOCKING/SKIP_HOLES are flags of the legacy engine, not iomap")
    flags = 0
    if "FSBLOCK_ALIGNED" in req.dio:
        flags |= FSBLOCK_ALIGNED
    if "BUF_WRITETHROUGH" in req.dio:
        flags |= BUF_WRITETHROUGH  # RFC: dio->flags keeps IOMAP_DIO_BUF_WRITETHROUGH
    return IomapState(
        geo=geo,
        req=req,
        glue=glue,
        flags=flags,
        i_size=i_size,
        inode_size=i_size,
        pos=req.pos,
        len=req.len,
        # __iomap_dio_rw (L682-683): sync kiocbs and FORCE_WAIT wait for completion
        wait=req.sync or "FORCE_WAIT" in req.dio,
    )


def _return_early(s: IomapState, ret: int, why: str) -> tuple[IomapState, Action | None]:
    # __iomap_dio_rw out_free_dio (L875-879): nothing issued; ret or 0 goes straight back
    out = Complete(ret=ret, pos_after=s.req.pos, i_size=s.inode_size, rule=why)
    return evolve(s, phase=DONE, pending=(out,)), None


def dio_rw_begin(s: IomapState) -> tuple[IomapState, Action | None]:
    req = s.req
    # __iomap_dio_rw (L690-691): an empty iterator returns NULL -> 0
    if req.len == 0:
        return _return_early(s, 0, "__iomap_dio_rw: zero-length request returns 0")
    if not req.is_write:
        # __iomap_dio_rw (L713-714): a read at or after i_size returns 0, before any check
        if req.pos >= s.i_size:
            return _return_early(s, 0, "__iomap_dio_rw: read at/after i_size returns 0")
        # __iomap_dio_rw (L716-721): user-backed; kiocb_write_and_wait() first
        s = evolve(s, flags=s.flags | USER_BACKED, phase=WAIT_WRITEBACK)
        return s, NeedWriteback(req.pos, req.len)
    flags = s.flags | WRITE
    # __iomap_dio_rw (L726-731): OVERWRITE_ONLY fails with -EAGAIN at or past EOF
    if "OVERWRITE_ONLY" in req.dio and (
        req.pos >= s.i_size or arith.past_size(req.pos, req.len, s.i_size)
    ):
        return _return_early(s, E.EAGAIN, "__iomap_dio_rw: OVERWRITE_ONLY write reaches EOF")
    # __iomap_dio_rw (L738-752): dsync needs sync completion; O_DSYNC alone tries FUA
    # RFC writethrough: BUF_WRITETHROUGH requests get neither (sync is the caller's job)
    if req.is_dsync and not flags & BUF_WRITETHROUGH:
        flags |= NEED_SYNC
        if "SYNC" not in req.iocb:
            flags |= WRITE_THROUGH
    # __iomap_dio_rw (L757-758): i_size updates need process context
    # RFC writethrough: BUF_WRITETHROUGH always completes in process context
    if arith.past_size(req.pos, req.len, s.i_size) or flags & BUF_WRITETHROUGH:
        flags |= COMP_WORK
    if flags & BUF_WRITETHROUGH:
        # RFC writethrough: no invalidation before, nor after (NO_INVALIDATE)
        return evolve(s, flags=flags | NO_INVALIDATE, phase=ITER), None
    # __iomap_dio_rw (L765): kiocb_invalidate_pages() over the write range
    s = evolve(s, flags=flags, phase=WAIT_INVALIDATE)
    return s, NeedInvalidate(req.pos, req.len)


def invalidate_result(s: IomapState, ret: int) -> IomapState:
    if ret == 0:
        return evolve(s, phase=ITER)
    if ret == E.EAGAIN:
        # __iomap_dio_rw (L767): -EAGAIN passes through unchanged
        why = "__iomap_dio_rw: kiocb_invalidate_pages returned -EAGAIN"
    elif "ATOMIC" in s.req.iocb:
        # __iomap_dio_rw (L770-776): atomic writes turn invalidation failure into -EAGAIN
        ret, why = E.EAGAIN, "__iomap_dio_rw: atomic write, invalidation failed -> -EAGAIN"
    else:
        # __iomap_dio_rw (L777-780): fall back to buffered write
        ret, why = E.ENOTBLK, "__iomap_dio_rw: invalidation failed -> -ENOTBLK (buffered fallback)"
    s, _ = _return_early(s, ret, why)
    return s


def writeback_result(s: IomapState, ret: int) -> IomapState:
    if ret == 0:
        return evolve(s, phase=ITER)
    # __iomap_dio_rw (L719-721): kiocb_write_and_wait() error is returned as is
    s, _ = _return_early(s, ret, "__iomap_dio_rw: kiocb_write_and_wait failed")
    return s


# --------------------------------------------------------------------------- iomap_iter


# --------------------------------------------------------------------------- protocol


def _wait_bios(s: IomapState) -> tuple[IomapState, Action | None]:
    return s, Blocked(s.outstanding, rule="__iomap_dio_rw: waiting for bios")


_RULES: dict[str, Rule] = {
    START: dio_rw_begin,
    WAIT_WRITEBACK: lambda s: (s, NeedWriteback(s.req.pos, s.req.len)),
    WAIT_INVALIDATE: lambda s: (s, NeedInvalidate(s.req.pos, s.req.len)),
    ITER: iomap_iter,
    WAIT_MAP: lambda s: (
        s,
        NeedMap(s.pos, s.len, s.req.is_write, rule=f"iomap_iter: ->iomap_begin(pos={s.pos})"),
    ),
    DIO_ITER: iomap_dio_iter,
    BIO_LOOP: bio_loop,
    WAIT_CUT: lambda s: (s, s.cut),
    BIO_NEXT: bio_next,
    BIO_TAIL: bio_tail,
    BIO_OUT: bio_out,
    AFTER_LOOP: after_loop,
    WAIT_BIOS: _wait_bios,
    DONE: lambda s: (s, Finished()),
}


def step(s: IomapState) -> tuple[IomapState, Action]:
    """Run silent transitions until the engine has an action."""
    while True:
        if s.pending:
            return evolve(s, pending=s.pending[1:]), Emit(s.pending[0])
        s, action = _RULES[s.phase](s)
        if action is not None:
            return s, action


def feed(s: IomapState, inp: Input) -> IomapState:
    """Give the engine the input it asked for, or a completion/fault at any time."""
    if isinstance(inp, BioEnd):
        return iomap_dio_bio_end_io(s, inp.index, inp.status)
    if isinstance(inp, BioEndAll):
        return bio_end_all(s, inp.status)
    if isinstance(inp, InodeSize):
        # i_size_read(inode) is the shared inode's: what the tail-zeroing test
        # (iomap_dio_bio_iter L557-564) and ->end_io's extension (max with it) read
        return evolve(s, inode_size=inp.size)
    if isinstance(inp, Fault):
        if s.flags & BUF_WRITETHROUGH:
            # RFC writethrough: the iterator is a bvec over a locked folio, never user memory
            raise ModelUsageError("a BUF_WRITETHROUGH request has no user buffer to fault")
        # a user-buffer page that cannot be pinned (no-fault iterator), or a fatal signal
        # pending while get_user_pages pins it (-EINTR): the earliest fault decides
        if inp.at < s.fault_at:
            s = evolve(s, fault_at=inp.at, fault_errno=inp.errno)
        if inp.errno == E.EFAULT and inp.at < s.copy_fault_at:
            s = evolve(s, copy_fault_at=inp.at)
        return s
    expected = {
        WAIT_WRITEBACK: WritebackResult,
        WAIT_INVALIDATE: InvalidateResult,
        WAIT_MAP: (Mapping, MapError),
        WAIT_CUT: (Cut, DefaultCuts),
    }.get(s.phase)
    if expected is None or not isinstance(inp, expected):
        raise ModelUsageError(f"the engine did not ask for {type(inp).__name__} (phase {s.phase})")
    if isinstance(inp, WritebackResult):
        return writeback_result(s, inp.ret)
    if isinstance(inp, InvalidateResult):
        return invalidate_result(s, inp.ret)
    if isinstance(inp, Cut):
        return cut_answer(s, inp.len)
    if isinstance(inp, DefaultCuts):
        return cut_run(s, inp.limit)
    return map_answer(s, inp)


ENGINE = ModelEngine("iomap", start, step, feed)
