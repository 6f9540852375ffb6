"""Scenarios for the iomap engine model, each worked out by hand from
../shared/seeds/iomap-direct-io.c (the comments give the arithmetic)."""

from __future__ import annotations

import pytest
from dioconf.model.engine import drive
from dioconf.model.iomap import ENGINE
from dioconf.model.types import (
    Bio,
    BioEnd,
    Blocked,
    Complete,
    Fault,
    Finished,
    Geometry,
    MapError,
    Mapping,
    ModelUsageError,
    Queued,
    Request,
)

from .model_runner import Runner

KIB, MIB = 1024, 1024 * 1024
EIO, EAGAIN, EFAULT, ENOTBLK, EBUSY, EINVAL, ENOSPC = -5, -11, -14, -15, -16, -22, -28
DEV = 1 << 22  # device address of file offset 0 in most mappings

GEO = Geometry(4096, 512, 4096, write_cache=True, fua=False)
GEO_FUA = Geometry(4096, 512, 4096, write_cache=True, fua=True)


def mapped(offset: int, length: int, addr: int | None = None, flags=()) -> Mapping:
    return Mapping(
        offset, length, "MAPPED", frozenset(flags), DEV + offset if addr is None else addr
    )


def kinds(outputs) -> list[str]:
    return [type(o).__name__ for o in outputs]


def complete(outputs) -> Complete:
    assert isinstance(outputs[-1], Complete)
    return outputs[-1]


def bios(outputs) -> list[Bio]:
    return [o for o in outputs if isinstance(o, Bio)]


def test_short_read_is_capped_at_i_size():
    """iomap_dio_complete L119-122: ret = dio->size, capped to i_size - offset."""
    out = drive(ENGINE, GEO, Request("read", 0, 8192), 5000, [mapped(0, 8192)])
    # the bio reads whole blocks (8192), but only 5000 - 0 bytes are reported
    assert bios(out) == [Bio(0, "read", DEV, 8192, rule=bios(out)[0].rule)]
    assert (complete(out).ret, complete(out).pos_after) == (5000, 5000)


def test_read_at_eof_returns_zero_before_alignment_check():
    """__iomap_dio_rw L713-714: pos >= i_size returns 0 before any mapping or alignment."""
    r = Runner(ENGINE, GEO, Request("read", 5001, 3), 5000)
    assert r.run_until_blocked() == Finished()
    assert r.asked == []
    assert (complete(r.outputs).ret, complete(r.outputs).pos_after) == (0, 5001)


def test_zero_length_request_returns_zero():
    """__iomap_dio_rw L690-691: an empty iterator returns NULL, i.e. 0."""
    out = drive(ENGINE, GEO, Request("write", 4096, 0), 0, [])
    assert kinds(out) == ["Complete"] and complete(out).ret == 0


def test_misaligned_read_of_mapped_extent_is_einval():
    """iomap_dio_bio_iter L413-414: (pos | length) & (lbs - 1) -> -EINVAL, no bio."""
    out = drive(ENGINE, GEO, Request("read", 100, 512), 65536, [mapped(0, 65536)])
    assert kinds(out) == ["Complete"] and complete(out).ret == EINVAL


def test_misaligned_read_of_hole_is_not_checked():
    """iomap_dio_iter L621-624: holes are zeroed by iomap_dio_hole_iter, which has no
    alignment check: a 300-byte read at 100 over a hole returns 300."""
    hole = Mapping(0, 65536, "HOLE")
    out = drive(ENGINE, GEO, Request("read", 100, 300), 65536, [hole])
    assert kinds(out) == ["Complete"] and complete(out).ret == 300


def test_fsblock_aligned_flag_requires_fs_block_alignment():
    """iomap_dio_bio_iter L408-411: FSBLOCK_ALIGNED uses the fs block (4096) not 512."""
    req = Request("write", 512, 4096, dio={"FSBLOCK_ALIGNED"})
    out = drive(ENGINE, GEO, req, 65536, [mapped(0, 65536)])
    assert complete(out).ret == EINVAL
    plain = drive(ENGINE, GEO, Request("write", 512, 4096), 65536, [mapped(0, 65536)])
    assert complete(plain).ret == 4096


