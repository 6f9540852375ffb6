"""File-level operations on a backend (``backend.py``), and a seeded generator of them.

An ``Op`` is a plain value: what to do, to which logical file (``f0``, ``f1``...), where.
``draw_ops`` draws a reproducible list from a seed without Hypothesis (``--fast``);
``op_strategy`` draws the same operations through Hypothesis. Positions and lengths are
multiples of the logical block size (O_DIRECT alignment) and bunch around block and
page boundaries, where the engines' edge cases are; fallocated (unwritten) ranges, holes
and the space past EOF are all frequent.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
from attrs import field, frozen

from .backend import Capabilities

KINDS = ("pwrite", "pread", "bwrite", "bread", "fsync", "fdatasync", "truncate",
         "fallocate", "punch", "reflink", "drop_cache", "remount", "zero_range",
         "mmap_write", "aio", "uring")  # fmt: skip
# kinds a backend has only when its capabilities say so
OPTIONAL = {"reflink": "reflink", "remount": "remount", "zero_range": "zero_range",
            "mmap_write": "mmap", "aio": "aio", "uring": "uring"}  # fmt: skip
# direct requests in flight together, by the interface that submits them
# (FileBackend.direct_batch's ``via``)
BATCHES = {"aio": "Linux AIO", "uring": "io_uring"}
SPAN = 256 * 1024  # where operations land (the files stay small)
MAX_LEN = 64 * 1024
FILES = 2


def _kind(_: object, __: object, value: str) -> None:
    if value not in KINDS:
        raise ValueError(f"unknown operation {value!r}; known: {', '.join(KINDS)}")


@frozen
class Op:
    """One operation. ``wid``: the write's id (its data); ``fault_at``: a direct write's
    buffer is inaccessible from that offset on; ``src``/``spos``: a reflink's source."""

    kind: str = field(validator=_kind)
    file: str = "f0"
    pos: int = 0
    length: int = 0
    wid: int = 0
    flags: frozenset[str] = frozenset()
    fault_at: int | None = None
    keep_size: bool = False
    src: str = ""
    spos: int = 0
    batch: tuple[Op, ...] = ()  # aio, uring: direct reads and writes in flight together

    def __str__(self) -> str:
        k, f = self.kind, self.file
        rng = f"[{self.pos}, {self.pos + self.length})"
        flags = "".join(f" {x}" for x in sorted(self.flags))
        if k in ("pwrite", "bwrite"):
            fault = f" fault@{self.fault_at}" if self.fault_at is not None else ""
            direct = "O_DIRECT " if k == "pwrite" else "buffered "
            return f"{direct}write #{self.wid} {f} {rng}{flags}{fault}"
        if k in ("pread", "bread"):
            return f"{'O_DIRECT' if k == 'pread' else 'buffered'} read {f} {rng}{flags}"
        if k == "truncate":
            return f"truncate {f} {self.pos}"
        if k == "fallocate":
            return f"fallocate {f} {rng}{' KEEP_SIZE' if self.keep_size else ''}"
        if k == "punch":
            return f"punch hole {f} {rng}"
        if k == "zero_range":
            return f"zero range {f} {rng}{' KEEP_SIZE' if self.keep_size else ''}"
        if k == "mmap_write":
            return f"write #{self.wid} through a shared mapping {f} {rng}"
        if k == "reflink":
            src = f"{self.src} [{self.spos}, {self.spos + self.length})"
            return f"FICLONERANGE {src} -> {f} @{self.pos}"
        if k == "remount":
            return "unmount and mount again"
        if k in BATCHES:
            return f"in flight together ({BATCHES[k]}): " + "; ".join(map(str, self.batch))
        return f"{k} {f}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "file": self.file}
        for name in ("pos", "length", "wid", "keep_size", "src", "spos"):
            value = getattr(self, name)
            if value not in (0, False, ""):
                d[name] = value
        if self.fault_at is not None:  # 0 is a fault too: at the buffer's first page
            d["fault_at"] = self.fault_at
        if self.flags:
            d["flags"] = sorted(self.flags)
        if self.batch:
            d["batch"] = [op.to_json() for op in self.batch]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Op:
        batch = tuple(cls.from_json(x) for x in d.get("batch", ()))
        return cls(**{**d, "flags": frozenset(d.get("flags", ())), "batch": batch})


