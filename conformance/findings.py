"""Findings: where the system under test itself breaks the user's contract.

A finding is not a model divergence: the model may reproduce the kernel exactly and the
user still loses data. Each known finding has a name, a paragraph citing the seed, the
filesystems it was confirmed on, and a standalone reproducer in ``findings/`` (standard
library and ctypes only; run as root against a scratch loop device, prints BUG or OK).
FINDINGS.md at the project root documents each with the reproducer's output here.

``classify`` names what a failed check was: a known finding when the evidence matches
one, else ``unexplained-KIND`` (``KIND``: result, size, mismatch, stale, lost) — a new
finding to investigate, shrink and report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from attrs import frozen

from ..model import seed_quirks as Q
from ..model.errno import EIO
from ..model.oracle import Oracle, Problem
from .file_ops_gen import Op

FINDINGS_DIR = Path(__file__).resolve().parent.parent / "findings"


@frozen
class FindingDoc:
    name: str
    summary: str
    seed: str  # where in the seed (function and what it does)
    filesystems: tuple[str, ...]
    repro: str = ""  # file name in findings/ ("" for none yet)
    # other reproducers for some filesystems: (fs, file name in findings/) pairs
    repro_for: tuple[tuple[str, str], ...] = ()

    @property
    def repro_path(self) -> Path | None:
        return FINDINGS_DIR / self.repro if self.repro else None

    def script_for(self, fs: str) -> Path | None:
        """The standalone reproducer for filesystem ``fs`` (its own, or the common one)."""
        name = dict(self.repro_for).get(fs, self.repro)
        return FINDINGS_DIR / name if name else None


FINDINGS: dict[str, FindingDoc] = {
    d.name: d
    for d in (
        FindingDoc(
            "head-pad-after-dropped-fault",
            "an O_DIRECT write whose user buffer faults after some progress reports the "
            "progress, but zeroes the start of the block the fault is in, over data it "
            "had just written (ext4 reports EFAULT instead, with the same zeroes)",
            "fs/iomap/direct-io.c iomap_dio_bio_iter: bio_iov_iter_get_pages fails with "
            "-EFAULT after 'copied' bytes, which returns the progress (the error is "
            "dropped); the next iteration starts inside the block, and its head pad "
            "(iomap_dio_zero, need_zeroout for an unwritten or new mapping) zeroes "
            "[block start, pos)",
            ("xfs", "ext4"),
            "head_pad_after_dropped_fault.py",
        ),
        FindingDoc(
            "failed-write-grew-file",
            "an O_DIRECT write past EOF that fails with EFAULT (its user buffer faults) "
            "leaves the file larger: the caller is told the write failed, yet i_size "
            "moved (to the write's start on ext4; over the bytes that landed on btrfs)",
            "the filesystems' buffered fallback after a short direct write "
            "(ext4_dio_write_iter, btrfs_direct_write): see FINDINGS.md",
            ("ext4", "btrfs"),
            "failed_write_grew_file.py",
        ),
        FindingDoc(
            "stale-after-failed-write",
            "an O_DIRECT write reaching past EOF that fails with EFAULT (its start inside a "
            "block, or after some progress) leaves written, never-written-to blocks past "
            "EOF; extending the file later exposes what they held: deleted files' data",
            "iomap_dio_bio_iter: the tail pad's iomap_dio_zero replaces the -EFAULT with 0, "
            "so __iomap_dio_rw returns 0; ext4_dio_write_end_io then moves i_size and "
            "ext4_inode_extension_cleanup(inode, ret < 0) does not truncate the blocks "
            "ext4_iomap_alloc created written (EXT4_GET_BLOCKS_CREATE past EOF)",
            ("ext4",),
            "ext4_stale_after_failed_write.py",
        ),
        FindingDoc(
            "dio-read-eio-past-eof",
            "an O_DIRECT read that starts inside the file and runs past EOF fails with "
            "EIO (a buffered read returns the data) when a delalloc extent no dirty page "
            "covers lies in its range: on xfs left by a KEEP_SIZE fallocate splitting the "
            "speculative EOF preallocation; on ext4 after an O_DIRECT write that failed "
            "with EFAULT",
            "fs/iomap/direct-io.c iomap_dio_iter: IOMAP_DELALLOC returns -EIO ('Direct I/O "
            "collision with buffered writes!'); __iomap_dio_rw iterates past i_size, and "
            "xfs_read_iomap_begin reports the orphan delalloc extent that "
            "xfs_alloc_file_space (xfs_bmap_add_extent_delay_real) split off (ext4: see "
            "FINDINGS.md)",
            ("xfs", "ext4"),
            "xfs_dio_read_eio.py",
            (("ext4", "ext4_dio_read_eio.py"),),
        ),
        FindingDoc(
            "nowait-eagain-landed",
            "a RWF_NOWAIT write fails with EAGAIN although some of its data landed: the "
            "caller is told nothing was written (btrfs: a NOWAIT write whose buffer "
            "faults after its first bio)",
            "seed: iomap_dio_bio_end_io, a REQ_NOWAIT bio failing with BLK_STS_AGAIN makes "
            "the request -EAGAIN; btrfs: iomap_dio_bio_iter drops the -EFAULT after "
            "progress, btrfs_dio_iomap_end leaves the unsubmitted ordered extent, the next "
            "btrfs_dio_iomap_begin (lock_extent_direct, NOWAIT) answers -EAGAIN, which "
            "__iomap_dio_rw sets as the request's error over the bytes written",
            ("btrfs",),
            "btrfs_nowait_eagain_landed.py",
        ),
    )
}

# findings the seed has that no filesystem here can show (the Python implementation, which
# follows the seed, meets them; FINDINGS.md "Seed behaviours")
_ZERO_PAGE = FindingDoc(
    "legacy-zero-page-after-fault",
    "a direct write on the legacy engine whose user buffer faults fails, yet the rest of "
    "the blocks it had mapped are written from ZERO_PAGE over the file's data",
    "fs/direct-io.c dio_refill_pages: after get_user_pages fails, the remaining blocks of "
    "the mapping are filled from ZERO_PAGE and submitted",
    (),
)
SEED_FINDINGS: dict[str, FindingDoc] = {_ZERO_PAGE.name: _ZERO_PAGE}
KNOWN_FINDINGS: dict[str, FindingDoc] = {**FINDINGS, **SEED_FINDINGS}


# names for sets of findings on the command line: "seed", the seed's own, which the Python
# implementation reproduces on purpose (the main job's exclude list: README.md)
FINDING_GROUPS: dict[str, tuple[str, ...]] = {
    "seed": ("head-pad-after-dropped-fault", "legacy-zero-page-after-fault",
             "nowait-eagain-landed"),
}  # fmt: skip


def allowed_names(values: Sequence[str]) -> tuple[frozenset[str], list[str]]:
    """``--allow-finding`` values (repeatable, each NAME, GROUP or NAME,NAME...) as a set
    of finding names, and the values that name no finding and no group."""
    given = [n.strip() for v in values for n in v.split(",") if n.strip()]
    names = frozenset(m for n in given for m in FINDING_GROUPS.get(n, (n,)))
    return names, sorted(n for n in names if n not in KNOWN_FINDINGS)


def classify(op: Op, ret: int, kind: str, problems: Sequence[Problem] = (),
             data: bytes = b"", pos: int = 0, block_size: int = 0,
             size: int = -1, failed_end: int = 0,
             failed_ranges: Sequence[tuple[int, int]] = ()) -> str:  # fmt: skip
    """The finding ``problems`` (found reading ``data`` at ``pos``, or the file's size
    being ``size``, after ``op`` returned ``ret``) are evidence of; ``kind``: the first
    problem's kind, or ``result`` for a result the contract does not allow."""
    if kind == "result" and op.kind == "pread" and ret == EIO \
            and op.pos < size < op.pos + op.length:  # fmt: skip
        return "dio-read-eio-past-eof"
    nowait_failed = op.kind == "pwrite" and Q.nowait_eagain_landed(
        ret, "NOWAIT" in op.flags, True
    )
    if problems and nowait_failed and kind == "mismatch" and all(
        op.pos <= p.start and p.end <= op.pos + op.length for p in problems
    ):  # (its own data there: other bytes are stale, a grown size is a grown file)
        return "nowait-eagain-landed"
    if problems and op.kind == "pwrite":
        allowed = Q.iomap_head_pad_after_dropped_fault(ret, op.pos, op.fault_at, block_size)
        if allowed is not None and _zeros_within(problems, data, pos, allowed):
            return allowed.name
        if ret < 0 and kind == "size" and _grew_within(problems, size, op.pos + op.length):
            return "failed-write-grew-file"
    if op.kind == "remount" and kind == "size" and _grew_within(problems, size, failed_end):
        return "failed-write-grew-file"  # the larger size was on disk all along
    if kind == "stale" and problems and all(
        any(p.start < e and s < p.end for s, e in failed_ranges) for p in problems
    ):  # stale bytes where a direct write past EOF failed
        return "stale-after-failed-write"
    return f"unexplained-{kind}"


