"""Scenarios for the legacy engine model (fs/direct-io.c, seed legacy-direct-io.c).

Every expected output below is worked out by hand from the seed code (the arithmetic is
in the comments; "L…" are seed line numbers), never computed by the model. Unless said
otherwise: fs block 4096, logical block 512, page 4096, a page-aligned user buffer.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from dioconf.model import errno as E
from dioconf.model.engine import drive
from dioconf.model.legacy import ENGINE
from dioconf.model.types import (
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
    InvalidateResult,
    MapError,
    Mapping,
    ModelUsageError,
    NeedMap,
    NeedWriteback,
    Output,
    Queued,
    Request,
    WritebackResult,
)

G = Geometry(fs_block_size=4096, logical_block_size=512, page_size=4096)
MiB = 1 << 20


def mapped(offset: int, length: int, addr: int, *flags: str) -> Mapping:
    return Mapping(offset=offset, length=length, type="MAPPED", flags=frozenset(flags), addr=addr)


def hole(offset: int, length: int) -> Mapping:
    return Mapping(offset=offset, length=length, type="HOLE")


class Fs:
    """A get_block that answers from a list and records what it was asked."""

    def __init__(self, answers: Iterable[Mapping | MapError]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[int, int, bool, bool | None]] = []

    def __call__(self, need: NeedMap) -> Mapping | MapError:
        assert need.rule.startswith("get_more_blocks")
        self.asked.append((need.pos, need.length, need.write, need.create))
        return self.answers.pop(0)


def summary(outputs: list[Output]) -> list[tuple]:
    out: list[tuple] = []
    for o in outputs:
        assert o.rule, f"{o!r} carries no rule"
        if isinstance(o, Bio):
            assert not o.fua
            out.append(("bio", o.index, o.op, o.addr, o.len, o.zero))
        elif isinstance(o, Queued):
            out.append(("queued",))
        elif isinstance(o, Flush):
            out.append(("flush",))
        else:
            assert isinstance(o, Complete)
            out.append(("complete", o.ret, o.pos_after, o.i_size, o.ctx, o.invalidated))
    return out


def run(req: Request, i_size: int, answers: Iterable[Mapping | MapError] = (), **kw):
    fs = Fs(answers)
    outputs = drive(ENGINE, G if "geo" not in kw else kw.pop("geo"), req, i_size, fs, **kw)
    assert not fs.answers, "not every mapping was asked for"
    return summary(outputs), fs.asked, outputs


def step_to_output(s):
    """Step (answering nothing) until the engine emits; return (state, output)."""
    while True:
        s, action = ENGINE.step(s)
        if isinstance(action, Emit):
            return s, action.output
        raise AssertionError(f"unexpected action {action!r}")


# --------------------------------------------------------------------------- entry


def test_aligned_read_one_extent():
    """__blockdev_direct_IO + do_direct_IO + dio_send_cur_page: one mapped extent, one bio."""
    # blkbits 12 (8192|8192 aligned); block_in_file 2, final 16384>>12 = 4;
    # get_more_blocks: fs_startblk 2, fs_count 4-1-2+1 = 2 -> b_size 8192, create 0 (read)
    # blocks_available 2, next_block_for_io 4202496>>12 = 1026; p0 -> cur_page (blk 1026),
    # p1 merges into the bio (1027 == final_block_in_bio, 12288 == 8192+4096); one bio
    req = Request(op="read", pos=8192, len=8192)
    outs, asked, _ = run(req, 65536, [mapped(8192, 8192, 4202496)])
    assert asked == [(8192, 8192, False, False)]
    assert outs == [
        ("bio", 0, "read", 4202496, 8192, False),
        ("complete", 8192, 16384, 65536, "submitter", False),
    ]


def test_read_at_or_after_eof_and_empty_read():
    """__blockdev_direct_IO (L1117-1142): 0-byte read and offset >= i_size return 0 first."""
    for pos, length in [(65536, 4096), (70000, 4096), (65537, 1), (0, 0)]:
        outs, asked, raw = run(Request(op="read", pos=pos, len=length), 65536)
        assert asked == []  # no get_block, no alignment check (65537|1 is misaligned)
        assert outs == [("complete", 0, pos, 65536, "submitter", False)]
        assert raw[-1].rule.startswith("__blockdev_direct_IO")


def test_zero_byte_write_walks_nothing():
    """__blockdev_direct_IO: a 0-byte write is not short-circuited; do_direct_IO walks nothing."""
    # block_in_file == final_block_in_request == 0: no page, no get_block; dio_complete: 0
    outs, asked, _ = run(Request(op="write", pos=4096, len=0), 65536)
    assert asked == []
    assert outs == [("complete", 0, 4096, 65536, "submitter", False)]


def test_misaligned_to_fs_block_uses_logical_block():
    """__blockdev_direct_IO (L1144-1150, L1209) + do_direct_IO dio_remainder (L947-963)."""
    # align 1536|1024 = 1536: not 4096-aligned, 512-aligned -> blkbits 9, blkfactor 3
    # block_in_file 1536>>9 = 3, final 2560>>9 = 5; fs_startblk 3>>3 = 0, fs_endblk 4>>3 = 0
    # -> NeedMap(0, 4096); blocks_available 4096>>9 = 8, next_block 256<<3 = 2048,
    # remainder 3 & 7 = 3, not new -> next_block 2051, available 5; chunk min(5, 2, 2) = 2
    # -> bio at 2051*512 = 1050112, 1024 bytes
    req = Request(op="read", pos=1536, len=1024)
    outs, asked, _ = run(req, 65536, [mapped(0, 4096, 256 * 4096)])
    assert asked == [(0, 4096, False, False)]
    assert outs == [
        ("bio", 0, "read", 1050112, 1024, False),
        ("complete", 1024, 2560, 65536, "submitter", False),
    ]


def test_misaligned_to_logical_block_is_einval():
    """__blockdev_direct_IO (L1144-1149): misaligned to the bdev logical block -> -EINVAL."""
    for req in [Request(op="read", pos=100, len=512), Request(op="write", pos=0, len=100)]:
        outs, asked, _ = run(req, 65536)
        assert asked == []
        assert outs == [("complete", E.EINVAL, req.pos, 65536, "submitter", False)]


# --------------------------------------------------------------------------- holes


def test_read_across_hole_asks_once_per_block():
    """do_direct_IO do_holes (L965-993): a hole is zeroed and walked one block at a time."""
    # final 16384>>12 = 4; blocks 0..2 are a hole: get_block asked at blocks 0, 1, 2 with
    # b_size (4-b)<<12, each zeroes 4096 (result 12288); block 3 mapped -> one bio
    req = Request(op="read", pos=0, len=16384)
    answers = [hole(0, 12288), hole(4096, 8192), hole(8192, 4096), mapped(12288, 4096, MiB)]
    outs, asked, _ = run(req, 65536, answers)
    assert asked == [(0, 16384, False, False), (4096, 12288, False, False),
                     (8192, 8192, False, False), (12288, 4096, False, False)]  # fmt: skip
    assert outs == [
        ("bio", 0, "read", MiB, 4096, False),
        ("complete", 16384, 16384, 65536, "submitter", False),
    ]


def test_read_hole_with_blkfactor_asks_same_fs_block_per_dio_block():
    """get_more_blocks (L611) + do_holes: with blkfactor a hole is asked per dio block."""
    # pos 512 len 1024: blkbits 9, blkfactor 3, block_in_file 1, final 3
    # block 1: fs_startblk 1>>3 = 0, b_size 4096 -> hole, zero 512; block 2: same ask again
    req = Request(op="read", pos=512, len=1024)
    outs, asked, _ = run(req, 65536, [hole(0, 4096), hole(0, 4096)])
    assert asked == [(0, 4096, False, False), (0, 4096, False, False)]
    assert outs == [("complete", 1024, 1536, 65536, "submitter", False)]


def test_read_across_hole_splits_logically_discontiguous_bios():
    """dio_send_cur_page (L714-736): a hole between mapped blocks ends the bio."""
    # block 0 at 1 MiB (cur_page blk 256), block 1 hole (zeroed), block 2 at 2 MiB: when p2
    # arrives p0 goes into a new bio (final_block_in_bio 257); at the end p2 (blk 512):
    # 257 != 512 -> bio 0 submitted, then bio 1
    req = Request(op="read", pos=0, len=12288)
    answers = [mapped(0, 4096, MiB), hole(4096, 8192), mapped(8192, 4096, 2 * MiB)]
    outs, _, _ = run(req, 65536, answers)
    assert outs == [
        ("bio", 0, "read", MiB, 4096, False),
        ("bio", 1, "read", 2 * MiB, 4096, False),
        ("complete", 12288, 12288, 65536, "submitter", False),
    ]


def test_read_hole_past_eof_stops_and_short_read_cap():
    """do_holes (L980-986) 'we hit eof' + dio_complete short read (L253-255)."""
    # i_size 5000: ALIGN(5000, 4096) = 8192 -> EOF block 2. block 0 mapped (4096),
    # block 1 hole (< 2: zeroed, result 8192), block 2 hole (>= 2): stop with ret 0.
    # dio_complete: 0 + 8192 > 5000 -> transferred 5000
    req = Request(op="read", pos=0, len=12288)
    answers = [mapped(0, 4096, MiB), hole(4096, 8192), hole(8192, 4096)]
    outs, asked, _ = run(req, 5000, answers)
    assert len(asked) == 3
    assert outs == [
        ("bio", 0, "read", MiB, 4096, False),
        ("complete", 5000, 5000, 5000, "submitter", False),
    ]


def test_short_read_cap_of_mapped_block():
    """dio_complete (L253-255): a mapped read past i_size is capped to i_size - offset."""
    # result 4096 (whole block read from disk); 0 + 4096 > 1000 -> transferred 1000
    outs, _, raw = run(Request(op="read", pos=0, len=4096), 1000, [mapped(0, 4096, MiB)])
    assert outs == [
        ("bio", 0, "read", MiB, 4096, False),
        ("complete", 1000, 1000, 1000, "submitter", False),
    ]
    assert "capped" in raw[-1].rule


def test_write_into_unmapped_block_is_partial():
    """do_holes (L971-973) -ENOTBLK, turned into 0 by __blockdev_direct_IO (L1241-1247)."""
    # block 0 mapped -> cur_page; block 1 unmapped -> -ENOTBLK -> 0; cur_page sent at the
    # end (L1254-1264); dio_complete: result 4096 -> ret 4096
    req = Request(op="write", pos=0, len=8192)
    outs, asked, _ = run(req, 65536, [mapped(0, 4096, MiB), hole(4096, 4096)])
    assert asked == [(0, 8192, True, True), (4096, 4096, True, True)]
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("complete", 4096, 4096, 65536, "submitter", False),
    ]
    # no progress at all: -ENOTBLK -> 0, no bio, ret = transferred = 0
    outs, _, _ = run(req, 65536, [hole(0, 8192)])
    assert outs == [("complete", 0, 0, 65536, "submitter", False)]


def test_skip_holes_create_rules():
    """get_more_blocks (L631-635): DIO_SKIP_HOLES forbids creation inside i_size."""
    # inside i_size: fs_startblk 1 <= (65536-1)>>12 = 15 -> create 0; unmapped -> 0 bytes
    req = Request(op="write", pos=4096, len=4096, dio={"SKIP_HOLES"})
    outs, asked, _ = run(req, 65536, [hole(4096, 4096)])
    assert asked == [(4096, 4096, True, False)]
    assert outs == [("complete", 0, 4096, 65536, "submitter", False)]
    # empty inode: i_size 0 -> the rule does not apply, create 1; extends to 4096
    req = Request(op="write", pos=0, len=4096, dio={"SKIP_HOLES"})
    outs, asked, _ = run(req, 0, [mapped(0, 4096, MiB, "NEW")])
    assert asked == [(0, 4096, True, True)]
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("complete", 4096, 4096, 4096, "submitter", False),
    ]
    # beyond i_size: fs_startblk 2 > (4096-1)>>12 = 0 -> create 1
    req = Request(op="write", pos=8192, len=4096, dio={"SKIP_HOLES"})
    _, asked, _ = run(req, 4096, [mapped(8192, 4096, MiB, "NEW")])
    assert asked == [(8192, 4096, True, True)]


# --------------------------------------------------------------------------- sub-block zeroing


def test_sub_block_write_into_new_block_zeroes_head_and_tail():
    """dio_zero_block (L841-874) at start and end, merged by dio_send_cur_page."""
    # pos 1024 len 1024: blkbits 9, blkfactor 3, block_in_file 2, final 4,
    # pages_in_io 2 + 1 = 3. NeedMap(0, 4096, create); NEW at blocknr 256:
    # available 8, next_block 2048 (new: no remainder skip), available 8-2 = 6.
    # dio_zero_block(0): 2 & 7 = 2 blocks = 1024 bytes of ZERO_PAGE at 2048, cur_page
    # fs_offset = block_in_file<<9 = 1024; next_block 2050.
    # data chunk min(6, 2, 2) = 2 at 2050: cur_page is ZERO -> new bio at 2048
    # (logical_offset_in_bio 1024), add zero (final_block_in_bio 2050); cur_page = user
    # (2050, fs_offset 1024). dio_zero_block(1): 4 & 7 = 4 -> 8-4 = 4 blocks = 2048 bytes
    # at 2052: send user: 2050 == 2050 but 1024 != 1024 + 1024 -> submit the zero bio
    # (1024 bytes at 2048*512 = 1 MiB); new bio at 2050 (logical 1024), add user;
    # cur_page = ZERO (2052, fs_offset 4<<9 = 2048). Final send: 2052 == 2052 and
    # 2048 == 1024 + 1024 -> same bio: 1024 + 2048 = 3072 bytes at 2050*512 = 1049600.
    req = Request(op="write", pos=1024, len=1024)
    outs, asked, raw = run(req, 8192, [mapped(0, 4096, MiB, "NEW")])
    assert asked == [(0, 4096, True, True)]
    assert outs == [
        ("bio", 0, "write", MiB, 1024, True),
        ("bio", 1, "write", 1049600, 3072, False),
        ("complete", 1024, 2048, 8192, "submitter", False),
    ]
    assert raw[0].rule.startswith("dio_bio_submit via dio_send_cur_page")


def test_sub_block_write_at_block_start_zeroes_tail_only():
    """dio_zero_block (L854-857): nothing to zero at the start when block_in_file & 7 == 0."""
    # pos 0 len 1024: block_in_file 0, final 2; start: 0 & 7 = 0 -> no zeroing.
    # data at 2048 (fs_offset 0); end: 2 & 7 = 2 -> 6 blocks = 3072 bytes at 2050,
    # fs_offset 2<<9 = 1024 == 0 + 1024 -> merged: one bio of 4096 at 1 MiB, not zero
    outs, _, _ = run(Request(op="write", pos=0, len=1024), 8192, [mapped(0, 4096, MiB, "NEW")])
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("complete", 1024, 1024, 8192, "submitter", False),
    ]


def test_sub_block_write_into_existing_block_does_not_zero():
    """dio_zero_block (L850): no zeroing without buffer_new; dio_remainder skipped (L961)."""
    # not new: next_block 2048 + 2 = 2050; one data bio of 1024 at 2050*512 = 1049600
    outs, _, _ = run(Request(op="write", pos=1024, len=1024), 8192, [mapped(0, 4096, MiB)])
    assert outs == [
        ("bio", 0, "write", 1049600, 1024, False),
        ("complete", 1024, 2048, 8192, "submitter", False),
    ]


# --------------------------------------------------------------------------- bio building


def test_disk_discontiguous_extents_are_separate_bios():
    """dio_send_cur_page (L733-735): final_block_in_bio != cur_page_block -> submit."""
    # block 0 at 1 MiB (blk 256), block 1 at 3 MiB (blk 768): 257 != 768
    req = Request(op="write", pos=0, len=8192)
    outs, asked, raw = run(req, 65536, [mapped(0, 4096, MiB), mapped(4096, 4096, 3 * MiB)])
    assert asked == [(0, 8192, True, True), (4096, 4096, True, True)]
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("bio", 1, "write", 3 * MiB, 4096, False),
        ("complete", 8192, 8192, 65536, "submitter", False),
    ]
    assert "not contiguous" in raw[0].rule


def test_more_than_256_pages_splits_the_bio():
    """dio_new_bio (L662) nr_vecs = bio_max_segs(pages_in_io); dio_send_cur_page (L744-751)."""
    # 257 pages: pages_in_io 257 -> nr_vecs 256. Pages 0..255 fill bio 0 (each chunk ends
    # at PAGE_SIZE: pages_in_io 257 -> 1); the final send of page 256 fails bio_add_page
    # -> bio 0 (1 MiB at 8 MiB) submitted, new bio nr_vecs min(1, 256) = 1 -> 4096 at 9 MiB
    n = 257 * 4096
    req = Request(op="read", pos=0, len=n)
    outs, _, raw = run(req, 2 * MiB, [mapped(0, n, 8 * MiB)])
    assert outs == [
        ("bio", 0, "read", 8 * MiB, MiB, False),
        ("bio", 1, "read", 9 * MiB, 4096, False),
        ("complete", n, n, 2 * MiB, "submitter", False),
    ]
    assert "bio full" in raw[0].rule


def test_boundary_submits_the_bio_early():
    """submit_page_section (L822-828) + do_direct_IO (L1017-1018): buffer_boundary."""
    # block 0 (BOUNDARY) is used up by its chunk: boundary = 1 -> cur_page sent into a new
    # bio and the bio submitted at once, although block 1 is disk-contiguous (blk 257)
    req = Request(op="read", pos=0, len=8192)
    answers = [mapped(0, 4096, MiB, "BOUNDARY"), mapped(4096, 4096, MiB + 4096)]
    outs, _, raw = run(req, 65536, answers)
    assert outs == [
        ("bio", 0, "read", MiB, 4096, False),
        ("bio", 1, "read", MiB + 4096, 4096, False),
        ("complete", 8192, 8192, 65536, "submitter", False),
    ]
    assert "boundary" in raw[0].rule


# --------------------------------------------------------------------------- bio errors


def test_bio_error_is_eio():
    """dio_bio_complete (L494-499): any bio error -> io_error -EIO (also -EAGAIN on reads)."""
    for op, status in [("write", E.EIO), ("read", E.EAGAIN)]:
        req = Request(op=op, pos=0, len=4096)
        outs, _, raw = run(req, 65536, [mapped(0, 4096, MiB)], statuses={0: status})
        assert outs[-1] == ("complete", E.EIO, 0, 65536, "submitter", False)
        assert "io_error" in raw[-1].rule


def test_nowait_write_eagain():
    """dio_bio_complete (L495-496): BLK_STS_AGAIN on a REQ_NOWAIT write -> -EAGAIN."""
    req = Request(op="write", pos=0, len=4096, iocb={"NOWAIT"})
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB)], statuses={0: E.EAGAIN})
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("complete", E.EAGAIN, 0, 65536, "submitter", False),
    ]


def _two_bio_nowait_write(first: BioEnd, second: BioEnd) -> Complete:
    s = ENGINE.start(G, Request(op="write", pos=0, len=8192, iocb={"NOWAIT"}), 65536)
    s, action = ENGINE.step(s)
    assert isinstance(action, NeedMap) and action.pos == 0
    s = ENGINE.feed(s, mapped(0, 4096, MiB))
    s, action = ENGINE.step(s)
    assert isinstance(action, NeedMap) and action.pos == 4096
    s = ENGINE.feed(s, mapped(4096, 4096, 3 * MiB))
    s, b0 = step_to_output(s)
    s, b1 = step_to_output(s)
    assert (b0.index, b1.index) == (0, 1)
    s = ENGINE.feed(ENGINE.feed(s, first), second)
    s, done = step_to_output(s)
    assert ENGINE.step(s)[1] == Finished()
    return done


def test_sync_completions_are_processed_lifo_last_wins():
    """dio_bio_end_io (L380-382) pushes at the head; dio_await_one pops it; last error wins."""
    # completed 0 (-EIO) then 1 (-EAGAIN): list 1 -> 0: processed 1 then 0 -> -EIO
    done = _two_bio_nowait_write(BioEnd(0, E.EIO), BioEnd(1, E.EAGAIN))
    assert done.ret == E.EIO
    # completed 1 (-EAGAIN) then 0 (-EIO): list 0 -> 1: processed 0 then 1 -> -EAGAIN
    done = _two_bio_nowait_write(BioEnd(1, E.EAGAIN), BioEnd(0, E.EIO))
    assert done.ret == E.EAGAIN


def test_reaped_bio_error_stops_submission():
    """dio_bio_reap (L538-553) on the 65th dio_new_bio: a reaped error aborts submission."""
    # 66 pages, every block on its own disk-discontiguous extent (blk 2k + 256):
    # page k arriving sends page k-1 -> dio_new_bio call k. Calls 1..64 only count
    # (reap_counter 0..63 -> 64); call 65 (page 65 arriving, after bio 63 was submitted)
    # reaps bio 0 (-EIO): dio_new_bio returns -EIO, page 64 is dropped, do_direct_IO out.
    # 64 bios issued; dio_complete: ret = retval -EIO.
    s = ENGINE.start(G, Request(op="read", pos=0, len=66 * 4096), 1 << 30)
    bios: list[Bio] = []
    asked = 0
    while True:
        s, action = ENGINE.step(s)
        if isinstance(action, NeedMap):
            k = action.pos // 4096
            asked += 1
            s = ENGINE.feed(s, mapped(action.pos, 4096, MiB + 2 * k * 4096))
        elif isinstance(action, Emit) and isinstance(action.output, Bio):
            bios.append(action.output)
            if action.output.index == 0:
                s = ENGINE.feed(s, BioEnd(0, E.EIO))
        elif isinstance(action, Blocked):
            s = ENGINE.feed(s, BioEnd(min(action.outstanding)))
        elif isinstance(action, Emit):
            done = action.output
        else:
            assert isinstance(action, Finished)
            break
    assert asked == 66
    assert len(bios) == 64
    assert bios[63].addr == MiB + 2 * 63 * 4096
    assert isinstance(done, Complete) and done.ret == E.EIO
    assert "dio_bio_reap" in done.rule


# --------------------------------------------------------------------------- async


def test_async_read_queued_then_inline_completion():
    """__blockdev_direct_IO (L1290-1301) -EIOCBQUEUED; dio_bio_end_aio completes inline."""
    # async read, result 4096: queued; last bio end: result and not defer, read -> inline;
    # dio_complete(ASYNC): ki_pos += transferred -> 4096
    req = Request(op="read", pos=0, len=4096, sync=False)
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB)])
    assert outs == [
        ("bio", 0, "read", MiB, 4096, False),
        ("queued",),
        ("complete", 4096, 4096, 65536, "inline", False),
    ]


def test_async_read_bio_completes_before_submitter_drops_ref():
    """drop_refcount (L1296-1297) reaches 0: dio_complete in the submitter, no Queued."""
    s = ENGINE.start(G, Request(op="read", pos=0, len=4096, sync=False), 65536)
    s, action = ENGINE.step(s)
    assert action == NeedMap(pos=0, length=4096, write=False, create=False, rule=action.rule)
    s = ENGINE.feed(s, mapped(0, 4096, MiB))
    s, bio = step_to_output(s)
    assert (bio.index, bio.addr, bio.len) == (0, MiB, 4096)
    s = ENGINE.feed(s, BioEnd(0))  # dio_bio_end_aio: refcount 2 -> 1
    s, done = step_to_output(s)  # -EIOCBQUEUED -> drop_refcount -> 0 -> ret 0 -> 4096
    assert summary([done]) == [("complete", 4096, 4096, 65536, "submitter", False)]
    assert ENGINE.step(s)[1] == Finished()


def test_async_read_error_advances_ki_pos_by_transferred():
    """dio_complete (L305): the aio path adds transferred to ki_pos even when ret < 0."""
    req = Request(op="read", pos=0, len=4096, sync=False)
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB)], statuses={0: E.EIO})
    assert outs[1:] == [("queued",), ("complete", E.EIO, 4096, 65536, "inline", False)]


def test_async_extending_write_waits():
    """__blockdev_direct_IO (L1168-1169): end > i_size -> not async, no -EIOCBQUEUED."""
    # end 69632 > 65536: sync semantics; the caller advances ki_pos and i_size by 4096
    req = Request(op="write", pos=65536, len=4096, sync=False)
    outs, _, _ = run(req, 65536, [mapped(65536, 4096, MiB, "NEW")])
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("complete", 4096, 69632, 69632, "submitter", False),
    ]


def test_async_dsync_write_defers_to_workqueue_and_flushes():
    """__blockdev_direct_IO (L1186-1189) defer_completion; dio_complete (L307-308) sync."""
    req = Request(op="write", pos=0, len=4096, sync=False, iocb={"DSYNC"})
    outs, _, raw = run(req, 65536, [mapped(0, 4096, MiB)])
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("queued",),
        ("flush",),
        ("complete", 4096, 4096, 65536, "workqueue", False),
    ]
    assert raw[2].rule.startswith("dio_complete")


def test_async_write_with_cached_pages_defers_and_invalidates():
    """dio_bio_end_aio (L354-357) write + nrpages -> workqueue with DIO_COMPLETE_INVALIDATE."""
    req = Request(op="write", pos=0, len=4096, sync=False, cached_pages=True)
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB)])
    assert outs[1:] == [("queued",), ("complete", 4096, 4096, 65536, "workqueue", True)]


def test_defer_completion_buffer_flag():
    """get_more_blocks (L643-644): buffer_defer_completion -> workqueue completion."""
    req = Request(op="read", pos=0, len=4096, sync=False)
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB, "DEFER_COMPLETION")])
    assert outs[-1] == ("complete", 4096, 4096, 65536, "workqueue", False)


def test_async_partial_write_is_not_queued():
    """__blockdev_direct_IO (L1290-1294): result != count on a write -> wait."""
    req = Request(op="write", pos=0, len=8192, sync=False)
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB), hole(4096, 4096)])
    assert outs == [
        ("bio", 0, "write", MiB, 4096, False),
        ("complete", 4096, 4096, 65536, "submitter", False),
    ]


def test_sync_dsync_write_flush_by_caller():
    """generic_write_sync by the caller of __blockdev_direct_IO, invalidation (L287-295)."""
    req = Request(op="write", pos=0, len=4096, iocb={"SYNC"}, cached_pages=True)
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB)])
    assert outs[1:] == [("flush",), ("complete", 4096, 4096, 65536, "submitter", True)]


# --------------------------------------------------------------------------- faults


def test_read_fault_after_progress_is_short():
    """dio_refill_pages (L199) -EFAULT; dio_complete (L257-258) ignores it after progress."""
    # 65 pages, fault at page 64: the first refill pins 64 pages (256 KiB), the second
    # fails -> do_direct_IO -EFAULT; cur_page (page 63) still sent: one bio of 262144
    # (nr_vecs min(65, 256) = 65 >= 64); ret = transferred 262144
    n = 65 * 4096
    req = Request(op="read", pos=0, len=n)
    outs, _, _ = run(req, MiB, [mapped(0, n, 8 * MiB)], faults=[64 * 4096])
    assert outs == [
        ("bio", 0, "read", 8 * MiB, 262144, False),
        ("complete", 262144, 262144, MiB, "submitter", False),
    ]
    # no progress: the first refill fails before any get_block -> -EFAULT
    outs, asked, _ = run(Request(op="read", pos=0, len=4096), MiB, [], faults=[0])
    assert asked == []
    assert outs == [("complete", E.EFAULT, 0, MiB, "submitter", False)]


def test_fault_applies_only_to_later_refills():
    """dio_refill_pages: a Fault fed after the pages were pinned changes nothing."""
    s = ENGINE.start(G, Request(op="read", pos=0, len=8192), 65536)
    s, action = ENGINE.step(s)  # the first refill pinned both pages
    assert isinstance(action, NeedMap)
    s = ENGINE.feed(s, Fault(0))
    s = ENGINE.feed(s, mapped(0, 8192, MiB))
    s, bio = step_to_output(s)
    assert (bio.addr, bio.len) == (MiB, 8192)


def test_write_fault_with_blocks_available_fills_zero_page():
    """dio_refill_pages (L174-190): ZERO_PAGE uses up mapped blocks; page_errors -EFAULT."""
    # 2 pages, fault at 4096: refill 1 pins page 0; map 8192 -> available 2; page 0 ->
    # cur_page (blk 256). refill 2 fails with available 1 -> page_errors -EFAULT, ZERO_PAGE
    # 0..4096: chunk 1 block at 257 (fs_offset 4096 == 0 + 4096) -> same bio: 8192 bytes,
    # mixed (not zero). Loop ends at final; dio_complete: ret 0, page_errors -> -EFAULT
    req = Request(op="write", pos=0, len=8192)
    outs, asked, _ = run(req, 65536, [mapped(0, 8192, MiB)], faults=[4096])
    assert len(asked) == 1
    assert outs == [
        ("bio", 0, "write", MiB, 8192, False),
        ("complete", E.EFAULT, 0, 65536, "submitter", False),
    ]


def test_write_fault_page_errors_returned_by_get_more_blocks():
    """get_more_blocks (L608-609): once the mapped blocks are used, page_errors returns."""
    # fs block 1024 (blkbits 10, no blkfactor): 8192 at 0, fault at 4096; map 6144 ->
    # available 6; page 0: min(6, 4, 8) = 4 blocks at 1024; refill fails, available 2 ->
    # ZERO_PAGE: min(2, 4, 4) = 2 blocks at 1028; available 0 -> get_more_blocks returns
    # -EFAULT without asking. One bio 1024*1024 = 1 MiB, 4096 + 2048 = 6144 bytes.
    geo = Geometry(fs_block_size=1024, logical_block_size=512, page_size=4096)
    req = Request(op="write", pos=0, len=8192)
    outs, asked, _ = run(req, 65536, [mapped(0, 6144, MiB)], faults=[4096], geo=geo)
    assert asked == [(0, 8192, True, True)]
    assert outs == [
        ("bio", 0, "write", MiB, 6144, False),
        ("complete", E.EFAULT, 0, 65536, "submitter", False),
    ]


def test_write_fault_without_mapped_blocks_is_partial():
    """dio_refill_pages (L199): with no blocks left the fault is returned; write is partial."""
    # page 0 uses its block (map 4096); refill 2 fails with available 0 -> -EFAULT;
    # result 4096 -> EFAULT ignored -> 4096
    req = Request(op="write", pos=0, len=8192)
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB)], faults=[4096])
    assert outs[-1] == ("complete", 4096, 4096, 65536, "submitter", False)


# --------------------------------------------------------------------------- errors


def test_get_block_error():
    """get_more_blocks (L637): a get_block error ends the walk; the cur_page is still sent."""
    req = Request(op="read", pos=0, len=8192)
    outs, _, raw = run(req, 65536, [mapped(0, 4096, MiB), MapError(E.EIO)])
    assert outs == [
        ("bio", 0, "read", MiB, 4096, False),
        ("complete", E.EIO, 0, 65536, "submitter", False),
    ]
    assert "get_block" in raw[-1].rule


def test_locking_read_writeback():
    """__blockdev_direct_IO (L1152-1158): DIO_LOCKING reads write back the range first."""
    s = ENGINE.start(G, Request(op="read", pos=0, len=4096, dio={"LOCKING"}), 65536)
    s, action = ENGINE.step(s)
    assert isinstance(action, NeedWriteback) and (action.pos, action.len) == (0, 4096)
    assert ENGINE.step(s) == (s, action)  # waiting: stepping again changes nothing
    with pytest.raises(ModelUsageError):
        ENGINE.feed(s, mapped(0, 4096, MiB))
    s = ENGINE.feed(s, WritebackResult(E.EIO))
    s, done = step_to_output(s)
    assert summary([done]) == [("complete", E.EIO, 0, 65536, "submitter", False)]
    # success: then the mapping is asked for as usual
    req = Request(op="read", pos=0, len=4096, dio={"LOCKING"})
    outs, _, _ = run(req, 65536, [mapped(0, 4096, MiB)])
    assert outs[-1] == ("complete", 4096, 4096, 65536, "submitter", False)


def test_usage_errors():
    """ModelUsageError: unknown/duplicate BioEnd, unasked inputs, bad mappings, BUG_ONs."""
    s = ENGINE.start(G, Request(op="read", pos=0, len=4096), 65536)
    with pytest.raises(ModelUsageError, match="never issued"):
        ENGINE.feed(s, BioEnd(0))
    with pytest.raises(ModelUsageError, match="did not ask"):
        ENGINE.feed(s, mapped(0, 4096, MiB))
    for unasked in (InvalidateResult(0), Cut(4096), WritebackResult(0)):
        with pytest.raises(ModelUsageError):
            ENGINE.feed(s, unasked)
    with pytest.raises(ModelUsageError, match="multiple of the page size"):
        ENGINE.feed(s, Fault(100))
    s, action = ENGINE.step(s)
    for bad in (
        mapped(4096, 4096, MiB),  # not the block asked for
        Mapping(offset=0, length=4096, type="UNWRITTEN", addr=MiB),
        mapped(0, 4096, MiB + 512),  # not fs-block aligned
        mapped(0, 4096, MiB, "SHARED"),
        Mapping(offset=0, length=4096, type="HOLE", flags=frozenset({"NEW"})),
    ):
        with pytest.raises(ModelUsageError):
            ENGINE.feed(s, bad)
    s = ENGINE.feed(s, mapped(0, 4096, MiB))
    s, bio = step_to_output(s)
    assert isinstance(bio, Bio)
    s = ENGINE.feed(s, BioEnd(0))
    with pytest.raises(ModelUsageError, match="already completed"):
        ENGINE.feed(s, BioEnd(0))
    with pytest.raises(ModelUsageError, match="done_before"):
        ENGINE.start(G, Request(op="read", pos=0, len=4096, done_before=4096), 65536)
    # dio block larger than a page: do_direct_IO BUG_ON(this_chunk_bytes == 0) (L1015)
    big = Geometry(fs_block_size=65536, logical_block_size=512, page_size=4096)
    s = ENGINE.start(big, Request(op="read", pos=0, len=65536), 1 << 20)
    s, action = ENGINE.step(s)
    assert action.length == 65536
    s = ENGINE.feed(s, mapped(0, 65536, MiB))
    with pytest.raises(ModelUsageError, match="kernel BUG_ON at do_direct_IO"):
        ENGINE.step(s)


def test_huge_offsets():
    """do_direct_IO/dio_bio_submit arithmetic is exact near 2**62 and the loff_t limit."""
    pos = 1 << 62
    req = Request(op="read", pos=pos, len=8192)
    outs, asked, _ = run(req, pos + 65536, [mapped(pos, 8192, 1 << 40)])
    assert asked == [(pos, 8192, False, False)]
    assert outs == [
        ("bio", 0, "read", 1 << 40, 8192, False),
        ("complete", 8192, pos + 8192, pos + 65536, "submitter", False),
    ]
    # an extending write ending 4096 below LOFF_MAX + 1: i_size grows to pos + 4096
    pos = (1 << 63) - 8192
    req = Request(op="write", pos=pos, len=4096)
    outs, asked, _ = run(req, 0, [mapped(pos, 4096, 1 << 40, "NEW")])
    assert asked == [(pos, 4096, True, True)]
    assert outs[-1] == ("complete", 4096, pos + 4096, pos + 4096, "submitter", False)