@pytest.mark.parametrize("kind", ["HOLE", "DELALLOC"])
def test_write_to_hole_or_delalloc_is_eio(kind):
    """iomap_dio_iter L621-623 (HOLE on write) and L633-642 (DELALLOC): -EIO."""
    m = Mapping(0, 65536, kind, addr=None)
    out = drive(ENGINE, GEO, Request("write", 0, 4096), 65536, [m])
    assert kinds(out) == ["Complete"] and complete(out).ret == EIO


def test_unwritten_and_hole_read_as_zero_without_io():
    """iomap_dio_iter L625-627: UNWRITTEN on read goes to iomap_dio_hole_iter."""
    maps = [Mapping(0, 4096, "HOLE"), Mapping(4096, 4096, "UNWRITTEN", addr=DEV)]
    out = drive(ENGINE, GEO, Request("read", 0, 8192), 65536, maps)
    assert kinds(out) == ["Complete"] and complete(out).ret == 8192


@pytest.mark.parametrize(
    ("iocb", "inval", "ret"),
    [((), EBUSY, ENOTBLK), (("ATOMIC",), EBUSY, EAGAIN), ((), EAGAIN, EAGAIN)],
)
def test_invalidation_failure(iocb, inval, ret):
    """__iomap_dio_rw L765-783: failure -> -ENOTBLK (buffered fallback); atomic ->
    -EAGAIN; -EAGAIN passes through. Nothing is mapped or submitted."""
    r = Runner(
        ENGINE, GEO, Request("write", 0, 4096, iocb=frozenset(iocb)), 65536, invalidate=inval
    )
    r.run_until_blocked()
    assert r.asked == [] and kinds(r.outputs) == ["Complete"]
    assert complete(r.outputs).ret == ret


def test_overwrite_only_past_eof_is_eagain_without_invalidation():
    """__iomap_dio_rw L726-731: OVERWRITE_ONLY and pos + len > i_size -> -EAGAIN."""
    r = Runner(ENGINE, GEO, Request("write", 4096, 8192, dio={"OVERWRITE_ONLY"}), 8192)
    r.run_until_blocked()
    assert r.asked == [] and complete(r.outputs).ret == EAGAIN


def test_enotblk_from_iomap_begin_mid_request_returns_short_count_and_waits():
    """__iomap_dio_rw L820-824: -ENOTBLK -> wait_for_completion = true, ret = 0, so an
    async kiocb gets no -EIOCBQUEUED and the 4096 bytes of the first extent."""
    req = Request("write", 0, 8192, sync=False)
    r = Runner(ENGINE, GEO, req, 65536, [mapped(0, 4096), MapError(ENOTBLK)])
    out = r.finish()
    assert kinds(out) == ["Bio", "Complete"]
    assert (complete(out).ret, complete(out).ctx) == (4096, "submitter")


def test_nowait_eagain_from_iomap_begin_wins_over_progress():
    """iomap_iter returns the ->iomap_begin error; __iomap_dio_rw L825-826 sets it as
    dio->error, and iomap_dio_complete returns it even though 4096 bytes were read."""
    req = Request("read", 0, 8192, iocb={"NOWAIT"})
    out = drive(ENGINE, GEO, req, 65536, [mapped(0, 4096), MapError(EAGAIN)])
    assert len(bios(out)) == 1 and complete(out).ret == EAGAIN


def test_partial_fault_after_progress_returns_size_plus_done_before():
    """__iomap_dio_rw L814-818 + iomap_dio_complete L143-154: -EFAULT with progress and
    PARTIAL -> ret = size + done_before, ki_pos += size. The engine asks ->iomap_begin
    again at 4096 (iomap_iter: advanced and len left) before the fault is seen."""
    req = Request("write", 8192, 8192, done_before=1000, dio={"PARTIAL"}, sync=False)
    r = Runner(ENGINE, GEO, req, 65536, [mapped(0, 65536), mapped(0, 65536)])
    r.feed(Fault(4096))
    out = r.finish()
    assert [a.pos for a in r.asked] == [8192, 12288]
    assert [(b.addr, b.len) for b in bios(out)] == [(DEV + 8192, 4096)]
    c = complete(out)
    assert (c.ret, c.pos_after) == (4096 + 1000, 8192 + 4096)
    assert "Queued" not in kinds(out)  # PARTIAL without NOWAIT waits (L815-816)


