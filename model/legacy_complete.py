"""Completion side of the legacy engine: bio end_io, waiting, refcount, dio_complete.

Models dio_bio_end_io, dio_bio_end_aio, dio_bio_complete, dio_await_one /
dio_await_completion, the -EIOCBQUEUED decision and drop_refcount of
__blockdev_direct_IO, and dio_complete of fs/direct-io.c ("L…" are line numbers of
../shared/seeds/legacy-direct-io.c).
"""

from __future__ import annotations

from collections.abc import Callable

from . import arith
from . import errno as E
from .legacy_state import (
    AIO_WAIT,
    DIO_AWAIT_ONE,
    DIO_COMPLETE,
    DROP_REFCOUNT,
    FINISHED,
    KI_COMPLETE,
    QUEUE_OR_AWAIT,
    WRITE_SYNC,
    LegacyState,
    Step,
    evolve,
    kernel_bug,
)
from .types import Blocked, Complete, Emit, Finished, Flush, ModelUsageError, Queued, errno_name

# --------------------------------------------------------------------------- bio completion


def dio_bio_complete(s: LegacyState, status: int) -> LegacyState:
    # dio_bio_complete (L494-499): BLK_STS_AGAIN on a REQ_NOWAIT bio -> -EAGAIN, else -EIO
    if not status:
        return s
    nowait_bio = s.cfg.write and s.cfg.nowait  # L1176-1177: REQ_NOWAIT only on writes
    return evolve(s, io_error=arith.legacy_io_error(s.io_error, status, nowait_bio))


def bio_end_io(s: LegacyState, index: int, status: int) -> LegacyState:
    """feed(BioEnd): bio ``index`` completed with ``status`` (any time)."""
    if index not in s.inflight:
        if index >= s.n_bios:
            raise ModelUsageError(
                f"BioEnd({index}): bio {index} was never issued ({s.n_bios} bio(s) so far)"
            )
        raise ModelUsageError(f"BioEnd({index}): bio {index} already completed")
    s = evolve(s, inflight=s.inflight.remove(index))
    if s.is_async:
        return dio_bio_end_aio(s, status)
    # dio_bio_end_io (L380-385): push on dio->bio_list (LIFO), drop the bio's reference
    return evolve(s, bio_list=(index, status, s.bio_list), refcount=s.refcount - 1)


def dio_bio_end_aio(s: LegacyState, status: int) -> LegacyState:
    # dio_bio_end_aio (L337-340): process the bio now, drop its reference
    s = dio_bio_complete(s, status)
    s = evolve(s, refcount=s.refcount - 1)
    if s.refcount:
        return s
    if s.phase != AIO_WAIT:  # the submitter holds a reference until drop_refcount
        raise AssertionError(f"refcount reached 0 in phase {s.phase}")
    # dio_bio_end_aio (L354-357): defer if a result and (defer_completion or write+pages)
    c = s.cfg
    defer = bool(s.result) and (s.defer_completion or (c.write and c.cached_pages))
    return evolve(
        s,
        phase=DIO_COMPLETE,
        retval=0,
        retval_why="dio_bio_end_aio (L345-364): dio_complete(dio, 0, ...)",
        cmpl_ctx="workqueue" if defer else "inline",
        cmpl_async=True,
        # L320 dio_aio_complete_work passes DIO_COMPLETE_INVALIDATE, L363 does not
        cmpl_invalidate=defer,
    )


# --------------------------------------------------------------------------- waiting


def queue_or_await(s: LegacyState) -> Step:
    if s.retval == E.EIOCBQUEUED:
        raise kernel_bug("__blockdev_direct_IO", "retval == -EIOCBQUEUED (L1289)")
    # __blockdev_direct_IO (L1290-1292): leave bios in flight for a successful aio read
    # with a result, or a complete aio write
    c = s.cfg
    if s.is_async and s.retval == 0 and s.result and (not c.write or s.result == c.count):
        why = "__blockdev_direct_IO (L1290-1292): -EIOCBQUEUED"
        return evolve(s, phase=DROP_REFCOUNT, retval=E.EIOCBQUEUED, retval_why=why), None
    return evolve(s, phase=DIO_AWAIT_ONE), None  # L1294: dio_await_completion


def dio_await_one(s: LegacyState) -> Step:
    # dio_await_one (L477-480) + dio_await_completion (L520-524): pop the newest bio
    if s.bio_list is not None:
        _index, status, rest = s.bio_list
        return dio_bio_complete(evolve(s, bio_list=rest), status), None
    # dio_await_one (L468-476): sleep while bios are in flight and none completed
    if s.refcount > 1:
        return s, Blocked(
            outstanding=s.inflight,
            rule="dio_await_one (L468-476): waiting for a bio to complete",
        )
    return evolve(s, phase=DROP_REFCOUNT), None


