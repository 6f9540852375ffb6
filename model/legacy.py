"""Model of the legacy direct-I/O engine, ``__blockdev_direct_IO`` of fs/direct-io.c.

Seed: ../shared/seeds/legacy-direct-io.c ("L…" below are its line numbers). The state
(``legacy_state.LegacyState``) is an immutable value; ``step`` runs small named rules
(the dispatch table ``RULES``, one per phase) until one yields an action, ``feed``
takes the input that was asked for, or a bio completion / user-buffer fault at any
time. The submission walk lives in ``legacy_submit``, bio building in ``legacy_bio``,
completion in ``legacy_complete``.

Assumptions: the user buffer is page aligned (iov_iter_alignment == len, one page per
PAGE_SIZE bytes, user pages never physically contiguous); ``end_io`` is NULL; no
allocation fails; i_size does not change while the request runs; ``BioEnd.status`` is
the errno of the bio's status (what blk_status_to_errno returns).
"""

from __future__ import annotations

from collections.abc import Callable

from . import arith, legacy_bio, legacy_complete, legacy_submit
from . import errno as E
from .engine import ModelEngine
from .legacy_state import (
    BLOCKDEV_DIRECT_IO,
    DIO_SETUP,
    DO_DIRECT_IO,
    FAIL_DIO,
    FINISHED,
    GET_BLOCK,
    WRITE_AND_WAIT,
    LegacyConfig,
    LegacyState,
    Step,
    evolve,
)
from .types import (
    IOMAP_DIO_FLAGS,
    Action,
    BioEnd,
    Complete,
    Cut,
    Emit,
    Fault,
    Geometry,
    Input,
    InvalidateResult,
    MapError,
    Mapping,
    ModelUsageError,
    NeedWriteback,
    Request,
    WritebackResult,
    errno_name,
)

# --------------------------------------------------------------------------- entry


def start(geometry: Geometry, request: Request, i_size: int, glue: str = "none") -> LegacyState:
    """A request enters __blockdev_direct_IO() with the inode at ``i_size``."""
    if glue != "none":
        raise ModelUsageError(f"the legacy engine has no {glue!r} filesystem glue")
    if isinstance(i_size, bool) or not isinstance(i_size, int) or i_size < 0:
        raise ModelUsageError(f"i_size must be a non-negative integer, got {i_size!r}")
    if request.done_before:
        raise ModelUsageError(
            f"done_before={request.done_before}: __blockdev_direct_IO has no done_before"
        )
    foreign = sorted(request.dio & IOMAP_DIO_FLAGS)
    if foreign:
        raise ModelUsageError(f"dio flags {foreign} belong to iomap_dio_rw, not the legacy engine")
    if "ATOMIC" in request.iocb:
        raise ModelUsageError("IOCB_ATOMIC: no get_block filesystem accepts atomic writes")
    cfg = LegacyConfig(
        write=request.is_write,
        pos=request.pos,
        count=request.len,
        page_size=geometry.page_size,
        i_blkbits=geometry.fs_block_size.bit_length() - 1,
        lbs_bits=geometry.logical_block_size.bit_length() - 1,
        i_size=i_size,
        sync_kiocb=request.sync,
        dsync=request.is_dsync,
        nowait="NOWAIT" in request.iocb,
        locking="LOCKING" in request.dio,
        skip_holes="SKIP_HOLES" in request.dio,
        cached_pages=request.cached_pages,
    )
    return LegacyState(cfg=cfg)


def fail(s: LegacyState, ret: int, why: str) -> Step:
    # __blockdev_direct_IO (L1119, L1141, L1149, L1157): return before any submission
    return evolve(s, phase=FAIL_DIO, retval=ret, retval_why=why), None


def blockdev_direct_io(s: LegacyState) -> Step:
    c = s.cfg
    # __blockdev_direct_IO (L1117-1119): a 0-byte read returns 0
    if not c.write and not c.count:
        return fail(s, 0, "__blockdev_direct_IO (L1118-1119): read of 0 bytes")
    # __blockdev_direct_IO (L1137-1142): a read at/after dio->i_size returns 0
    if not c.write and c.pos >= c.i_size:
        return fail(s, 0, "__blockdev_direct_IO (L1139-1141): read at/after i_size")
    # __blockdev_direct_IO (L1144-1150): fs-block alignment, else bdev logical block
    blkbits = arith.blockdev_blkbits(c.pos, c.count, c.i_blkbits, c.lbs_bits)
    if blkbits < 0:
        return fail(
            s, E.EINVAL, "__blockdev_direct_IO (L1144-1149): misaligned to the logical block"
        )
    s = evolve(s, blkbits=blkbits)
    # __blockdev_direct_IO (L1152-1158): DIO_LOCKING reads write back the range first
    if c.locking and not c.write:
        return evolve(s, phase=WRITE_AND_WAIT), None
    return evolve(s, phase=DIO_SETUP), None