def test_partial_fault_with_nowait_may_queue():
    """__iomap_dio_rw L815: with NOWAIT the PARTIAL short result does not force a wait."""
    req = Request("write", 0, 8192, dio={"PARTIAL"}, iocb={"NOWAIT"}, sync=False)
    r = Runner(ENGINE, GEO, req, 65536, [mapped(0, 65536), mapped(0, 65536)])
    r.feed(Fault(4096))
    out = r.finish()
    assert kinds(out) == ["Bio", "Queued", "Complete"] and complete(out).ret == 4096


@pytest.mark.parametrize("partial", [True, False])
def test_fault_without_progress_or_partial_is_efault(partial):
    """L814: PARTIAL needs dio->size != 0; without PARTIAL -EFAULT is the result."""
    dio = {"PARTIAL"} if partial else set()
    at = 0 if partial else 4096
    maps = [mapped(0, 65536), mapped(0, 65536)]
    r = Runner(ENGINE, GEO, Request("read", 0, 8192, dio=dio), 65536, maps)
    r.feed(Fault(at))
    assert complete(r.finish()).ret == EFAULT


@pytest.mark.parametrize(
    ("geo", "iocb", "fua", "flush"),
    [
        (GEO_FUA, {"DSYNC"}, True, False),  # L471-476: pure overwrite, FUA device
        (GEO, {"DSYNC"}, False, True),  # volatile cache, no FUA: L478 clears it
        (Geometry(4096, 512, 4096, write_cache=False, fua=False), {"DSYNC"}, True, False),
        (GEO_FUA, {"SYNC", "DSYNC"}, False, True),  # L750: O_SYNC never writes through
        (GEO_FUA, set(), False, False),  # not dsync: no NEED_SYNC at all
    ],
)
def test_fua_versus_flush(geo, iocb, fua, flush):
    """__iomap_dio_rw L738-752 and L836-839, iomap_dio_bio_iter L471-479."""
    req = Request("write", 0, 4096, iocb=iocb)
    out = drive(ENGINE, geo, req, 65536, [mapped(0, 65536)])
    assert bios(out)[0].fua is fua
    assert ("Flush" in kinds(out)) is flush
    assert complete(out).ret == 4096


def test_write_through_cleared_by_a_later_new_extent():
    """iomap_dio_bio_iter L456-478: a NEW extent clears WRITE_THROUGH for the whole
    request; the first bio already went out with FUA, and completion must flush."""
    maps = [mapped(0, 4096), mapped(4096, 4096, flags={"NEW"})]
    out = drive(ENGINE, GEO_FUA, Request("write", 0, 8192, iocb={"DSYNC"}), 65536, maps)
    assert [b.fua for b in bios(out)] == [True, False]
    assert kinds(out)[-2:] == ["Flush", "Complete"]


@pytest.mark.parametrize("flag", ["DIRTY", "SHARED"])
def test_dirty_or_shared_mapping_is_not_written_through(flag):
    """iomap_dio_bio_iter L447-478: SHARED needs completion work, DIRTY metadata."""
    maps = [mapped(0, 65536, flags={flag})]
    out = drive(ENGINE, GEO_FUA, Request("write", 0, 4096, iocb={"DSYNC"}), 65536, maps)
    assert not bios(out)[0].fua and "Flush" in kinds(out)
    assert complete(out).end_io_flags == (frozenset({"COW"}) if flag == "SHARED" else frozenset())


