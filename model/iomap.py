"""Model of the iomap direct-I/O engine, fs/iomap/direct-io.c (seed: iomap-direct-io.c).

Each function below models one kernel function or one rule inside it and names it in
a one-line comment. ``step`` runs silent transitions until the engine produces an
action; ``feed`` accepts the input asked for, or a bio completion / user-buffer fault
at any time. Line numbers (L…) refer to ../shared/seeds/iomap-direct-io.c.
"""

from __future__ import annotations

from collections.abc import Callable

from . import errno as E
from .evolve import evolve
from .iomap_state import (
    AFTER_LOOP,
    BIO_LOOP,
    BIO_MAX_VECS,
    BIO_NEXT,
    BIO_OUT,
    BIO_TAIL,
    BUF_WRITETHROUGH,
    COMP_WORK,
    COW,
    DIO_ITER,
    DONE,
    FSBLOCK_ALIGNED,
    ITER,
    NEED_SYNC,
    NO_FAULT,
    NO_INVALIDATE,
    START,
    UNWRITTEN,
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
    Bio,
    BioEnd,
    Blocked,
    Complete,
    Cut,
    Emit,
    Fault,
    Finished,
    Flush,
    Geometry,
    Input,
    InvalidateResult,
    MapError,
    Mapping,
    ModelUsageError,
    NeedCut,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    Queued,
    Request,
    WritebackResult,
    errno_name,
)

Rule = Callable[[IomapState], tuple[IomapState, Action | None]]


# --------------------------------------------------------------------------- entry


def start(geo: Geometry, req: Request, i_size: int) -> IomapState:
    """A request enters iomap_dio_rw() with the inode at ``i_size``."""
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
    if "OVERWRITE_ONLY" in req.dio and (req.pos >= s.i_size or req.pos + req.len > s.i_size):
        return _return_early(s, E.EAGAIN, "__iomap_dio_rw: OVERWRITE_ONLY write reaches EOF")
    # __iomap_dio_rw (L738-752): dsync needs sync completion; O_DSYNC alone tries FUA
    # RFC writethrough: BUF_WRITETHROUGH requests get neither (sync is the caller's job)
    if req.is_dsync and not flags & BUF_WRITETHROUGH:
        flags |= NEED_SYNC
        if "SYNC" not in req.iocb:
            flags |= WRITE_THROUGH
    # __iomap_dio_rw (L757-758): i_size updates need process context
    # RFC writethrough: BUF_WRITETHROUGH always completes in process context
    if req.pos + req.len > s.i_size or flags & BUF_WRITETHROUGH:
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


def _iomap_length(s: IomapState) -> int:
    # iomap_length(): what is left of the request inside the current mapping
    assert s.mapping is not None
    return min(s.len, s.mapping.end - s.pos)


def iomap_iter(s: IomapState) -> tuple[IomapState, Action | None]:
    if s.mapping is not None:
        advanced = s.pos - s.iter_start
        # iomap_iter: stop on an error status, when done, or when nothing advanced
        if s.status < 0:
            ret, why = s.status, s.loop_why
        elif s.len == 0 or advanced == 0:
            ret, why = 0, ""
        else:
            ret, why = 1, ""
        if ret <= 0:
            s = evolve(s, mapping=None, phase=AFTER_LOOP, loop_ret=ret, loop_why=why)
            return s, None
    # iomap_iter: ->iomap_begin(inode, pos, len, flags) for the rest of the request
    rule = f"iomap_iter: ->iomap_begin(pos={s.pos}, len={s.len})"
    s = evolve(s, mapping=None, phase=WAIT_MAP)
    return s, NeedMap(s.pos, s.len, s.req.is_write, rule=rule)


def map_answer(s: IomapState, m: Mapping | MapError) -> IomapState:
    if isinstance(m, MapError):
        # iomap_iter: an ->iomap_begin error ends the loop with that error
        why = f"->iomap_begin returned {errno_name(m.errno)} (iomap_iter)"
        return evolve(s, phase=AFTER_LOOP, loop_ret=m.errno, loop_why=why)
    # iomap_iter_done: the mapping must cover iter->pos and have a length
    if m.length == 0 or m.offset > s.pos or m.end <= s.pos:
        raise ModelUsageError(
            f"mapping [{m.offset}, {m.end}) does not cover the position asked for ({s.pos})"
        )
    if m.type in ("MAPPED", "UNWRITTEN") and m.addr is None:
        raise ModelUsageError(f"a {m.type} mapping needs an addr")
    illegal = m.flags - {"NEW", "SHARED", "DIRTY", "ATOMIC_BIO"}
    if illegal:
        raise ModelUsageError(f"flags {sorted(illegal)} are not iomap mapping flags")
    return evolve(s, phase=DIO_ITER, mapping=m, iter_start=s.pos, status=0)