def filemap_write_and_wait_range(s: LegacyState) -> Step:
    # __blockdev_direct_IO (L1155): waiting for filemap_write_and_wait_range
    return s, NeedWriteback(
        pos=s.cfg.pos,
        len=s.cfg.count,
        rule="__blockdev_direct_IO (L1152-1158): filemap_write_and_wait_range",
    )


def writeback_result(s: LegacyState, ret: int) -> LegacyState:
    # __blockdev_direct_IO (L1155-1157): an error is returned
    if ret:
        why = f"__blockdev_direct_IO (L1155-1157): filemap_write_and_wait_range {errno_name(ret)}"
        return evolve(s, phase=FAIL_DIO, retval=ret, retval_why=why)
    return evolve(s, phase=DIO_SETUP)


def dio_setup(s: LegacyState) -> Step:
    c = s.cfg
    end = c.pos + c.count
    # __blockdev_direct_IO (L1166-1171): sync kiocbs and extending writes wait
    is_async = not c.sync_kiocb and not (c.write and arith.past_size(c.pos, c.count, c.i_size))
    # __blockdev_direct_IO (L1186-1189): aio O_(D)SYNC writes defer completion
    defer = is_async and c.write and c.dsync
    blkfactor = c.i_blkbits - s.blkbits
    # __blockdev_direct_IO (L1208-1233): dio_submit setup; pages_in_io = npages (+2)
    npages = -(-c.count // c.page_size)
    s = evolve(
        s,
        phase=DO_DIRECT_IO,
        is_async=is_async,
        defer_completion=defer,
        blkfactor=blkfactor,
        block_in_file=arith.pos_to_block(c.pos, s.blkbits),
        final_block_in_request=arith.pos_to_block(end, s.blkbits),
        refcount=1,
        pages_in_io=(2 if blkfactor else 0) + npages,
    )
    return s, None


def fail_dio(s: LegacyState) -> Step:
    # __blockdev_direct_IO (L1303-1308): early return, nothing submitted
    c = s.cfg
    out = Complete(
        ret=s.retval, pos_after=c.pos, i_size=c.i_size, ctx="submitter", rule=s.retval_why
    )
    return evolve(s, phase=FINISHED), Emit(out)


RULES: dict[str, Callable[[LegacyState], Step]] = {
    BLOCKDEV_DIRECT_IO: blockdev_direct_io,
    WRITE_AND_WAIT: filemap_write_and_wait_range,
    DIO_SETUP: dio_setup,
    FAIL_DIO: fail_dio,
    **legacy_submit.PHASES,
    **legacy_bio.PHASES,
    **legacy_complete.PHASES,
}


# --------------------------------------------------------------------------- protocol


def step(s: LegacyState) -> tuple[LegacyState, Action]:
    """Run silent rules until one yields an action (at most one output per step)."""
    while True:
        s, action = RULES[s.phase](s)
        if action is not None:
            return s, action


def feed(s: LegacyState, inp: Input) -> LegacyState:
    """Give the engine the input it asked for, or a bio completion / fault at any time."""
    if isinstance(inp, BioEnd):
        return legacy_complete.bio_end_io(s, inp.index, inp.status)
    if isinstance(inp, Fault):
        if inp.at % s.cfg.page_size:
            raise ModelUsageError(
                f"Fault(at={inp.at}): must be a multiple of the page size {s.cfg.page_size}"
            )
        cur = s.fault_at
        if cur < 0 or inp.at < cur:  # the earliest fault decides (EFAULT or EINTR)
            return evolve(s, fault_at=inp.at, fault_errno=inp.errno)
        return s
    if isinstance(inp, (Mapping, MapError)):
        if s.phase != GET_BLOCK:
            raise ModelUsageError(
                f"{type(inp).__name__} fed, but the legacy engine did not ask for a "
                f"mapping (phase {s.phase})"
            )
        return legacy_submit.get_block_answer(s, inp)
    if isinstance(inp, WritebackResult):
        if s.phase != WRITE_AND_WAIT:
            raise ModelUsageError(
                f"WritebackResult fed, but the legacy engine did not ask for writeback "
                f"(phase {s.phase})"
            )
        return writeback_result(s, inp.ret)
    if isinstance(inp, (InvalidateResult, Cut)):
        raise ModelUsageError(
            f"{type(inp).__name__} fed, but the legacy engine never asks for it "
            "(no invalidation step of its own, exact bio cuts)"
        )
    raise ModelUsageError(f"unknown input {inp!r}")


ENGINE = ModelEngine("legacy", start, step, feed)