def test_sub_block_write_into_unwritten_zeroes_head_and_tail():
    """iomap_dio_bio_iter L518-525 and L557-564: write 1024 at 512 in a 4096 block:
    head pad 512 at 0, data at 512, tail pad 4096 - 1536 = 2560 at 1536."""
    m = Mapping(0, 65536, "UNWRITTEN", addr=DEV)
    out = drive(ENGINE, GEO, Request("write", 512, 1024), 65536, [m])
    assert [(b.addr - DEV, b.len, b.zero) for b in bios(out)] == [
        (0, 512, True),
        (512, 1024, False),
        (1536, 2560, True),
    ]
    assert complete(out).end_io_flags == frozenset({"UNWRITTEN"})
    assert complete(out).ret == 1024


def test_sub_block_overwrite_of_mapped_block_inside_i_size_is_not_zeroed():
    """L557-558: no zeroing for MAPPED unless the write ends at/after i_size."""
    out = drive(ENGINE, GEO, Request("write", 512, 1024), 65536, [mapped(0, 65536)])
    assert [(b.addr - DEV, b.len, b.zero) for b in bios(out)] == [(512, 1024, False)]


def test_write_ending_past_i_size_zeroes_the_tail_of_a_mapped_block():
    """L557-564: pos 4096 + 512 >= i_size 4096: tail pad 4096 - 512 = 3584 at 4608;
    i_size moves to 4608 (->end_io), and the write completes in process context."""
    r = Runner(ENGINE, GEO, Request("write", 4096, 512, sync=False), 4096, [mapped(0, 65536)])
    out = r.finish()
    assert [(b.addr - DEV, b.len, b.zero) for b in bios(out)] == [
        (4096, 512, False),
        (4608, 3584, True),
    ]
    assert kinds(out) == ["Bio", "Bio", "Queued", "Complete"]
    c = complete(out)
    assert (c.ret, c.i_size, c.ctx) == (512, 4608, "workqueue")  # L757-758 COMP_WORK


def test_bios_are_cut_at_256_pages():
    """iomap_dio_bio_iter_one: nr_vecs <= BIO_MAX_VECS (256) pages of 4096 = 1 MiB."""
    out = drive(ENGINE, GEO, Request("read", 0, 2 * MIB + 8192), 4 * MIB, [mapped(0, 4 * MIB)])
    assert [(b.addr - DEV, b.len) for b in bios(out)] == [
        (0, MIB),
        (MIB, MIB),
        (2 * MIB, 8192),
    ]


def test_first_error_wins():
    """iomap_dio_set_error L174-177: cmpxchg(&dio->error, 0, ret): bio 1 fails first
    with -ENOSPC, then bio 0 with -EIO: the result is -ENOSPC."""
    r = Runner(ENGINE, GEO, Request("write", 0, 2 * MIB), 4 * MIB, [mapped(0, 4 * MIB)])
    assert isinstance(r.run_until_blocked(), Blocked)
    r.feed(BioEnd(1, ENOSPC))
    r.feed(BioEnd(0, EIO))
    assert r.run_until_blocked() == Finished()
    assert complete(r.outputs).ret == ENOSPC


def test_error_before_next_extent_stops_submission():
    """iomap_dio_bio_iter L532-533: the submitter sees dio->error at the top of the bio
    loop of the next extent and submits nothing more (goto out, no tail zeroing)."""
    maps = [mapped(0, 4096), mapped(4096, 4096)]
    r = Runner(ENGINE, GEO, Request("write", 0, 8192), 65536, maps)
    first = r.emit_next()
    assert isinstance(first, Bio) and first.index == 0
    r.feed(BioEnd(0, EIO))  # completes (with an error) before the next ->iomap_begin
    assert r.run_until_blocked() == Finished()
    assert len(r.asked) == 2  # the second extent is still mapped
    assert len(bios(r.outputs)) == 1 and complete(r.outputs).ret == EIO


def test_async_bio_completing_before_the_submitter_drops_its_reference():
    """__iomap_dio_rw L856-873: if the bio already completed, the submitter's drop is
    the last reference: it completes the dio itself, with no -EIOCBQUEUED."""
    r = Runner(ENGINE, GEO, Request("write", 0, 4096, sync=False), 65536, [mapped(0, 65536)])
    assert isinstance(r.emit_next(), Bio)
    r.feed(BioEnd(0, 0))
    assert r.run_until_blocked() == Finished()
    assert kinds(r.outputs) == ["Bio", "Complete"] and complete(r.outputs).ctx == "submitter"