def drop_refcount(s: LegacyState) -> Step:
    # drop_refcount (L1063-1066): the submitter drops its reference
    s = evolve(s, refcount=s.refcount - 1)
    if s.refcount == 0:
        # __blockdev_direct_IO (L1296-1297): last reference: complete in the submitter
        return evolve(
            s, phase=DIO_COMPLETE, cmpl_ctx="submitter", cmpl_async=False, cmpl_invalidate=True
        ), None
    if s.retval != E.EIOCBQUEUED:
        raise kernel_bug("__blockdev_direct_IO", "retval != -EIOCBQUEUED (L1299)")
    # __blockdev_direct_IO (L1298-1301): return -EIOCBQUEUED, bios still in flight
    return evolve(s, phase=AIO_WAIT), Emit(
        Queued(rule="__blockdev_direct_IO (L1290-1301): -EIOCBQUEUED, bios in flight")
    )


def aio_wait(s: LegacyState) -> Step:
    # dio_bio_end_aio (L345): the bio that drops the last reference completes the dio
    return s, Blocked(
        outstanding=s.inflight,
        rule="dio_bio_end_aio (L339-365): the last bio completion runs dio_complete",
    )


# --------------------------------------------------------------------------- dio_complete


def dio_complete(s: LegacyState) -> Step:
    c = s.cfg
    ret, why = s.retval, s.retval_why
    # dio_complete (L246-247): a completion that raced the submitter: -EIOCBQUEUED -> 0
    if ret == E.EIOCBQUEUED:
        ret, why = 0, "dio_complete (L246-247): -EIOCBQUEUED -> 0"
    transferred = 0
    capped = False
    if s.result:
        transferred = s.result
        # dio_complete (L253-255): short read: cap at dio->i_size - offset
        if not c.write:
            capped_to = arith.short_read_cap(c.pos, transferred, c.i_size)
            transferred, capped = capped_to, capped_to != transferred
        # dio_complete (L257-258): ignore EFAULT if some IO has been done
        if ret == E.EFAULT and transferred:
            ret = 0
    if ret:
        why = f"dio_complete (L261-266): {why}: {errno_name(ret)}"
    elif s.page_errors:  # dio_complete (L261-262)
        ret, why = s.page_errors, f"dio_complete (L261-262): page_errors {errno_name(ret)}"
    elif s.io_error:  # dio_complete (L263-264)
        ret, why = s.io_error, f"dio_complete (L263-264): io_error {errno_name(s.io_error)}"
    else:  # dio_complete (L265-266)
        ret = transferred
        why = "dio_complete (L265-266): transferred" + (
            " capped at i_size - offset (L253-255)" if capped else ""
        )
    # dio_complete (L287-295): invalidate the written range if pages are cached
    invalidated = s.cmpl_invalidate and ret > 0 and c.write and c.cached_pages
    # dio_complete (L305): aio ki_pos += transferred; else the caller adds ret if ret > 0
    pos_after = arith.legacy_ki_pos(c.pos, ret, transferred, s.cmpl_async)
    # dio_complete (L307-308) / the caller: generic_write_sync for O_(D)SYNC writes
    flush = ret > 0 and c.write and c.dsync
    i_size = max(c.i_size, c.pos + ret) if c.write and ret > 0 else c.i_size
    s = evolve(
        s,
        phase=WRITE_SYNC,
        out_ret=ret,
        out_rule=why,
        out_pos_after=pos_after,
        out_i_size=i_size,
        out_invalidated=invalidated,
        out_flush=flush,
    )
    return s, None


def generic_write_sync(s: LegacyState) -> Step:
    # dio_complete (L307-308), or generic_file_write_iter for a returned ret > 0
    if not s.out_flush:
        return evolve(s, phase=KI_COMPLETE), None
    rule = (
        "dio_complete (L307-308): generic_write_sync"
        if s.cmpl_async
        else "generic_write_sync by the caller after __blockdev_direct_IO returned ret > 0"
    )
    return evolve(s, phase=KI_COMPLETE), Emit(Flush(rule=rule))


def ki_complete(s: LegacyState) -> Step:
    # dio_complete (L309) ki_complete, or __blockdev_direct_IO returns ret (L1297-1301)
    out = Complete(
        ret=s.out_ret,
        pos_after=s.out_pos_after,
        i_size=s.out_i_size,
        ctx=s.cmpl_ctx,
        invalidated=s.out_invalidated,
        rule=s.out_rule,
    )
    return evolve(s, phase=FINISHED), Emit(out)


def finished(s: LegacyState) -> Step:
    # after dio_complete (L312) the dio is freed: nothing more happens
    return s, Finished()


PHASES: dict[str, Callable[[LegacyState], Step]] = {
    QUEUE_OR_AWAIT: queue_or_await,
    DIO_AWAIT_ONE: dio_await_one,
    DROP_REFCOUNT: drop_refcount,
    AIO_WAIT: aio_wait,
    DIO_COMPLETE: dio_complete,
    WRITE_SYNC: generic_write_sync,
    KI_COMPLETE: ki_complete,
    FINISHED: finished,
}
