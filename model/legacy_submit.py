"""Submission side of the legacy engine: the do_direct_IO() walk.

Models do_direct_IO, dio_get_page/dio_refill_pages, get_more_blocks, the hole rules,
dio_zero_block and the end of submission in __blockdev_direct_IO (L1238-1264) of
fs/direct-io.c ("L…" are line numbers of ../shared/seeds/legacy-direct-io.c). Bio
building (submit_page_section and below) is in ``legacy_bio``. A nested kernel call is a
phase with a saved return phase (``zero_caller``) and its return value in ``call_ret``.
"""

from __future__ import annotations

from collections.abc import Callable

from . import arith
from . import errno as E
from .legacy_bio import call_send, call_sps, dio_bio_submit
from .legacy_state import (
    DIO_CHUNK,
    DIO_GET_PAGE,
    DIO_MAPPED,
    DIO_PAGES,
    DIO_SUBMITTED,
    DIO_ZERO_BLOCK,
    DIO_ZERO_BLOCK_RET,
    DIRECT_IO_DONE,
    DO_DIRECT_IO,
    DO_HOLES,
    FINAL_BIO,
    FINAL_CUR_PAGE,
    FINAL_CUR_PAGE_SENT,
    GET_BLOCK,
    GET_BLOCK_RET,
    GET_MORE_BLOCKS,
    NEXT_BLOCK,
    NO_FAULT,
    NO_PAGE,
    QUEUE_OR_AWAIT,
    U32,
    ZERO_PAGE,
    LegacyState,
    Step,
    evolve,
    kernel_bug,
)
from .types import (
    LEGACY_MAP_FLAGS,
    Emit,
    MapError,
    Mapping,
    ModelUsageError,
    NeedMap,
    errno_name,
)

# --------------------------------------------------------------------------- calls


def call_zero(s: LegacyState, end: bool, caller: str) -> LegacyState:
    return evolve(s, phase=DIO_ZERO_BLOCK, zero_end=end, zero_caller=caller)


def direct_io_out(s: LegacyState, ret: int, why: str) -> Step:
    # do_direct_IO (L1043-1044): out: return ret to __blockdev_direct_IO
    return evolve(s, phase=DIRECT_IO_DONE, retval=ret, retval_why=why), None


# --------------------------------------------------------------------------- user pages