def _set_status(s: IomapState, status: int, why: str) -> IomapState:
    return evolve(s, phase=ITER, status=status, loop_why=why if status < 0 else s.loop_why)


def _advance(s: IomapState, count: int) -> IomapState:
    # iomap_iter_advance(): move iter->pos on and shrink iter->len
    return evolve(s, phase=ITER, status=0, pos=s.pos + count, len=s.len - count)


def _pinnable(s: IomapState, pos: int, want: int) -> int:
    # a user-buffer fault: bytes before the first unpinnable byte can still be used
    buf = pos - s.req.pos
    return max(0, min(want, s.fault_at - buf))


def iomap_dio_iter(s: IomapState) -> tuple[IomapState, Action | None]:
    m = s.mapping
    assert m is not None
    write = bool(s.flags & WRITE)
    if m.type == "HOLE":
        if write:
            # iomap_dio_iter (L621-623): a HOLE mapping for a write is a bug -> -EIO
            return _set_status(s, E.EIO, "iomap_dio_iter: HOLE mapping for a write -> -EIO"), None
        return iomap_dio_hole_iter(s), None
    if m.type == "UNWRITTEN" and not write:
        # iomap_dio_iter (L625-627): unwritten extents read as zeros
        return iomap_dio_hole_iter(s), None
    if m.type in ("MAPPED", "UNWRITTEN"):
        return iomap_dio_bio_iter(s), None
    if m.type == "INLINE":
        return iomap_dio_inline_iter(s), None
    # iomap_dio_iter (L633-642): DELALLOC means a collision with buffered writes -> -EIO
    return _set_status(s, E.EIO, "iomap_dio_iter: DELALLOC mapping -> -EIO"), None


def iomap_dio_hole_iter(s: IomapState) -> IomapState:
    # iomap_dio_hole_iter (L573-581): zero the user buffer, no I/O; nothing -> -EFAULT
    length = _pinnable(s, s.pos, _iomap_length(s))
    s = evolve(s, size=s.size + length)
    if not length:
        return _set_status(s, E.EFAULT, "iomap_dio_hole_iter: user buffer fault -> -EFAULT")
    return _advance(s, length)


def iomap_dio_inline_iter(s: IomapState) -> IomapState:
    m = s.mapping
    assert m is not None
    length = _iomap_length(s)
    # iomap_inline_data_valid (L595-596): inline data must fit in its page
    in_page = (m.addr or 0) % s.geo.page_size
    if m.length > s.geo.page_size - in_page:
        return _set_status(s, E.EIO, "iomap_dio_inline_iter: inline data crosses a page -> -EIO")
    copied = _pinnable(s, s.pos, length)
    inode_size = s.inode_size
    # iomap_dio_inline_iter (L598-608): a write extends i_size to the end of the copy
    if s.flags & WRITE and copied and s.pos + copied > inode_size:
        inode_size = s.pos + copied
    s = evolve(s, size=s.size + copied, inode_size=inode_size)
    if not copied:
        return _set_status(s, E.EFAULT, "iomap_dio_inline_iter: user buffer fault -> -EFAULT")
    return _advance(s, copied)


# --------------------------------------------------------------------------- bio iter