@pytest.mark.parametrize(
    ("cached", "status", "i_size", "ctx", "invalidated"),
    [
        (False, 0, 65536, "inline", False),  # L213-218: no pages -> NO_INVALIDATE, inline
        (True, 0, 65536, "workqueue", True),  # L215-216: pages cached -> COMP_WORK
        (False, EIO, 65536, "workqueue", False),  # L203-204: errors; L137: no invalidation
        # L757-758: extending write has COMP_WORK already, so L213 never sets
        # NO_INVALIDATE and iomap_dio_complete invalidates (L137-139)
        (False, 0, 0, "workqueue", True),
    ],
)
def test_async_completion_context(cached, status, i_size, ctx, invalidated):
    """iomap_dio_done: who runs the completion of a queued async write."""
    req = Request("write", 0, 4096, sync=False, cached_pages=cached)
    r = Runner(ENGINE, GEO, req, i_size, [mapped(0, 65536)])
    assert isinstance(r.run_until_blocked(), Blocked)
    assert isinstance(r.outputs[-1], Queued)
    r.feed(BioEnd(0, status))
    r.run_until_blocked()
    c = complete(r.outputs)
    assert c.ctx == ctx
    assert c.ret == (status or 4096)
    assert c.invalidated is invalidated


def test_force_wait_keeps_an_async_request_synchronous():
    """__iomap_dio_rw L682-683: FORCE_WAIT waits even for an async kiocb."""
    req = Request("write", 0, 4096, sync=False, dio={"FORCE_WAIT"})
    out = drive(ENGINE, GEO, req, 65536, [mapped(0, 65536)])
    assert kinds(out) == ["Bio", "Complete"] and complete(out).ctx == "submitter"


def test_atomic_bio_must_cover_the_whole_write():
    """iomap_dio_bio_iter L436-445: ATOMIC_BIO with length != iter->len -> -EINVAL."""
    req = Request("write", 0, 8192, iocb={"ATOMIC"})
    short = drive(ENGINE, GEO, req, 65536, [mapped(0, 4096, flags={"ATOMIC_BIO"})])
    assert kinds(short) == ["Complete"] and complete(short).ret == EINVAL
    whole = drive(ENGINE, GEO, req, 65536, [mapped(0, 65536, flags={"ATOMIC_BIO"})])
    assert [(b.len, b.atomic) for b in bios(whole)] == [(8192, True)]


def test_inline_write_extends_i_size_and_inline_read():
    """iomap_dio_inline_iter L598-611: copy in/out, i_size_write(pos + copied)."""
    m = Mapping(0, 4096, "INLINE", addr=None)
    out = drive(ENGINE, GEO, Request("write", 100, 200), 60, [m])
    assert kinds(out) == ["Complete"]
    assert (complete(out).ret, complete(out).i_size) == (200, 300)
    out = drive(ENGINE, GEO, Request("read", 10, 100), 60, [m])
    assert complete(out).ret == 50  # capped at i_size 60 - 10


def test_inline_data_crossing_a_page_is_eio():
    """iomap_inline_data_valid: length <= PAGE_SIZE - offset_in_page(inline_data)."""
    m = Mapping(0, 4096, "INLINE", addr=100)  # inline data 100 bytes into its page
    out = drive(ENGINE, GEO, Request("read", 0, 50), 60, [m])
    assert complete(out).ret == EIO


def test_buf_writethrough_skips_invalidation_and_sync():
    """RFC writethrough: no kiocb_invalidate_pages, no NEED_SYNC even for DSYNC, and
    COMP_WORK always (the completion runs from the workqueue)."""
    req = Request("write", 0, 4096, iocb={"DSYNC"}, dio={"BUF_WRITETHROUGH"}, sync=False)
    r = Runner(ENGINE, GEO_FUA, req, 65536, [mapped(0, 65536)], invalidate=EBUSY)
    out = r.finish()
    assert kinds(out) == ["Bio", "Queued", "Complete"]
    assert not bios(out)[0].fua
    assert (complete(out).ctx, complete(out).invalidated) == ("workqueue", False)