def dio_refill_pages(s: LegacyState) -> tuple[LegacyState, int]:
    # dio_refill_pages (L166-200): pin up to DIO_PAGES pages with iov_iter_get_pages2
    c = s.cfg
    remaining = c.count - s.iter_pos
    want = min(DIO_PAGES, -(-remaining // c.page_size))
    pinned = want
    if s.fault_at != NO_FAULT:
        pinned = min(want, max(0, (s.fault_at - s.iter_pos) // c.page_size))
    # get_user_pages pinned nothing: -EFAULT, or -EINTR with a fatal signal pending
    ret = s.fault_errno if want and not pinned else 0
    if ret < 0 and s.blocks_available and c.write:
        # dio_refill_pages (L174-190): use up the mapped blocks with ZERO_PAGE
        page_errors = s.page_errors or ret
        s = evolve(s, page_errors=page_errors, pages_base=ZERO_PAGE, head=0, tail=1)
        return evolve(s, sdio_from=0, sdio_to=c.page_size), 0
    if ret < 0:
        return s, ret  # dio_refill_pages (L199): the fault is returned
    nbytes = min(remaining, pinned * c.page_size)
    # dio_refill_pages (L192-197): head = 0, tail and `to` from the byte count
    return evolve(
        s,
        pages_base=s.iter_pos // c.page_size,
        iter_pos=s.iter_pos + nbytes,
        head=0,
        tail=-(-nbytes // c.page_size),
        sdio_from=0,
        sdio_to=((nbytes - 1) & (c.page_size - 1)) + 1 if nbytes else 0,
    ), 0


def dio_get_page(s: LegacyState) -> Step:
    # dio_get_page (L208-220): take the next pinned page, refilling the queue if empty
    if s.tail - s.head == 0:
        s, ret = dio_refill_pages(s)
        if ret:
            return direct_io_out(s, ret, f"dio_refill_pages (L171-199): {errno_name(ret)}")
        if s.tail - s.head == 0:
            raise kernel_bug("dio_get_page", "no page pinned although blocks remain (L217)")
    page = ZERO_PAGE if s.pages_base == ZERO_PAGE else s.pages_base + s.head
    # do_direct_IO (L909-911): from/to within this page
    from_ = s.sdio_from if s.head == 0 else 0
    to = s.sdio_to if s.head == s.tail - 1 else s.cfg.page_size
    return evolve(s, phase=DIO_CHUNK, page=page, from_=from_, to=to, head=s.head + 1), None


# --------------------------------------------------------------------------- do_direct_IO


def do_direct_io(s: LegacyState) -> Step:
    # do_direct_IO (L900): loop while block_in_file < final_block_in_request
    if s.block_in_file < s.final_block_in_request:
        return evolve(s, phase=DIO_GET_PAGE), None
    return direct_io_out(s, 0, "do_direct_IO (L900): all blocks walked")


def do_direct_io_chunk(s: LegacyState) -> Step:
    # do_direct_IO (L913-918): next section of this page; map more disk if none left
    if s.from_ >= s.to:
        return evolve(s, phase=DO_DIRECT_IO), None  # L1041: page done
    if s.blocks_available == 0:
        return evolve(s, phase=GET_MORE_BLOCKS), None
    return evolve(s, phase=DIO_MAPPED), None


def get_more_blocks(s: LegacyState) -> Step:
    # get_more_blocks (L608): a memory error after the mapped blocks are used is returned
    if s.page_errors:
        return direct_io_out(s, s.page_errors, "get_more_blocks (L608-609): page_errors")
    if s.block_in_file >= s.final_block_in_request:
        raise kernel_bug("get_more_blocks", "block_in_file >= final_block_in_request (L610)")
    c = s.cfg
    # get_more_blocks (L611-617): ask for every fs block up to the end of the request
    fs_startblk = s.block_in_file >> s.blkfactor
    fs_endblk = (s.final_block_in_request - 1) >> s.blkfactor
    b_size = (fs_endblk - fs_startblk + 1) << c.i_blkbits
    create = c.write
    # get_more_blocks (L631-635): DIO_SKIP_HOLES forbids creation inside i_size
    if c.skip_holes and c.i_size and fs_startblk <= (c.i_size - 1) >> c.i_blkbits:
        create = False
    need = fs_startblk << c.i_blkbits
    return evolve(s, phase=GET_BLOCK, need_pos=need, need_len=b_size, need_create=create), None


def get_block(s: LegacyState) -> Step:
    # get_more_blocks (L637): waiting for (*get_block)(inode, fs_startblk, map_bh, create)
    return s, NeedMap(
        pos=s.need_pos,
        length=s.need_len,
        write=s.cfg.write,
        create=s.need_create,
        rule="get_more_blocks (L637): get_block(inode, fs_startblk, map_bh, create)",
    )


def get_block_answer(s: LegacyState, inp: Mapping | MapError) -> LegacyState:
    """feed(): what get_block answered (validated against what was asked)."""
    # get_more_blocks (L616): map_bh->b_state = 0 before the call
    cleared = evolve(s, phase=GET_BLOCK_RET, map_mapped=False, map_new=False)
    cleared = evolve(cleared, map_boundary=False, map_defer=False, map_addr=0, map_size=0)
    if isinstance(inp, MapError):
        return evolve(cleared, call_ret=inp.errno)
    c = s.cfg
    where = f"get_block for fs block {s.need_pos >> c.i_blkbits} (byte {s.need_pos})"
    if inp.type not in ("MAPPED", "HOLE"):
        raise ModelUsageError(
            f"{where}: a legacy get_block answers MAPPED (buffer_mapped) or HOLE (unmapped), "
            f"not {inp.type}"
        )
    if inp.offset != s.need_pos:
        raise ModelUsageError(f"{where}: the Mapping starts at {inp.offset}, not {s.need_pos}")
    unknown = set(inp.flags) - LEGACY_MAP_FLAGS
    if unknown:
        raise ModelUsageError(
            f"{where}: flags {sorted(unknown)} are not buffer_head bits of a get_block "
            f"(allowed: {sorted(LEGACY_MAP_FLAGS)})"
        )
    mapped = inp.type == "MAPPED"
    if mapped:
        _check_mapped(s, inp, where)
    elif "NEW" in inp.flags:
        raise ModelUsageError(f"{where}: buffer_new on an unmapped buffer (HOLE with NEW)")
    return evolve(
        cleared,
        call_ret=0,
        map_mapped=mapped,
        map_new="NEW" in inp.flags,
        map_boundary="BOUNDARY" in inp.flags,
        map_defer="DEFER_COMPLETION" in inp.flags,
        map_addr=inp.addr if mapped else 0,
        map_size=inp.length,
    )


def _check_mapped(s: LegacyState, inp: Mapping, where: str) -> None:
    # get_more_blocks contract (L569-591): b_blocknr in fs blocks, b_size covers the block
    fs_block = 1 << s.cfg.i_blkbits
    if inp.addr is None or inp.addr < 0 or inp.addr % fs_block:
        raise ModelUsageError(
            f"{where}: a MAPPED answer needs addr = b_blocknr << i_blkbits, a non-negative "
            f"multiple of {fs_block}; got {inp.addr}"
        )
    if inp.length <= 0 or inp.length % s.dio_block:
        raise ModelUsageError(
            f"{where}: b_size must be a positive multiple of the {s.dio_block}-byte dio "
            f"block; got {inp.length}"
        )
    remainder = s.block_in_file & ((1 << s.blkfactor) - 1)
    if inp.length >> s.blkbits <= remainder:
        raise ModelUsageError(
            f"{where}: the mapping of {inp.length} bytes ends before byte "
            f"{s.block_in_file << s.blkbits}, the block the walk is at"
        )


def get_block_ret(s: LegacyState) -> Step:
    ret = s.call_ret
    if ret == 0 and s.map_defer:
        # get_more_blocks (L643-644): buffer_defer_completion -> dio_set_defer_completion
        s = evolve(s, defer_completion=True)
    if ret:
        return direct_io_out(s, ret, f"get_more_blocks (L637): get_block {errno_name(ret)}")
    if not s.map_mapped:
        return evolve(s, phase=DO_HOLES), None  # do_direct_IO (L930-931)
    # do_direct_IO (L933-936): blocks_available and next_block_for_io from map_bh
    available = (s.map_size >> s.blkbits) & U32
    next_block = (s.map_addr >> s.cfg.i_blkbits) << s.blkfactor
    if s.blkfactor:
        # do_direct_IO (L947-963): dio_remainder skipped only if the block is not new
        remainder = s.block_in_file & ((1 << s.blkfactor) - 1)
        if not s.map_new:
            next_block += remainder
        available = (available - remainder) & U32
    s = evolve(s, phase=DIO_MAPPED, blocks_available=available, next_block_for_io=next_block)
    return s, None


def do_holes(s: LegacyState) -> Step:
    # do_direct_IO (L971-974): unmapped block on a write -> -ENOTBLK (buffered fallback)
    if s.cfg.write:
        return direct_io_out(s, E.ENOTBLK, "do_direct_IO (L971-973): unmapped block on write")
    # do_direct_IO (L980-987): a hole at/after ALIGN(i_size, dio block) is EOF
    i_size_aligned = arith.round_up(s.cfg.i_size, s.dio_block)
    if s.block_in_file >= i_size_aligned >> s.blkbits:
        return direct_io_out(s, 0, "do_direct_IO (L982-986): hole at EOF")
    if s.from_ + s.dio_block > s.cfg.page_size:
        raise kernel_bug("zero_user_segments", "zero_user() past the end of the page (L988)")
    # do_direct_IO (L988-992): zero one dio block of the user page, count it
    s = evolve(
        s,
        phase=NEXT_BLOCK,
        block_in_file=s.block_in_file + 1,
        from_=s.from_ + s.dio_block,
        result=s.result + s.dio_block,
    )
    return s, None


def do_direct_io_mapped(s: LegacyState) -> Step:
    # do_direct_IO (L1000-1001): sub-block write: maybe zero the start of the fs block
    if s.blkfactor and not s.start_zero_done:
        return call_zero(s, end=False, caller=DIO_MAPPED), None
    # do_direct_IO (L1007-1015): this chunk = min(available, rest of page, rest of request)
    blocks = min(
        s.blocks_available,
        (s.to - s.from_) >> s.blkbits,
        s.final_block_in_request - s.block_in_file,
    )
    if blocks == 0:
        raise kernel_bug("do_direct_IO", "this_chunk_bytes == 0 (L1015)")
    if blocks == s.blocks_available:
        s = evolve(s, boundary=s.map_boundary)  # do_direct_IO (L1017-1018)
    s = evolve(s, chunk_blocks=blocks)
    nbytes = arith.blocks_to_bytes(blocks, s.blkbits)
    return call_sps(s, s.page, s.from_, nbytes, s.next_block_for_io, DIO_SUBMITTED), None


def do_direct_io_submitted(s: LegacyState) -> Step:
    # do_direct_IO (L1024-1027): submit_page_section failed (bio reaping error)
    if s.call_ret:
        return direct_io_out(s, s.call_ret, "submit_page_section: dio_bio_reap error")
    # do_direct_IO (L1028-1033): advance past the submitted chunk
    blocks = s.chunk_blocks
    nbytes = arith.blocks_to_bytes(blocks, s.blkbits)
    s = evolve(
        s,
        phase=NEXT_BLOCK,
        next_block_for_io=s.next_block_for_io + blocks,
        block_in_file=s.block_in_file + blocks,
        from_=s.from_ + nbytes,
        result=s.result + nbytes,
        blocks_available=(s.blocks_available - blocks) & U32,
    )
    return s, None


def next_block(s: LegacyState) -> Step:
    # do_direct_IO (L1034-1037): stop at the end of the request
    if s.block_in_file > s.final_block_in_request:
        raise kernel_bug("do_direct_IO", "block_in_file > final_block_in_request (L1035)")
    if s.block_in_file == s.final_block_in_request:
        return evolve(s, phase=DO_DIRECT_IO), None
    return evolve(s, phase=DIO_CHUNK), None


# --------------------------------------------------------------------------- dio_zero_block


def dio_zero_block(s: LegacyState) -> Step:
    # dio_zero_block (L849-851): only for sub-block I/O into a buffer_new block
    s = evolve(s, start_zero_done=True)
    if not s.blkfactor or not s.map_new:
        return evolve(s, phase=s.zero_caller), None
    # dio_zero_block (L853-866): zero up to block_in_file (start) or from it (end)
    blocks = arith.zero_block_chunk(s.block_in_file, s.blkfactor, s.zero_end)
    if not blocks:
        return evolve(s, phase=s.zero_caller), None
    s = evolve(s, zero_blocks=blocks)
    # dio_zero_block (L868-870): ZERO_PAGE at next_block_for_io via submit_page_section
    nbytes = arith.blocks_to_bytes(blocks, s.blkbits)
    return call_sps(s, ZERO_PAGE, 0, nbytes, s.next_block_for_io, DIO_ZERO_BLOCK_RET), None


def dio_zero_block_ret(s: LegacyState) -> Step:
    # dio_zero_block (L869-873): advance next_block_for_io unless submission failed
    if s.call_ret:
        return evolve(s, phase=s.zero_caller), None
    s = evolve(s, next_block_for_io=s.next_block_for_io + s.zero_blocks)
    return evolve(s, phase=s.zero_caller), None


# --------------------------------------------------------------------------- end of submission


def direct_io_done(s: LegacyState) -> Step:
    # __blockdev_direct_IO (L1241-1247): -ENOTBLK leaves the rest to buffered I/O
    if s.retval == E.ENOTBLK:
        s = evolve(s, retval=0, retval_why="__blockdev_direct_IO (L1241-1247): -ENOTBLK -> 0")
    # __blockdev_direct_IO (L1252): zero the rest of a part-written new fs block
    return call_zero(s, end=True, caller=FINAL_CUR_PAGE), None


def final_cur_page(s: LegacyState) -> Step:
    # __blockdev_direct_IO (L1254-1257): send the deferred page
    if s.cur_page != NO_PAGE:
        return call_send(s, FINAL_CUR_PAGE_SENT), None
    return evolve(s, phase=FINAL_BIO), None


def final_cur_page_sent(s: LegacyState) -> Step:
    # __blockdev_direct_IO (L1258-1261): its error counts only if there was none
    if s.retval == 0 and s.call_ret:
        why = f"__blockdev_direct_IO (L1257-1259): dio_send_cur_page {errno_name(s.call_ret)}"
        s = evolve(s, retval=s.call_ret, retval_why=why)
    return evolve(s, phase=FINAL_BIO, cur_page=NO_PAGE), None


def final_bio(s: LegacyState) -> Step:
    # __blockdev_direct_IO (L1263-1264): submit the last bio
    if s.bio_open:
        s, bio = dio_bio_submit(s, "__blockdev_direct_IO (L1263-1264): last bio")
        return evolve(s, phase=QUEUE_OR_AWAIT), Emit(bio)
    return evolve(s, phase=QUEUE_OR_AWAIT), None


PHASES: dict[str, Callable[[LegacyState], Step]] = {
    DO_DIRECT_IO: do_direct_io,
    DIO_GET_PAGE: dio_get_page,
    DIO_CHUNK: do_direct_io_chunk,
    GET_MORE_BLOCKS: get_more_blocks,
    GET_BLOCK: get_block,
    GET_BLOCK_RET: get_block_ret,
    DO_HOLES: do_holes,
    DIO_MAPPED: do_direct_io_mapped,
    DIO_SUBMITTED: do_direct_io_submitted,
    NEXT_BLOCK: next_block,
    DIO_ZERO_BLOCK: dio_zero_block,
    DIO_ZERO_BLOCK_RET: dio_zero_block_ret,
    DIRECT_IO_DONE: direct_io_done,
    FINAL_CUR_PAGE: final_cur_page,
    FINAL_CUR_PAGE_SENT: final_cur_page_sent,
    FINAL_BIO: final_bio,
}