def iomap_dio_bio_iter(s: IomapState) -> IomapState:
    m = s.mapping
    assert m is not None
    geo = s.geo
    length = _iomap_length(s)
    pos = s.pos
    # iomap_dio_bio_iter (L408-411): FSBLOCK_ALIGNED asks fs-block alignment, else lbs
    align = geo.fs_block_size if s.flags & FSBLOCK_ALIGNED else geo.logical_block_size
    # iomap_dio_bio_iter (L413-414): misaligned position or length -> -EINVAL
    if (pos | length) & (align - 1):
        why = f"iomap_dio_bio_iter: pos {pos} or length {length} not aligned to {align}"
        return _set_status(s, E.EINVAL, why)
    flags = s.flags
    zeroout = fua = atomic = False
    if flags & WRITE:
        # iomap_dio_bio_iter (L417-434): only MAPPED needs no completion work
        need_work = m.type != "MAPPED"
        if m.type == "UNWRITTEN":
            flags |= UNWRITTEN  # L429: end_io must convert
            zeroout = True
        if "ATOMIC_BIO" in m.flags:
            # iomap_dio_bio_iter (L436-445): an atomic bio must cover the whole write
            if length != s.len:
                why = "iomap_dio_bio_iter: ATOMIC_BIO mapping shorter than the write -> -EINVAL"
                return _set_status(evolve(s, flags=flags), E.EINVAL, why)
            atomic = True
        if "SHARED" in m.flags:
            need_work = True  # L447-454: unsharing needs end_io work
            flags |= COW
        if "NEW" in m.flags:
            need_work = True  # L456-463: new blocks need metadata and zeroing
            zeroout = True
        # iomap_dio_bio_iter (L471-479): FUA only for pure overwrites on a device that
        # either has no volatile cache or supports FUA; anything else clears WRITE_THROUGH
        if flags & WRITE_THROUGH:
            if not need_work and "DIRTY" not in m.flags and (not geo.write_cache or geo.fua):
                fua = True
            else:
                flags &= ~WRITE_THROUGH
        # iomap_dio_bio_iter (L491-492): completion work forces deferred completion
        if need_work:
            flags |= COMP_WORK
    s = evolve(
        s,
        flags=flags,
        b_len=length,
        b_pos=pos,
        b_copied=0,
        b_zeroout=zeroout,
        b_fua=fua,
        b_atomic=atomic,
        b_align=align,
        b_ret=0,
        phase=BIO_LOOP,
    )
    if zeroout:
        # iomap_dio_bio_iter (L518-525): zero from the block start to the write offset
        pad = pos & (geo.fs_block_size - 1)
        if pad:
            return _submit(s, pos - pad, pad, zero=True, rule="iomap_dio_zero: head pad")
    return s


def _sector_addr(s: IomapState, pos: int) -> int:
    # iomap_sector(): device address of file offset pos, in whole 512-byte sectors
    m = s.mapping
    assert m is not None and m.addr is not None
    return ((m.addr + pos - m.offset) >> 9) << 9


def _submit(
    s: IomapState, pos: int, length: int, *, zero: bool, rule: str, **changes: object
) -> IomapState:
    # iomap_dio_submit_bio (L62-67): each bio holds a reference on the dio
    bio = Bio(
        index=s.nbios,
        op="write" if zero else s.req.op,
        addr=_sector_addr(s, pos),
        len=length,
        fua=s.b_fua and not zero,  # iomap_dio_zero (L312-313): REQ_OP_WRITE|SYNC|IDLE only
        zero=zero,
        atomic=s.b_atomic and not zero,
        rule=rule,
    )
    return evolve(
        s,
        ref=s.ref + 1,
        nbios=s.nbios + 1,
        outstanding=s.outstanding | {bio.index},
        pending=(*s.pending, bio),
        **changes,
    )


def _default_cut(s: IomapState, pos: int, avail: int) -> int:
    # bio_iov_vecs_to_alloc / BIO_MAX_VECS: one bio carries at most 256 pages of a
    # page-aligned user buffer (the first one possibly partial)
    page = s.geo.page_size
    buf = pos - s.req.pos
    return min(avail, BIO_MAX_VECS * page - buf % page)