def test_large_block_fault_loses_the_error_and_rezeroes_the_head():
    """Seed quirk with fs blocks larger than pages (16 KiB blocks, 4 KiB pages), an
    UNWRITTEN extent and a fault at 4096, no PARTIAL:
    - extent 1: data bio 4096; next iter_one -EFAULT; tail pad 4096 & 16383 = 4096 ->
      zero bio [4096, 16384) and ret = 0 (L561-563); copied 4096 -> advance.
    - extent 2 (asked again at 4096): head pad 4096 -> zero bio [0, 4096) over the data
      just written (L520-522); iter_one -EFAULT; tail pad again with ret = 0; copied 0
      -> status 0 -> iomap_iter ends with 0: the -EFAULT is lost and ret = 4096."""
    geo = Geometry(16384, 512, 4096, write_cache=True, fua=False)
    m = Mapping(0, 65536, "UNWRITTEN", addr=DEV)
    r = Runner(ENGINE, geo, Request("write", 0, 16384), 65536, [m, m])
    r.feed(Fault(4096))
    out = r.finish()
    assert [(b.addr - DEV, b.len, b.zero) for b in bios(out)] == [
        (0, 4096, False),
        (4096, 12288, True),
        (0, 4096, True),
        (4096, 12288, True),
    ]
    assert complete(out).ret == 4096


def test_huge_offsets_near_2_62():
    """Arithmetic must not depend on offsets: a read and a write near 2**62."""
    base = 1 << 62
    out = drive(ENGINE, GEO, Request("read", base, 8192), base + 4096, [mapped(base, 8192, DEV)])
    assert (complete(out).ret, complete(out).pos_after) == (4096, base + 4096)
    out = drive(ENGINE, GEO, Request("write", base + 512, 512), base, [mapped(base, 8192, DEV)])
    # extending write on MAPPED: data at 512, tail pad 4096 - 1024 = 3072 at 1024
    assert [(b.addr - DEV, b.len, b.zero) for b in bios(out)] == [
        (512, 512, False),
        (1024, 3072, True),
    ]
    assert complete(out).i_size == base + 1024


def test_contract_violations_are_usage_errors():
    """iomap_iter_done: a mapping must cover the position asked for."""
    with pytest.raises(ModelUsageError, match="does not cover"):
        drive(ENGINE, GEO, Request("read", 8192, 4096), 65536, [mapped(0, 4096)])
    r = Runner(ENGINE, GEO, Request("read", 0, 4096), 65536, [mapped(0, 4096)])
    r.run_until_blocked()
    with pytest.raises(ModelUsageError, match="never issued"):
        r.feed(BioEnd(5, 0))
    with pytest.raises(ModelUsageError, match="did not ask"):
        ENGINE.feed(ENGINE.start(GEO, Request("read", 0, 4096), 65536), mapped(0, 4096))


def test_model_states_are_immutable():
    """Engine states are frozen values: stepping returns new states."""
    s0 = ENGINE.start(GEO, Request("read", 0, 4096), 65536)
    s1, _ = ENGINE.step(s0)
    with pytest.raises(AttributeError):
        s0.pos = 5  # type: ignore[misc]
    assert s0.phase == "start" and s1 is not s0


def test_buf_writethrough_bio_is_the_whole_extent_and_cannot_fault():
    """RFC writethrough hands iomap_dio_rw a bvec iterator over the folio: bio_iov_iter_
    get_pages -> bio_iov_bvec_set takes it whole (no 256-page cut), and a kernel page
    list has no user memory that could fault. 2 MiB in one MAPPED extent -> one bio."""
    req = Request("write", 0, 2 * MIB, dio={"BUF_WRITETHROUGH"}, sync=False)
    r = Runner(ENGINE, GEO, req, 4 * MIB, [mapped(0, 4 * MIB)])
    with pytest.raises(ModelUsageError, match="no user buffer"):
        r.feed(Fault(4096))
    out = r.finish()
    assert [(b.addr - DEV, b.len) for b in bios(out)] == [(0, 2 * MIB)]
    assert complete(out).ret == 2 * MIB
