"""Completion: reference counting, who completes, iomap_dio_complete().

Line numbers (L…) refer to ../shared/seeds/iomap-direct-io.c.
"""

from __future__ import annotations

from . import arith
from . import errno as E
from .bioset import EMPTY
from .evolve import evolve
from .iomap_state import (
    COMP_WORK,
    COW,
    DONE,
    NEED_SYNC,
    NO_INVALIDATE,
    UNWRITTEN,
    WAIT_BIOS,
    WRITE,
    WRITE_THROUGH,
    IomapState,
)
from .types import Action, Complete, Flush, ModelUsageError, Queued, errno_name


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
    if arith.first_error(s.error, err) == s.error:
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
    s = evolve(s, ref=s.ref - 1, outstanding=s.outstanding.remove(index))
    if s.ref == 0:
        return iomap_dio_done(s)
    return s


def bio_end_all(s: IomapState, status: int) -> IomapState:
    """``BioEndAll``: iomap_dio_bio_end_io for every bio in flight, oldest first."""
    if not s.outstanding:
        return s
    # iomap_dio_bio_end_io (L271-272): the oldest failed bio records the error first
    if status:
        why = f"bio {s.outstanding.first} completed with {errno_name(status)}"
        s = _set_error(s, status, why)
    # __iomap_dio_bio_end_io (L256): each bio drops its reference; only the last of
    # them can take the count to zero
    s = evolve(s, ref=s.ref - len(s.outstanding), outstanding=EMPTY)
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
        capped = ret if s.flags & WRITE else arith.short_read_cap(req.pos, ret, s.i_size)
        if capped != ret:
            ret = capped
            why = f"iomap_dio_complete: short read capped at i_size - pos = {ret}"
    # iomap_dio_complete (L137-139): invalidate after a successful write
    invalidated = bool(not s.error and s.size and s.flags & WRITE and not s.flags & NO_INVALIDATE)
    inode_size = s.inode_size
    # ->end_io (iomap-operations.rst end_io; xfs_dio_write_end_io): a successful write
    # moves i_size to the end of the data written
    if s.flags & WRITE and not s.error and s.size and req.pos + s.size > inode_size:
        inode_size = req.pos + s.size
    elif s.glue == "ext4" and s.flags & WRITE and not s.error and req.pos > inode_size:
        # host ext4 (6.18) ext4_dio_write_end_io -> ext4_handle_inode_extension(inode,
        # pos, 0): a write that did nothing past EOF still moves i_size to its start
        # (FINDINGS.md failed-write-grew-file)
        inode_size = req.pos
    outputs: list = []
    pos_after = arith.ki_pos_after(req.pos, ret)  # L141-144: if (ret > 0) ki_pos += ret
    if ret > 0:
        if s.flags & NEED_SYNC:
            # L150-151: generic_write_sync() for dsync writes not written through
            outputs.append(Flush(rule="iomap_dio_complete: generic_write_sync (NEED_SYNC)"))
        if req.done_before:
            # L152-153: report the total, done_before included
            ret = arith.add_done_before(ret, req.done_before)
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