FINDING_HEAD_PAD = "head-pad-after-dropped-fault"


def zeroed_own_data(op: Op, block_size: int) -> tuple[int, int] | None:
    """Where a direct write that failed with EFAULT would show the head-pad finding:
    ``[block start, fault offset)`` when the fault is inside a block and the write
    began before that block (its first bio covered the range with accessible data;
    the next iteration's head pad zeroes it: iomap_dio_bio_iter, iomap_dio_zero)."""
    if op.kind != "pwrite" or not op.fault_at:
        return None
    fault = op.pos + op.fault_at
    start = fault - fault % block_size
    if fault == start or start - 512 < op.pos:
        return None
    return start, fault


def _grew_within(problems: Sequence[Problem], size: int, end: int) -> bool:
    """A failed write left the file larger, but no larger than its ``end``."""
    p = problems[0]
    return len(problems) == 1 and size == p.end > p.start and size <= end


def absorb(name: str, oracle: Oracle, ino: int, op: Op, wid: int,
           problems: Sequence[Problem], size: int) -> Oracle:  # fmt: skip
    """The oracle after allowing finding ``name`` seen as ``problems`` (``wid``: the
    write id of ``op``'s data): what was seen becomes one of the candidates."""
    if name == "failed-write-grew-file":  # grown with zeros, any of the write's sectors
        ino = problems[0].ino
        old = max(oracle.file(ino).sizes)
        oracle = oracle.fallocate(ino, old, size - old, keep_size=False)
        if op.kind != "pwrite":
            return oracle  # (seen at a remount: the write's sectors were allowed then)
        return oracle.direct_write(ino, op.pos, op.length, wid, -1, durable=False)
    if name == "nowait-eagain-landed":  # any of the write's sectors may have landed
        return oracle.direct_write(ino, op.pos, op.length, wid, -1, durable=False)
    for p in problems:  # head-pad-after-dropped-fault: zeros there
        oracle = oracle.may_be_zeroed(p.ino, p.start, p.end - p.start)
    return oracle


def _zeros_within(problems: Sequence[Problem], data: bytes, pos: int,
                  allowed: Q.Allowance) -> bool:  # fmt: skip
    """Every problem lies in the allowance's range and reads as zeros there."""
    for p in problems:
        if p.kind == "size" or p.start < allowed.start or p.end > allowed.end:
            return False
        piece = data[p.start - pos : p.end - pos]
        if len(piece) != p.end - p.start or piece.count(0) != len(piece):
            return False
    return True
