"""Which seed rule decides each compared field of an output, and where the model has it.

A divergence names the field that differs and the rule that decides *that field*: a
wrong FUA bit is the FUA decision (iomap_dio_bio_iter L466-479), not "data bio"; a wrong
i_size is ->end_io's extension, not how ``ret`` was derived. ``ret`` itself keeps the
derivation the model recorded with the output (its ``rule``), which names the error that
won (iomap_dio_set_error) when one did.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class FieldRule:
    seed: str  # seed function and lines
    model: str  # model file:function

    def describe(self) -> str:
        return f"{self.seed} [{self.model}]"


IOMAP: dict[tuple[str, str], FieldRule] = {
    ("bio", "fua"): FieldRule(
        "iomap_dio_bio_iter L466-479: REQ_FUA for a WRITE_THROUGH pure overwrite (no "
        "completion work, mapping not DIRTY, no volatile write cache or a FUA device), "
        "else WRITE_THROUGH is cleared",
        "model/iomap_bio.py:iomap_dio_bio_iter",
    ),
    ("bio", "zero"): FieldRule(
        "iomap_dio_bio_iter L518-525 (head) and L557-564 (tail): iomap_dio_zero pads for "
        "NEW/UNWRITTEN mappings and for writes ending at or past i_size",
        "model/iomap_bio.py:iomap_dio_bio_iter, bio_tail",
    ),
    ("bio", "addr"): FieldRule(
        "iomap_sector / iomap_dio_bio_iter_one: the device address of the mapping",
        "model/iomap_bio.py:_sector_addr",
    ),
    ("bio", "len"): FieldRule(
        "bio_iov_iter_get_pages (iomap_dio_bio_iter_one L356-358): the pinned length, "
        "trimmed to the alignment",
        "model/iomap_bio.py:bio_loop",
    ),
    ("bio", "op"): FieldRule(
        "iomap_dio_bio_iter L494-496: REQ_OP_WRITE for IOMAP_DIO_WRITE, else REQ_OP_READ",
        "model/iomap_bio.py:_submit",
    ),
    ("bio", "atomic"): FieldRule(
        "iomap_dio_bio_iter L444: REQ_ATOMIC for an atomic write",
        "model/iomap_bio.py:iomap_dio_bio_iter",
    ),
    ("complete", "pos_after"): FieldRule(
        "iomap_dio_complete L141-144: ki_pos += ret when ret > 0",
        "model/iomap_complete.py:iomap_dio_complete",
    ),
    ("complete", "i_size"): FieldRule(
        "->end_io (xfs_dio_write_end_io, ext4_dio_write_end_io): i_size moves to the end "
        "of a successful extending write; the tracepoint reads the shared inode",
        "model/iomap_complete.py:iomap_dio_complete",
    ),
    ("complete", "ctx"): FieldRule(
        "iomap_dio_done L186-236: the waiting submitter, else a workqueue for COMP_WORK "
        "(errors, cached pages, completion work), else inline in bio completion",
        "model/iomap_complete.py:iomap_dio_done",
    ),
    ("complete", "end_io"): FieldRule(
        "iomap_dio_bio_iter L429, L453: IOMAP_DIO_UNWRITTEN / IOMAP_DIO_COW from the mapping",
        "model/iomap_bio.py:iomap_dio_bio_iter",
    ),
    ("complete", "kind"): FieldRule(
        "__iomap_dio_rw L857-860: -EIOCBQUEUED when the submitter's reference is not the "
        "last; iomap_dio_complete L146-151: generic_write_sync for NEED_SYNC",
        "model/iomap.py, model/iomap_complete.py:iomap_dio_complete",
    ),
}


def field_rule(engine: str, kind: str, name: str) -> FieldRule | None:
    """The rule deciding field ``name`` of a ``kind`` output (None: the output's own
    rule is the one; the legacy engine's outputs carry their lines in it)."""
    return IOMAP.get((kind, name)) if engine == "iomap" else None
