"""Seed behaviours that break the user's view of a write, named, with the bytes they
touch: the conformance harness allows each (the file may read as zeros there) and
counts it, and a finding is named as one.

Each function is pure: it says, for a direct write that returned ``n`` (bytes written,
or a negative errno), which range of the file the seed itself may have zeroed, or None.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class Allowance:
    name: str  # a quirk of the seed, or a finding (README, "findings")
    finding: bool
    start: int  # [start, end) may read as zeros as well as what it held
    end: int


def legacy_zero_page_after_fault(
    engine: str, n: int, pos: int, length: int, fault_at: int | None
) -> Allowance | None:
    """dio_refill_pages (L174-190): after a user-buffer fault, the rest of the blocks
    already mapped are written from ZERO_PAGE (page_errors) and the write fails."""
    if engine != "legacy" or n >= 0 or fault_at is None or fault_at >= length:
        return None
    return Allowance("legacy-zero-page-after-fault", False, pos + fault_at, pos + length)


def iomap_head_pad_after_dropped_fault(
    n: int, pos: int, fault_at: int | None, block_size: int
) -> Allowance | None:
    """Finding head-pad-after-dropped-fault (confirmed on Linux 6.18 xfs, README):
    iomap_dio_bio_iter drops an -EFAULT after progress ("if (copied) return
    iomap_iter_advance"), and the next iteration's head pad zeroes the start of the
    block the fault is in, over data just written."""
    if n <= 0 or fault_at is None:
        return None
    end = pos + n
    if not end % block_size:
        return None
    return Allowance("head-pad-after-dropped-fault", True, end - end % block_size, end)


def nowait_eagain_landed(n: int, nowait: bool, bio_eagain: bool) -> bool:
    """Finding nowait-eagain-landed (README): a REQ_NOWAIT bio failed with BLK_STS_AGAIN
    (iomap_dio_bio_end_io, blk_status_to_errno), so the request fails -EAGAIN while its
    other bios landed: the caller is told nothing was written, and data changed."""
    return n == -11 and nowait and bio_eagain
