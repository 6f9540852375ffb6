"""The operations of a story other than direct requests, applied to the implementation
and told to the oracle (`conformance.harness` dispatches to them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model.pattern import pattern
from .ops import (
    BufferedRead,
    BufferedWrite,
    Crash,
    DirectWrite,
    Fallocate,
    FileWrite,
    Fsync,
    MmapDirty,
    Punch,
    Reflink,
    Truncate,
    Unpin,
)

if TYPE_CHECKING:
    from .harness import Harness


def file_write(h: Harness, op: FileWrite) -> None:
    f = h.files[op.file]
    h._plan = iter(())
    data = pattern(op.wid, op.pos, op.length)
    ret = h.backend.file_write(f.ino, op.pos, data, op.flags)
    h._feed()
    durable = ret > 0 and bool({"DSYNC", "SYNC"} & set(op.flags))
    h.oracle = h.oracle.direct_write(f.ino, op.pos, op.length, op.wid, ret if ret >= 0 else -1,
                                     durable=durable, granule=h.page_size)  # fmt: skip
    h._check_range(op.file, op.pos, op.pos + op.length)


def buffered_write(h: Harness, op: BufferedWrite) -> None:
    f = h.files[op.file]
    n = h.backend.buffered_write(f.ino, op.pos, pattern(op.wid, op.pos, op.length))
    if n > 0:
        h.oracle = h.oracle.buffered_write(f.ino, op.pos, n, op.wid, h.page_size)
    h._check_range(op.file, op.pos, op.pos + op.length)


def buffered_read(h: Harness, op: BufferedRead) -> None:
    f = h.files[op.file]
    data = h.backend.buffered_read(f.ino, op.pos, op.length)
    want = max(0, min(op.length, f.size - op.pos))
    if len(data) != want:
        h.fail("size", f"buffered read of [{op.pos}, +{op.length}) returned {len(data)} bytes "
                       f"with i_size {f.size}; expected {want}")  # fmt: skip
    h._problems(h.oracle.check_read(f.ino, op.pos, data))
    h.oracle = h.oracle.observe(f.ino, op.pos, data)


def fallocate(h: Harness, op: Fallocate) -> None:
    f = h.files[op.file]
    h.backend.fallocate(f.ino, op.pos, op.length, op.keep_size)
    h.oracle = h.oracle.fallocate(f.ino, op.pos, op.length, op.keep_size)
    h._check_range(op.file, op.pos, op.pos + op.length)


def punch(h: Harness, op: Punch) -> None:
    f = h.files[op.file]
    h.backend.punch(f.ino, op.pos, op.length)
    h.oracle = h.oracle.punch(f.ino, op.pos, op.length)
    h._check_range(op.file, op.pos, op.pos + op.length)


def truncate(h: Harness, op: Truncate) -> None:
    f = h.files[op.file]
    old = f.size
    h.backend.truncate(f.ino, op.size)
    h.oracle = h.oracle.truncate(f.ino, op.size)
    h._check_range(op.file, min(old, op.size) - min(old, op.size) % h.block_size,
                   max(old, op.size))  # fmt: skip


def reflink(h: Harness, op: Reflink) -> None:
    src, dst = h.files[op.src], h.files[op.dst]
    h.backend.reflink(src.ino, dst.ino)
    size = src.size
    h.oracle = h.oracle.truncate(dst.ino, 0).reflink(src.ino, 0, dst.ino, 0, size)
    h._check_file(op.dst)


def fsync(h: Harness, op: Fsync) -> None:
    f = h.files[op.file]
    if h.backend.fsync(f.ino) == 0:
        h.oracle = h.oracle.fsync(f.ino)


def crash(h: Harness, op: Crash) -> None:
    p = h.pending
    if p is not None:  # never completes: its bios may or may not have landed
        h.pending = None
        if isinstance(p.op, DirectWrite):
            h.oracle = h.oracle.direct_write(p.ino, p.op.pos, p.op.length, p.op.wid, -1,
                                             durable=False)  # fmt: skip
    h._feed()
    h.abandoned.update(h.stream.abandon())
    h.backend.crash()
    h.stats.crashes += 1
    h.oracle = h.oracle.crash()
    for i, f in enumerate(h.files):
        problems = h.oracle.check_size(f.ino, f.size)
        if problems:
            h._problems(problems)
        h.oracle = h.oracle.observe_size(f.ino, f.size)
        h._check_file(i)
        h.oracle = h.oracle.settle(f.ino)


def mmap_dirty(h: Harness, op: MmapDirty) -> None:
    f = h.files[op.file]
    h.backend.mmap_dirty(f.ino, op.pos)  # contents unchanged: dirty and pinned
    page = h.page_size
    h.oracle = h.oracle.dirtied(f.ino, op.pos - op.pos % page, page)


def unpin(h: Harness, op: Unpin) -> None:
    h.backend.unpin_all(h.files[op.file].ino)