def bio_loop(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter (L532-533): an error already reported by a completion stops
    # submission (goto out: no tail zeroing)
    if s.error:
        return evolve(s, phase=BIO_OUT), None
    remaining = s.b_len - s.b_copied
    mask = s.b_align - 1
    # bio_iov_iter_get_pages: pin what the user buffer allows, trimmed to the alignment
    avail = _pinnable(s, s.b_pos, remaining)
    max_len = avail & ~mask
    proposal = _default_cut(s, s.b_pos, max_len) & ~mask
    if proposal <= 0:
        why = "bio_iov_iter_get_pages: user buffer fault -> -EFAULT (iomap_dio_bio_iter_one)"
        return evolve(s, phase=BIO_TAIL, b_ret=E.EFAULT, loop_why=why), None
    if s.b_atomic and proposal != s.b_len:
        # iomap_dio_bio_iter_one (L366-369): an atomic bio must cover the whole mapping
        why = "iomap_dio_bio_iter_one: atomic bio does not cover the mapping -> -EINVAL"
        return evolve(s, phase=BIO_TAIL, b_ret=E.EINVAL, loop_why=why), None
    bio = Bio(
        index=s.nbios,
        op=s.req.op,
        addr=_sector_addr(s, s.b_pos),
        len=proposal,
        fua=s.b_fua,
        atomic=s.b_atomic,
        rule="iomap_dio_bio_iter_one: data bio",
    )
    need = NeedCut(
        bio, max_len, s.b_align, exact=s.b_atomic, rule="iomap_dio_bio_iter_one: data bio"
    )
    return evolve(s, phase=WAIT_CUT, cut=need), need


def cut_answer(s: IomapState, n: int) -> IomapState:
    need = s.cut
    assert need is not None
    if n <= 0 or n > need.max_len or n % need.align or (need.exact and n != need.max_len):
        raise ModelUsageError(
            f"a data bio of {n} bytes is not allowed here: the engine can put up to "
            f"{need.max_len} bytes, a multiple of {need.align}, into the bio at "
            f"{need.proposal.addr}" + (" (exactly, atomic)" if need.exact else "")
        )
    # iomap_dio_bio_iter (L545-548): account the bytes the bio carries
    return _submit(
        s,
        s.b_pos,
        n,
        zero=False,
        rule=need.rule,
        cut=None,
        phase=BIO_NEXT,
        size=s.size + n,
        b_copied=s.b_copied + n,
        b_pos=s.b_pos + n,
    )


def bio_next(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter (L549): loop while the extent has bytes left
    if s.b_copied < s.b_len:
        return evolve(s, phase=BIO_LOOP), None
    return evolve(s, phase=BIO_TAIL, b_ret=0), None


def bio_tail(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter (L557-564): zero the tail of the last block for unwritten/new
    # extents, or when the write ends at/after i_size (stale data via mmap otherwise)
    s = evolve(s, phase=BIO_OUT)
    if s.b_zeroout or (s.flags & WRITE and s.b_pos >= s.inode_size):
        bs = s.geo.fs_block_size
        pad = s.b_pos & (bs - 1)
        if pad:
            # the zeroing's return value (0) replaces an earlier error of the loop
            s = evolve(s, b_ret=0)
            return _submit(s, s.b_pos, bs - pad, zero=True, rule="iomap_dio_zero: tail pad"), None
    return s, None


def bio_out(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter out: (L565-570): advance by what was copied, else the error
    if s.b_copied:
        return _advance(s, s.b_copied), None
    return _set_status(s, s.b_ret, s.loop_why), None


# --------------------------------------------------------------------------- completion


def after_loop(s: IomapState) -> tuple[IomapState, Action | None]:
    ret, why, wait = s.loop_ret, s.loop_why, s.wait
    # __iomap_dio_rw (L814-818): PARTIAL turns a fault after progress into a short
    # result; the submitter then waits, unless NOWAIT
    if ret == E.EFAULT and s.size and "PARTIAL" in s.req.dio:
        if "NOWAIT" not in s.req.iocb:
            wait = True
        ret = 0
    # __iomap_dio_rw (L820-824): -ENOTBLK: return what was done, waiting for it
    if ret == E.ENOTBLK:
        wait, ret = True, 0
    if ret < 0:
        s = _set_error(s, ret, why or f"iomap_iter returned {errno_name(ret)}")
    flags = s.flags
    # __iomap_dio_rw (L836-839): all bios written through -> no sync at completion;
    # otherwise a needed sync forces process-context completion
    if flags & WRITE_THROUGH:
        flags &= ~NEED_SYNC
    elif flags & NEED_SYNC:
        flags |= COMP_WORK
    # __iomap_dio_rw (L856-857): the submitter drops its own reference
    s = evolve(s, flags=flags, wait=wait, ref=s.ref - 1)
    if s.ref == 0:
        # (a) last reference: the submitter completes the dio itself
        return iomap_dio_complete(s, "submitter"), None
    if not wait:
        # (b) async: -EIOCBQUEUED, a bio completion will finish the dio
        queued = Queued(rule="__iomap_dio_rw: bios in flight on an async kiocb -> -EIOCBQUEUED")
        return evolve(s, phase=WAIT_BIOS, queued=True, pending=(*s.pending, queued)), None
    # (c) sync: wait to be woken by the last bio completion
    return evolve(s, phase=WAIT_BIOS), None


def _set_error(s: IomapState, err: int, why: str) -> IomapState:
    # iomap_dio_set_error (L174-177): cmpxchg, the first error wins
    if s.error:
        return s
    return evolve(s, error=err, error_why=why)


def iomap_dio_bio_end_io(s: IomapState, index: int, status: int) -> IomapState:
    if index >= s.nbios or index not in s.outstanding:
        state = "was never issued" if index >= s.nbios else "already completed"
        raise ModelUsageError(f"bio {index} {state} (this request issued {s.nbios} bios)")
    # iomap_dio_bio_end_io (L271-272): a failed bio records its error (first wins)
    if status:
        s = _set_error(s, status, f"bio {index} completed with {errno_name(status)}")
    # __iomap_dio_bio_end_io (L256): drop the bio's reference
    s = evolve(s, ref=s.ref - 1, outstanding=s.outstanding - {index})
    if s.ref == 0:
        return iomap_dio_done(s)
    return s


def iomap_dio_done(s: IomapState) -> IomapState:
    # iomap_dio_done (L186-196): a waiting submitter is woken and completes
    if s.wait:
        return iomap_dio_complete(s, "submitter")
    flags = s.flags
    # iomap_dio_done (L203-204): error completions always run in user context
    if s.error:
        flags |= COMP_WORK
    # iomap_dio_done (L213-219): writes with cached pages must invalidate from a
    # workqueue; otherwise post-write invalidation is skipped
    if flags & WRITE and not flags & COMP_WORK:
        flags |= COMP_WORK if s.req.cached_pages else NO_INVALIDATE
    ctx = "workqueue" if flags & COMP_WORK else "inline"  # L221-236
    return iomap_dio_complete(evolve(s, flags=flags), ctx)


def iomap_dio_complete(s: IomapState, ctx: str) -> IomapState:
    req = s.req
    ret = s.error
    why = s.error_why
    if ret == 0:
        # iomap_dio_complete (L117-123): ret = bytes done, capped at i_size for reads
        ret = s.size
        why = f"iomap_dio_complete: dio->size = {s.size}"
        if not s.flags & WRITE and req.pos + ret > s.i_size:
            ret = s.i_size - req.pos
            why = f"iomap_dio_complete: short read capped at i_size - pos = {ret}"
    # iomap_dio_complete (L137-139): invalidate after a successful write
    invalidated = bool(not s.error and s.size and s.flags & WRITE and not s.flags & NO_INVALIDATE)
    inode_size = s.inode_size
    # ->end_io (iomap-operations.rst end_io; xfs_dio_write_end_io): a successful write
    # moves i_size to the end of the data written
    if s.flags & WRITE and not s.error and s.size and req.pos + s.size > inode_size:
        inode_size = req.pos + s.size
    outputs: list = []
    pos_after = req.pos
    if ret > 0:
        pos_after = req.pos + ret  # L144: ki_pos += ret
        if s.flags & NEED_SYNC:
            # L150-151: generic_write_sync() for dsync writes not written through
            outputs.append(Flush(rule="iomap_dio_complete: generic_write_sync (NEED_SYNC)"))
        if req.done_before:
            ret += req.done_before  # L152-153: report the total, done_before included
            why += f" + done_before {req.done_before}"
    end_io = frozenset(n for b, n in ((UNWRITTEN, "UNWRITTEN"), (COW, "COW")) if s.flags & b)
    outputs.append(
        Complete(
            ret=ret,
            pos_after=pos_after,
            i_size=inode_size,
            ctx=ctx,
            end_io_flags=end_io,
            invalidated=invalidated,
            rule=why,
        )
    )
    return evolve(s, phase=DONE, ctx=ctx, inode_size=inode_size, pending=(*s.pending, *outputs))


# --------------------------------------------------------------------------- protocol


def _waiting(action: Action) -> Rule:
    def rule(s: IomapState) -> tuple[IomapState, Action | None]:
        return s, action

    return rule


def _wait_bios(s: IomapState) -> tuple[IomapState, Action | None]:
    return s, Blocked(tuple(sorted(s.outstanding)), rule="__iomap_dio_rw: waiting for bios")


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
    if isinstance(inp, Fault):
        # a user-buffer page that cannot be pinned (no-fault iterator)
        return evolve(s, fault_at=min(s.fault_at, inp.at))
    expected = {
        WAIT_WRITEBACK: WritebackResult,
        WAIT_INVALIDATE: InvalidateResult,
        WAIT_MAP: (Mapping, MapError),
        WAIT_CUT: Cut,
    }.get(s.phase)
    if expected is None or not isinstance(inp, expected):
        raise ModelUsageError(f"the engine did not ask for {type(inp).__name__} (phase {s.phase})")
    if isinstance(inp, WritebackResult):
        return writeback_result(s, inp.ret)
    if isinstance(inp, InvalidateResult):
        return invalidate_result(s, inp.ret)
    if isinstance(inp, Cut):
        return cut_answer(s, inp.len)
    return map_answer(s, inp)


def fault_position(s: IomapState) -> int | None:
    return None if s.fault_at == NO_FAULT else s.fault_at


class _IomapEngine:
    name = "iomap"
    start = staticmethod(start)
    step = staticmethod(step)
    feed = staticmethod(feed)


ENGINE = _IomapEngine()
