"""State of one iomap direct-I/O request (``struct iomap_dio`` + ``struct iomap_iter``).

The flag values are private to the model; their names are those of
fs/iomap/direct-io.c and include/linux/iomap.h.
"""

from __future__ import annotations

from attrs import field, frozen

from . import errno as E
from .bioset import EMPTY, BioSet
from .evolve import evolve
from .types import Geometry, Mapping, NeedCut, Output, Request

# dio->flags (public IOMAP_DIO_* and the private ones of direct-io.c)
FSBLOCK_ALIGNED = 1 << 0
BUF_WRITETHROUGH = 1 << 1
UNWRITTEN = 1 << 2  # IOMAP_DIO_UNWRITTEN: end_io must convert
COW = 1 << 3  # IOMAP_DIO_COW: end_io must remap
NO_INVALIDATE = 1 << 4
COMP_WORK = 1 << 5
WRITE_THROUGH = 1 << 6
NEED_SYNC = 1 << 7
WRITE = 1 << 8
USER_BACKED = 1 << 9

FLAG_NAMES = {
    FSBLOCK_ALIGNED: "FSBLOCK_ALIGNED",
    BUF_WRITETHROUGH: "BUF_WRITETHROUGH",
    UNWRITTEN: "UNWRITTEN",
    COW: "COW",
    NO_INVALIDATE: "NO_INVALIDATE",
    COMP_WORK: "COMP_WORK",
    WRITE_THROUGH: "WRITE_THROUGH",
    NEED_SYNC: "NEED_SYNC",
    WRITE: "WRITE",
    USER_BACKED: "USER_BACKED",
}

BIO_MAX_VECS = 256
NO_FAULT = 1 << 64  # fault position meaning "every page can be pinned"

# phases of the resumable state machine
START = "start"  # __iomap_dio_rw entry checks
WAIT_WRITEBACK = "wait_writeback"  # asked kiocb_write_and_wait (reads)
WAIT_INVALIDATE = "wait_invalidate"  # asked kiocb_invalidate_pages (writes)
ITER = "iter"  # iomap_iter(): finish the previous mapping, ask for the next
WAIT_MAP = "wait_map"  # asked ->iomap_begin
DIO_ITER = "dio_iter"  # iomap_dio_iter(): dispatch on the mapping type
BIO_LOOP = "bio_loop"  # iomap_dio_bio_iter(): top of the do/while bio loop
WAIT_CUT = "wait_cut"  # asked how many bytes the next data bio carries
BIO_NEXT = "bio_next"  # iomap_dio_bio_iter(): loop condition after a data bio
BIO_TAIL = "bio_tail"  # iomap_dio_bio_iter(): tail zeroing after the loop
BIO_OUT = "bio_out"  # iomap_dio_bio_iter(): out: label, advance or error
AFTER_LOOP = "after_loop"  # __iomap_dio_rw after the iomap_iter loop
WAIT_BIOS = "wait_bios"  # submitter dropped its reference; bios in flight
DONE = "done"  # completion computed; pending outputs drain, then Finished


@frozen(slots=False)
class IomapState:
    geo: Geometry
    req: Request
    glue: str = "none"  # filesystem glue around the engine (model/profiles.py GLUES)
    phase: str = START
    flags: int = 0  # dio->flags
    i_size: int = 0  # dio->i_size, sampled at entry
    inode_size: int = 0  # i_size_read(inode); inline writes move it
    ref: int = 1  # dio->ref
    error: int = 0  # dio->error (first error wins)
    error_why: str = ""
    size: int = 0  # dio->size: bytes transferred
    wait: bool = True  # wait_for_completion
    # struct iomap_iter
    pos: int = 0
    len: int = 0
    iter_start: int = 0
    mapping: Mapping | None = None
    status: int = 0  # iomi.status: what iomap_dio_iter returned
    loop_ret: int = 0  # ret of the iomap_iter loop in __iomap_dio_rw
    loop_why: str = ""
    fault_at: int = NO_FAULT  # first user-buffer byte that cannot be pinned
    fault_errno: int = E.EFAULT  # what pinning it fails with (Fault.errno)
    copy_fault_at: int = NO_FAULT  # first byte that cannot be copied (an -EFAULT fault)
    # bios
    submitted: int = 0  # bytes handed to ->submit_io (btrfs: dio_data->submitted)
    nbios: int = 0
    outstanding: BioSet = EMPTY  # bios in flight, by index
    # locals of iomap_dio_bio_iter for the current mapping
    b_len: int = 0  # length = iomap_length(iter)
    b_pos: int = 0  # pos, advanced by each bio
    b_copied: int = 0
    b_zeroout: bool = False  # need_zeroout
    b_fua: bool = False  # REQ_FUA in bio_opf
    b_atomic: bool = False  # REQ_ATOMIC in bio_opf
    b_align: int = 512
    b_ret: int = 0
    cut: NeedCut | None = None  # the cut asked for while in WAIT_CUT
    # completion
    pending: tuple[Output, ...] = field(default=())  # outputs decided, not yet emitted
    queued: bool = False
    ctx: str = "submitter"


def flag_names(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


# --------------------------------------------------------------- helpers of the iomap_iter rules


def iomap_length(s: IomapState) -> int:
    # iomap_length(): what is left of the request inside the current mapping
    assert s.mapping is not None
    return min(s.len, s.mapping.end - s.pos)


def set_status(s: IomapState, status: int, why: str) -> IomapState:
    return evolve(s, phase=ITER, status=status, loop_why=why if status < 0 else s.loop_why)


def iomap_iter_advance(s: IomapState, count: int) -> IomapState:
    # iomap_iter_advance(): move iter->pos on and shrink iter->len
    return evolve(s, phase=ITER, status=0, pos=s.pos + count, len=s.len - count)


def pinnable(s: IomapState, pos: int, want: int) -> int:
    # a user-buffer fault: bytes before the first unpinnable byte can still be used
    buf = pos - s.req.pos
    return max(0, min(want, s.fault_at - buf))


def copyable(s: IomapState, pos: int, want: int) -> int:
    # copy_to_iter / iov_iter_zero fault pages in and stop only at an -EFAULT fault (a
    # pending fatal signal fails get_user_pages, not a copy)
    buf = pos - s.req.pos
    return max(0, min(want, s.copy_fault_at - buf))
