"""State of one legacy direct-I/O request (``struct dio`` + ``struct dio_submit``).

Field names follow fs/direct-io.c (seed: ../shared/seeds/legacy-direct-io.c, "L…" below
are its line numbers). The state is an immutable attrs value changed only with
``evolve`` (the project's drop-in for ``attrs.evolve``, model/evolve.py: same result,
about 20x faster on this 76-field class; swap the import back for ``attrs.evolve``).

Pages are identified by an int: ``ZERO_PAGE`` (-2) is ZERO_PAGE(0), ``NO_PAGE`` (-1) is
NULL, and ``n >= 0`` is page ``n`` of the (page-aligned) user buffer; ``page_key`` gives
the readable key ``("user", n)`` / ``("zero",)``.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from .bioset import EMPTY, BioSet
from .evolve import evolve  # attrs.evolve semantics without re-running __init__
from .types import Action, ModelUsageError

__all__ = ["evolve"]

DIO_PAGES = 64  # L48: user pages pinned per dio_refill_pages()
BIO_MAX_VECS = 256  # bio_max_segs() cap (include/linux/bio.h)
U32 = (1 << 32) - 1  # `unsigned` fields of struct dio_submit wrap at 32 bits
SECTOR_MAX = (1 << 64) - 1  # (sector_t)-1, L1214-1215

NO_PAGE = -1
ZERO_PAGE = -2
NO_FAULT = -1

# phases (one small function each, see the dispatch table in legacy.py)
BLOCKDEV_DIRECT_IO = "__blockdev_direct_IO"  # entry checks, L1117-1150
WRITE_AND_WAIT = "filemap_write_and_wait_range"  # waits for WritebackResult, L1152-1158
DIO_SETUP = "__blockdev_direct_IO:setup"  # L1160-1233
FAIL_DIO = "fail_dio"  # L1303-1308
DO_DIRECT_IO = "do_direct_IO"  # loop head, L900
DIO_GET_PAGE = "dio_get_page"  # L904-911
DIO_CHUNK = "do_direct_IO:chunk"  # inner loop head, L913-918
GET_MORE_BLOCKS = "get_more_blocks"  # L608-637
GET_BLOCK = "get_block"  # waits for Mapping/MapError, L637
GET_BLOCK_RET = "get_more_blocks:ret"  # L640-646, L925-964
DO_HOLES = "do_holes"  # L965-993
DIO_MAPPED = "do_direct_IO:mapped"  # L1000-1023
DIO_SUBMITTED = "do_direct_IO:submitted"  # L1024-1033
NEXT_BLOCK = "next_block"  # L1034-1037
DIO_ZERO_BLOCK = "dio_zero_block"  # L849-871
DIO_ZERO_BLOCK_RET = "dio_zero_block:ret"  # L869-873
SUBMIT_PAGE_SECTION = "submit_page_section"  # L780-816
SPS_SENT = "submit_page_section:sent"  # L805-816
SPS_OUT = "submit_page_section:out"  # L817-822
SPS_BOUNDARY_SENT = "submit_page_section:boundary"  # L823-829
SEND_CUR_PAGE = "dio_send_cur_page"  # L714-736
SEND_NEW_BIO = "dio_send_cur_page:new_bio"  # L738-742
SEND_ADD_PAGE = "dio_send_cur_page:add"  # L744-745
SEND_READD = "dio_send_cur_page:readd"  # L746-751
DIRECT_IO_DONE = "__blockdev_direct_IO:do_direct_IO_returned"  # L1238-1252
FINAL_CUR_PAGE = "__blockdev_direct_IO:cur_page"  # L1254-1257
FINAL_CUR_PAGE_SENT = "__blockdev_direct_IO:cur_page_sent"  # L1258-1261
FINAL_BIO = "__blockdev_direct_IO:bio"  # L1263-1264
QUEUE_OR_AWAIT = "__blockdev_direct_IO:queue_or_await"  # L1289-1294
DIO_AWAIT_ONE = "dio_await_one"  # L455-483, L517-525
DROP_REFCOUNT = "drop_refcount"  # L1296-1299
AIO_WAIT = "dio_bio_end_aio:wait"  # queued; the last bio completes the dio
DIO_COMPLETE = "dio_complete"  # L233-314
WRITE_SYNC = "generic_write_sync"  # L307-308 (or the caller of the sync path)
KI_COMPLETE = "ki_complete"  # L309 (or the return value of the sync path)
FINISHED = "finished"


def page_key(page: int) -> tuple[str, ...] | None:
    """The readable identity of a page number used in the state."""
    if page == NO_PAGE:
        return None
    return ("zero",) if page == ZERO_PAGE else ("user", page)


def kernel_bug(function: str, what: str) -> ModelUsageError:
    """Where the seed would BUG_ON: the inputs cannot happen with a sane kernel/fs."""
    return ModelUsageError(f"kernel BUG_ON at {function}: {what}")


@frozen
class LegacyConfig:
    """What does not change during the request (request, geometry, inode)."""

    write: bool  # iov_iter_rw(iter) == WRITE
    pos: int  # iocb->ki_pos at entry
    count: int  # iov_iter_count(iter)
    page_size: int  # PAGE_SIZE
    i_blkbits: int  # inode->i_blkbits
    lbs_bits: int  # blksize_bits(bdev_logical_block_size(bdev))
    i_size: int  # i_size_read(inode) (no concurrent size change is modelled)
    sync_kiocb: bool  # is_sync_kiocb(iocb)
    dsync: bool  # iocb_is_dsync(iocb)
    nowait: bool  # IOCB_NOWAIT
    locking: bool  # DIO_LOCKING
    skip_holes: bool  # DIO_SKIP_HOLES
    cached_pages: bool  # dio->inode->i_mapping->nrpages != 0


@frozen(slots=False)  # slots=False: model/evolve.py copies the instance __dict__
class LegacyState:
    cfg: LegacyConfig
    phase: str = BLOCKDEV_DIRECT_IO
    retval: int = 0  # retval of __blockdev_direct_IO
    retval_why: str = ""
    # struct dio
    is_async: bool = False
    defer_completion: bool = False
    page_errors: int = 0
    io_error: int = 0
    refcount: int = 1
    bio_list: Any = None  # LIFO of completed bios: None or (index, status, rest)
    result: int = 0
    # struct dio_submit
    blkbits: int = 0
    blkfactor: int = 0
    start_zero_done: bool = False
    pages_in_io: int = 0
    block_in_file: int = 0
    blocks_available: int = 0
    reap_counter: int = 0
    final_block_in_request: int = 0
    boundary: bool = False
    logical_offset_in_bio: int = 0
    final_block_in_bio: int = SECTOR_MAX
    next_block_for_io: int = SECTOR_MAX
    # sdio->bio, the bio under assembly
    bio_open: bool = False
    bio_block: int = 0  # first block (dio_block units)
    bio_size: int = 0  # bi_iter.bi_size
    bio_vcnt: int = 0  # bi_vcnt
    bio_max_vecs: int = 0  # nr_vecs given to bio_alloc
    bio_zero: bool = True  # every chunk so far came from ZERO_PAGE
    # deferred page (cur_page)
    cur_page: int = NO_PAGE
    cur_page_offset: int = 0
    cur_page_len: int = 0
    cur_page_block: int = 0
    cur_page_fs_offset: int = 0
    # page queue (dio->pages[], head, tail, from, to) and the iterator position
    iter_pos: int = 0  # bytes of the user buffer already pinned (iov_iter advanced)
    pages_base: int = 0  # page number of dio->pages[0] (ZERO_PAGE after a write fault)
    head: int = 0
    tail: int = 0
    sdio_from: int = 0
    sdio_to: int = 0
    fault_at: int = NO_FAULT  # from this user-buffer byte on, pages cannot be pinned
    fault_errno: int = -14  # what get_user_pages fails with there (Fault.errno)
    # locals of do_direct_IO
    page: int = NO_PAGE
    from_: int = 0
    to: int = 0
    chunk_blocks: int = 0  # this_chunk_blocks of the section being submitted
    # map_bh
    map_mapped: bool = False
    map_new: bool = False
    map_boundary: bool = False
    map_defer: bool = False
    map_addr: int = 0
    map_size: int = 0
    need_pos: int = 0  # the get_block call asked for
    need_len: int = 0
    need_create: bool = False
    # "call stack": arguments and return phases of the nested kernel functions
    call_ret: int = 0
    zero_end: bool = False
    zero_blocks: int = 0
    zero_caller: str = ""
    sps_page: int = NO_PAGE
    sps_offset: int = 0
    sps_len: int = 0
    sps_block: int = 0
    sps_boundary: bool = False
    sps_caller: str = ""
    send_caller: str = ""
    # bios issued
    n_bios: int = 0
    inflight: BioSet = EMPTY  # bios in flight, by index
    # completion (dio_complete)
    cmpl_ctx: str = "submitter"
    cmpl_async: bool = False  # DIO_COMPLETE_ASYNC
    cmpl_invalidate: bool = False  # DIO_COMPLETE_INVALIDATE
    out_ret: int = 0
    out_pos_after: int = 0
    out_i_size: int = 0
    out_invalidated: bool = False
    out_flush: bool = False  # generic_write_sync issues a flush
    out_rule: str = ""

    @property
    def dio_block(self) -> int:
        return 1 << self.blkbits


Step = tuple[LegacyState, Action | None]