# how often each operation is drawn (reflink only where the backend has it)
WEIGHTS = {"pwrite": 30, "pread": 18, "bwrite": 6, "bread": 5, "fsync": 3, "fdatasync": 2,
           "truncate": 4, "fallocate": 7, "punch": 4, "reflink": 3, "drop_cache": 3,
           "remount": 1, "zero_range": 3, "mmap_write": 4, "aio": 4, "uring": 4}  # fmt: skip


class Sizes:
    """What the generator assumes of file sizes (to aim at EOF): the sizes the oracle
    allows, kept up to date by the runner; a guess is enough."""

    def __init__(self) -> None:
        self.size: dict[str, int] = {}

    def get(self, name: str) -> int:
        return self.size.get(name, 0)


def _pos(rnd: random.Random, caps: Capabilities, near: int) -> int:
    """A position: around a block or page boundary, around EOF, or anywhere."""
    a, bs = caps.alignment, caps.block_size
    r = rnd.random()
    if r < 0.3:
        base = near
    elif r < 0.7:
        base = rnd.randrange(0, SPAN, max(bs, caps.page_size))
    else:
        base = rnd.randrange(0, SPAN, a)
    base += rnd.choice((0, 0, a, -a, 2 * a, bs // 2))
    base = max(0, base - base % a)
    return min(base, SPAN)


def _length(rnd: random.Random, caps: Capabilities) -> int:
    a = caps.alignment
    r = rnd.random()
    if r < 0.3:
        n = rnd.choice((a, 2 * a, caps.block_size, caps.page_size))
    elif r < 0.8:
        n = rnd.randrange(a, 4 * max(caps.page_size, caps.block_size) + a, a)
    else:
        n = rnd.randrange(a, MAX_LEN + a, a)
    return n + rnd.choice((0, 0, 0, a)) if n + a <= MAX_LEN else n


def draw_op(rnd: random.Random, caps: Capabilities, sizes: Sizes, wid: int) -> Op:
    """One operation; ``wid`` is the id a write drawn now takes."""
    kinds = [k for k in KINDS if k not in OPTIONAL or getattr(caps, OPTIONAL[k])]
    kind = rnd.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
    f = f"f{rnd.randrange(FILES)}"
    eof = sizes.get(f)
    pos, n = _pos(rnd, caps, eof), _length(rnd, caps)
    if kind == "pwrite":
        flags = set()
        if rnd.random() < 0.1:
            flags.add(rnd.choice(("DSYNC", "DSYNC", "SYNC")))
        if caps.nowait and rnd.random() < 0.1:
            flags.add("NOWAIT")
        fault = None
        if caps.fault_buffers and n > caps.page_size and rnd.random() < 0.2:
            fault = rnd.randrange(0, n, caps.page_size)
        return Op("pwrite", f, pos, n, wid, frozenset(flags), fault)
    if kind == "pread":
        flags = {"NOWAIT"} if caps.nowait and rnd.random() < 0.1 else set()
        return Op("pread", f, pos, n, flags=frozenset(flags))
    if kind == "bwrite":
        return Op("bwrite", f, pos + rnd.choice((0, 0, 1, 100)), n, wid)
    if kind == "bread":
        return Op("bread", f, pos, n)
    if kind == "truncate":
        return Op("truncate", f, rnd.choice((pos, pos + rnd.randrange(1, 4096), 0, eof)))
    if kind in ("fallocate", "punch", "zero_range"):
        bs = caps.block_size
        p = pos - pos % bs if rnd.random() < 0.7 else pos
        keep = kind != "punch" and rnd.random() < 0.3
        return Op(kind, f, p, max(n, bs), keep_size=keep)
    if kind == "mmap_write":  # through a shared mapping: inside EOF (past it, SIGBUS)
        start = rnd.randrange(0, max(eof, 1)) if eof else 0
        return Op("mmap_write", f, start, rnd.randrange(1, 3 * caps.page_size), wid)
    if kind == "reflink":
        return _reflink(rnd, caps, sizes, f)
    if kind in BATCHES:
        return _aio(rnd, caps, sizes, wid, kind)
    return Op(kind, f)


def _reflink(rnd: random.Random, caps: Capabilities, sizes: Sizes, dst: str) -> Op:
    """FICLONERANGE from the other file: block-aligned, inside the source's EOF as far
    as the guess goes (without one, anywhere: past EOF it must fail with EINVAL)."""
    src = f"f{(int(dst[1:]) + 1) % FILES}"
    bs = caps.block_size
    blocks = sizes.get(src) // bs or SPAN // bs
    first = rnd.randrange(blocks)
    count = rnd.randint(1, min(blocks - first, MAX_LEN // bs))
    dpos = rnd.randrange(0, SPAN, bs)
    return Op("reflink", dst, dpos, count * bs, src=src, spos=first * bs)


def _aio(rnd: random.Random, caps: Capabilities, sizes: Sizes, wid: int,
         kind: str = "aio") -> Op:  # fmt: skip
    """2-4 direct requests submitted together (``kind``: through Linux AIO or
    io_uring), on ranges that do not overlap (what overlapping requests in flight leave
    is any interleaving: not drawn), all reads or all writes on each file. Write ids
    ``wid``, ``wid + 1``...: the list numbers the next operation after them."""
    batch: list[Op] = []
    writes = {f"f{i}": rnd.random() < 0.5 for i in range(FILES)}
    for i in range(rnd.randint(2, 4)):
        f = f"f{rnd.randrange(FILES)}"
        pos, n = _pos(rnd, caps, sizes.get(f)), _length(rnd, caps)
        if any(o.file == f and pos < o.pos + o.length and o.pos < pos + n for o in batch):
            continue
        flags = frozenset({"NOWAIT"}) if caps.nowait and rnd.random() < 0.1 else frozenset()
        # one kind per file: a write the filesystem sends through the page cache (btrfs
        # with checksums) moves i_size with no trace, under a read of the batch
        if writes[f]:
            # whole blocks: a sub-block write may go through the page cache instead
            # (btrfs; xfs on a reflinked inode), where no trace shows it moving i_size
            # under a request in flight
            bs = caps.block_size
            pos, n = pos - pos % bs, max(bs, n - n % bs)
            if any(o.file == f and pos < o.pos + o.length and o.pos < pos + n for o in batch):
                continue
            batch.append(Op("pwrite", f, pos, n, wid + i, flags))
        else:
            batch.append(Op("pread", f, pos, n, flags=flags))
    return Op(kind, batch=tuple(batch))


def draw_ops(seed: int, count: int, caps: Capabilities) -> list[Op]:
    """A reproducible list of ``count`` operations (the generator guesses file sizes
    from the operations alone, so the list does not depend on any backend)."""
    rnd = random.Random(seed)
    sizes = Sizes()
    ops = []
    wid = 1
    for _ in range(count):
        op = draw_op(rnd, caps, sizes, wid=wid)
        guess_size(sizes, op)
        ops.append(op)
        wid += 4 if op.kind in BATCHES else 1
    return ops


def guess_size(sizes: Sizes, op: Op) -> None:
    """The size after ``op`` if it succeeds in full (enough to aim at EOF)."""
    for sub in op.batch:
        guess_size(sizes, sub)
    s = sizes.size
    cur = s.get(op.file, 0)
    grows = op.kind in ("fallocate", "zero_range") and not op.keep_size
    if op.kind in ("pwrite", "bwrite", "reflink") or grows:
        s[op.file] = max(cur, op.pos + op.length)
    elif op.kind == "truncate":
        s[op.file] = op.pos


def renumber(ops: list[Op]) -> list[Op]:
    """The same operations with their writes numbered 1, 2... in order (batch members
    too): a shrunk or assembled list keeps every write's data distinct."""
    out: list[Op] = []
    n = 0

    def one(op: Op) -> Op:
        nonlocal n
        if op.batch:
            return attrs.evolve(op, batch=tuple(one(b) for b in op.batch))
        if not op.wid:
            return op
        n += 1
        return attrs.evolve(op, wid=n)

    for op in ops:
        out.append(one(op))
    return out
