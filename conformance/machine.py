"""The Hypothesis state machine: random operation sequences on model and implementation.

`machine_for(fs, engine)` makes a `RuleBasedStateMachine` class for one reference
filesystem and engine. Every rule draws an operation (`conformance.ops`), tells it with
``note()`` and applies it to a `Harness`, which checks the result against the model and
its oracle at once; so a failing example reads as a numbered story and shrinks to the
shortest one. Completions are explicit: a request's race plan, and the `complete` rule
for bios an async request left in flight.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from . import strategies as S
from .harness import Harness, Stats
from .inflight import conflict
from .ops import (
    BufferedRead,
    BufferedWrite,
    CompleteBio,
    Crash,
    DirectRead,
    DirectWrite,
    Fallocate,
    FileWrite,
    Fsync,
    MmapDirty,
    Op,
    Pick,
    Punch,
    Reflink,
    Truncate,
    Unpin,
)

GEOMETRIES = (  # (logical block size, write cache, FUA)
    (512, True, False),
    (512, True, True),
    (4096, True, False),
    (512, False, False),
)
REFLINK = ("reflink", "btrfs-like")
# requests at a data edge: NOWAIT and (writes) O_DSYNC one time in two each
_EDGE_WRITE_FLAGS = ((), ("DSYNC",), ("NOWAIT",), ("DSYNC", "NOWAIT"))
_OVERWRITE_FLAGS = ((), ("DSYNC",), ("DSYNC",), ("SYNC",), ("NOWAIT",), ("DSYNC", "NOWAIT"))
_EDGE_READ_FLAGS = ((), ("NOWAIT",))
# how a write into preallocated blocks is sent: plain, OVERWRITE_ONLY, or NOWAIT
_PREALLOC_MODES: tuple[tuple[str, ...], ...] = ((), ("OVERWRITE_ONLY",), ("NOWAIT",))
# a completion's race plan: none, a read before ->end_io, a read before the invalidation
_COMPLETION_RACES: tuple[tuple[Pick | None, ...], ...] = (
    (), (), (Pick(0),), (None, Pick(0)))


class ConformanceMachine(RuleBasedStateMachine):
    """Base class; `machine_for` sets ``fs`` and ``engine``."""

    fs = "overwrite"
    engine = "iomap"
    fs_factory: Any = None
    backend_factory: Any = None  # Harness.backend_factory (default: the Python World)
    image_dir: str | None = None
    totals: Stats = Stats()  # accumulated over the examples of one run
    examples = 0
    on_example: Any = None  # called as each example starts (a progress bar)

    def __init__(self) -> None:
        super().__init__()
        self.h: Harness | None = None
        self.wid = 0
        self.failed = False
        self.since_crash = 0
        type(self).examples += 1
        if self.on_example is not None:
            type(self).on_example()

    # -- plumbing ----------------------------------------------------------------------

    @initialize(geometry=st.sampled_from(GEOMETRIES))
    def setup(self, geometry: tuple[int, bool, bool]) -> None:
        lbs, cache, fua = geometry
        note(f"{self.fs} on the {self.engine} engine, logical block {lbs}, "
             f"write cache {'on' if cache else 'off'}, FUA {'on' if fua else 'off'}")  # fmt: skip
        self.h = Harness(self.fs, self.engine, logical_block_size=lbs, write_cache=cache,
                         fua=fua, fs_factory=self.fs_factory, image_dir=self.image_dir,
                         backend_factory=self.backend_factory)  # fmt: skip

    def teardown(self) -> None:
        h = self.h
        if h is None:
            return
        try:
            if not self.failed:
                self._do(h.check_all, "final check of every file")
        finally:
            type(self).totals.add(h.stats)
            h.close()

    def _do(self, fn: Any, what: str) -> None:
        try:
            fn()
        except BaseException:
            self.failed = True
            raise

    def apply(self, op: Op) -> None:
        assert self.h is not None
        op = self._fit(op)
        if op is None:
            return
        self.since_crash += 1
        note(f"{len(self.h.ops) + 1:3}. {op.describe()}    # {op!r}")
        self._do(lambda: self.h.apply(op), op.describe())  # type: ignore[union-attr]

    def _fit(self, op: Op) -> Op | None:
        """``op`` as it may run while a request is in flight (`conformance.inflight`):
        a direct request made synchronous, a write moved to the other file; None when it
        cannot run now."""
        h = self.h
        assert h is not None
        if h.pending is None or not conflict(h, op):
            return op
        if isinstance(op, DirectWrite | DirectRead) and not op.sync:
            op = attrs.evolve(op, sync=True)
        if conflict(h, op) and not isinstance(op, MmapDirty) and hasattr(op, "file"):
            op = attrs.evolve(op, file=1 - op.file)  # type: ignore[misc]
        return None if conflict(h, op) else op

    def _geometry(self, index: int) -> tuple[Any, int, int, int, int]:
        h = self.h
        assert h is not None
        f = h.files[index]
        return f, f.size, h.block_size, h.logical_block_size, h.page_size

    def _blocks(self, index: int) -> Any:
        """The file's block map (file block -> device block); empty without one."""
        h = self.h
        assert h is not None
        return h.backend.block_map(h.files[index].ino)

    @staticmethod
    def _runs(blocks: Any) -> tuple[list[int], list[int]]:
        """The first and the last block of each run of allocated blocks, in block-map
        order."""
        return ([b for b in blocks if b - 1 not in blocks],
                [b for b in blocks if b + 1 not in blocks])  # fmt: skip

    def _edges(self, index: int) -> tuple[int, ...]:
        """Where the file's data stops and a hole starts (and a block before), and where
        data starts after a hole: offsets from which a request straddles data and a hole,
        or overwrites the first blocks of a run."""
        blocks = self._blocks(index)
        if not blocks:
            return ()
        bs = self.h.block_size  # type: ignore[union-attr]
        firsts, lasts = self._runs(blocks)
        ends = sorted(b + 1 for b in lasts)[:3]
        starts = sorted(firsts)[:2]
        return (*(x for e in ends for x in (e * bs, e * bs - bs)), *(b * bs for b in starts))

    def _has_data(self) -> bool:
        return any(self._blocks(i) for i in range(len(self.h.files)))  # type: ignore[union-attr]

    def _next_wid(self) -> int:
        self.wid += 1
        return self.wid

    def idle(self) -> bool:
        """Whether an operation may be drawn: also while a request is in flight (what
        may run then is `conformance.inflight`'s to say; `apply` fits the op to it)."""
        return self.h is not None

    def clones(self) -> bool:
        """The filesystem takes FICLONE: a reference one that shares blocks, or one of
        yours with a ``reflink(src, dst)`` method."""
        if self.fs in REFLINK:
            return True
        h = self.h
        return self.fs_factory is not None and h is not None and h.caps.reflink

    def iomap(self) -> bool:
        return self.idle() and self.engine == "iomap"

    def pins(self) -> bool:
        """The backend lets the suite pin cached pages (mmap) and let them go."""
        return self.iomap() and self.h.caps.page_cache_pins  # type: ignore[union-attr]

    # -- rules -------------------------------------------------------------------------

    @precondition(lambda self: self.idle())
    @rule(data=st.data(), index=st.integers(0, 1), k=S.WRITE_KNOBS)
    def direct_write(self, data: Any, index: int, k: S.Knobs) -> None:
        _, size, bs, lbs, page = self._geometry(index)
        base = S.offset_base(S.drawer(data), size, bs, lbs, page, self._edges(index))
        pos = k.offset(base, bs, lbs)
        n = min(S.lengths(bs, lbs, page)[k.len_i], S.FAR + (1 << 20) - 1 - pos)
        self.apply(self._request(DirectWrite, index, pos, n, k, (0, 0, 0, lbs, 3 * bs)))

    def _request(self, kind: type[DirectWrite] | type[DirectRead], index: int, pos: int,
                 n: int, k: S.Knobs, resumed: tuple[int, ...]) -> Op:  # fmt: skip
        """The request ``k`` describes at ``[pos, pos + n)`` (ATOMIC, dio flags and
        done_before are iomap's alone)."""
        h = self.h
        assert h is not None
        legacy = self.engine == "legacy"
        flags = tuple(f for f in k.iocb if f != "ATOMIC") if legacy else k.iocb
        dio, done = ((), 0) if legacy else (k.dio, resumed[k.done_i])
        page = h.page_size
        if kind is DirectWrite:
            fault = S.fault_from(k.fault_i, n, page)
            return DirectWrite(index, pos, n, self._next_wid(), flags, dio, k.sync, fault, done,
                               k.plan)  # fmt: skip
        fault = S.fault_from(k.fault_i, n, page, h.files[index].size - pos)
        return DirectRead(index, pos, n, flags, dio, k.sync, fault, done, k.plan)

    @precondition(lambda self: self.idle() and self._has_data())
    @rule(data=st.data(), index=st.integers(0, 1))
    def direct_write_at_edge(self, data: Any, index: int) -> None:
        """See `_at_edge`."""
        self._at_edge(data, index, True)

    @precondition(lambda self: self.idle() and self._has_data())
    @rule(data=st.data(), index=st.integers(0, 1))
    def direct_read_at_edge(self, data: Any, index: int) -> None:
        """See `_at_edge`."""
        self._at_edge(data, index, False)

    def _at_edge(self, data: Any, index: int, write: bool) -> None:
        """A direct write or read where the file's data starts or ends (written blocks,
        then a hole), or (a read) across i_size; NOWAIT and (a write) O_DSYNC one time in
        two each, async one time in two: where a mapping error races a failed bio,
        O_DSYNC meets written blocks, and an async read ends at an unaligned EOF."""
        if not self._blocks(index):
            index = 1 - index
        _, size, bs, lbs, page = self._geometry(index)
        draw = S.drawer(data)
        eof = size - size % lbs  # a read from here crosses an unaligned EOF
        edges = self._edges(index) + (() if write else (eof, eof - lbs, eof - bs)) or (size,)
        edge, back = S.choose(draw, edges, (0, 0, lbs, bs // 2))
        n, flags, sync = S.choose(draw, (2 * bs, bs, lbs, 3 * bs + lbs),
                                  _EDGE_WRITE_FLAGS if write else _EDGE_READ_FLAGS, (True, False))
        pos = max(0, min(edge - back, S.FAR + 64 * bs))  # an edge may be the loff_t limit
        n = min(n, S.FAR + (1 << 20) - 1 - pos)
        plan = S.plan(draw, sync)
        if write:
            op: Op = DirectWrite(index, pos, n, self._next_wid(), flags, (), sync, None, 0, plan)
        else:
            fault = S.fault_at(draw, n, page, size - pos)
            op = DirectRead(index, pos, n, flags, (), sync, fault, 0, plan)
        self.apply(op)

    @precondition(lambda self: self.idle())
    @rule(data=st.data(), index=st.integers(0, 1), k=S.READ_KNOBS)
    def direct_read(self, data: Any, index: int, k: S.Knobs) -> None:
        _, size, bs, lbs, page = self._geometry(index)
        n = S.lengths(bs, lbs, page)[k.len_i]
        edges = (*self._edges(index), max(0, size - n))
        pos = k.offset(S.offset_base(S.drawer(data), size, bs, lbs, page, edges), bs, lbs)
        n = min(n, S.FAR + (1 << 20) - 1 - pos)
        self.apply(self._request(DirectRead, index, pos, n, k, (0, 0, 0, lbs, 0)))

    @precondition(lambda self: self.iomap())
    @rule(data=st.data(), index=st.integers(0, 1))
    def file_write(self, data: Any, index: int) -> None:
        _, size, bs, lbs, page = self._geometry(index)
        pos = S.offset(S.drawer(data), size, bs, lbs, page)
        n = min(S.length(S.drawer(data), bs, lbs, page), S.FAR + (1 << 20) - 1 - pos)
        flags = tuple(f for f in S.iocb_flags(S.drawer(data), True) if f != "ATOMIC")
        self.apply(FileWrite(index, pos, n, self._next_wid(), flags))

    @precondition(lambda self: self.iomap())
    @rule(data=st.data(), index=st.integers(0, 1))
    def buffered_write(self, data: Any, index: int) -> None:
        _, size, bs, lbs, page = self._geometry(index)
        pos = S.offset(S.drawer(data), size, bs, lbs, page)
        n = min(S.length(S.drawer(data), bs, lbs, page), S.FAR + (1 << 20) - 1 - pos)
        self.apply(BufferedWrite(index, pos, n, self._next_wid()))

    @precondition(lambda self: self.iomap())
    @rule(data=st.data(), index=st.integers(0, 1))
    def buffered_read(self, data: Any, index: int) -> None:
        _, size, bs, lbs, page = self._geometry(index)
        pos = S.offset(S.drawer(data), size, bs, lbs, page)
        self.apply(BufferedRead(index, pos, S.length(S.drawer(data), bs, lbs, page)))

    @precondition(lambda self: self.pins())
    @rule(data=st.data(), index=st.integers(0, 1))
    def mmap_dirty(self, data: Any, index: int) -> None:
        _, size, bs, lbs, page = self._geometry(index)
        if size == 0:
            return
        pos = min(S.offset(S.drawer(data), size, bs, lbs, page, self._edges(index)), size - 1)
        pos -= pos % page
        self.apply(MmapDirty(index, pos))

    @precondition(lambda self: self.pins())
    @rule(index=st.integers(0, 1))
    def unpin(self, index: int) -> None:
        self.apply(Unpin(index))

    @precondition(lambda self: self.idle())
    @rule(data=st.data(), index=st.integers(0, 1), keep=st.booleans())
    def fallocate(self, data: Any, index: int, keep: bool) -> None:
        _, size, bs, _, page = self._geometry(index)
        pos = S.offset(S.drawer(data), size, bs, bs, page)
        pos -= pos % bs
        n = S.pick(S.drawer(data), (bs, 2 * bs, 8 * bs))
        self.apply(Fallocate(index, pos, min(n, S.FAR + (1 << 20) - pos - bs), keep))

    @precondition(lambda self: self.idle())
    @rule(data=st.data(), index=st.integers(0, 1))
    def punch(self, data: Any, index: int) -> None:
        _, size, bs, _, page = self._geometry(index)
        pos = S.offset(S.drawer(data), size, bs, bs, page)
        pos -= pos % bs
        n = S.pick(S.drawer(data), (bs, 2 * bs, 8 * bs))
        self.apply(Punch(index, pos, min(n, S.FAR + (1 << 20) - pos - bs)))

    @precondition(lambda self: self.idle())
    @rule(data=st.data(), index=st.integers(0, 1))
    def truncate(self, data: Any, index: int) -> None:
        _, size, bs, lbs, page = self._geometry(index)
        new = S.new_size(S.drawer(data), size, bs, lbs, page, self._edges(index))
        self.apply(Truncate(index, new))

    @precondition(lambda self: self.idle() and self.clones())
    @rule(src=st.integers(0, 1))
    def reflink(self, src: int) -> None:
        self.apply(Reflink(src, 1 - src))

    @precondition(lambda self: self.idle())
    @rule(index=st.integers(0, 1))
    def fsync(self, index: int) -> None:
        self.apply(Fsync(index))

    @precondition(lambda self: self.h is not None and self.h.caps.race_control
                  and self.h.inflight() > 0)
    @rule(k=st.integers(0, 3), status=S.STATUSES, race=st.integers(0, 3))
    def complete(self, k: int, status: int, race: int) -> None:
        """Complete a bio in flight; if that completes its request, another task may read
        its range at a race point of the completion (one time in two)."""
        self.apply(CompleteBio(k, status, _COMPLETION_RACES[race]))

    @precondition(lambda self: self.h is not None and self.h.caps.crash
                  and self.since_crash >= 3)
    @rule()
    def crash(self) -> None:
        """Power failure (once at least three operations have run since the last one)."""
        self.since_crash = -1
        self.apply(Crash())

    @precondition(lambda self: self.idle() and self._has_data())
    @rule(data=st.data(), index=st.integers(0, 1))
    def direct_overwrite(self, data: Any, index: int) -> None:
        """A pure overwrite: a direct write of written blocks inside i_size (the first or
        last block of a data run), O_DSYNC or not, async one time in two: the FUA path,
        inline completion, and an async O_DSYNC write whose bios outlive the submitter."""
        h = self.h
        assert h is not None
        if not self._blocks(index):
            index = 1 - index
        f = h.files[index]
        bs, lbs = h.block_size, h.logical_block_size
        firsts, lasts = self._runs(self._blocks(index))
        draw = S.drawer(data)
        blk, n = S.choose(draw, (*firsts[:3], *lasts[:3]), (bs, lbs, 2 * lbs))
        n = min(n, f.size - blk * bs) // lbs * lbs
        flags, sync = S.choose(draw, _OVERWRITE_FLAGS, (True, False))
        if n <= 0:
            return
        self.apply(DirectWrite(index, blk * bs, n, self._next_wid(), flags, (), sync, None, 0,
                               S.plan(draw, sync)))  # fmt: skip

    @precondition(lambda self: self.idle() and self._has_data())
    @rule(data=st.data(), index=st.integers(0, 1))
    def short_read_at_eof(self, data: Any, index: int) -> None:
        """A direct read across i_size (a short read), one time in two after a truncate
        that leaves i_size off the logical-block grid; async one time in two, its bios
        left in flight for the `complete` rule one time in two of those."""
        if not self._blocks(index):
            index = 1 - index
        _, size, bs, lbs, _ = self._geometry(index)
        draw = S.drawer(data)
        odd, n, sync = S.choose(draw, (0, 1, lbs // 2 + 1, lbs - 1), (lbs, bs, 2 * bs + lbs),
                                (True, False))  # fmt: skip
        if odd and size > lbs:
            self.apply(Truncate(index, size - lbs + odd))
            size = self.h.files[index].size  # type: ignore[union-attr]
        pos = max(0, size - size % lbs - (lbs if n > lbs else 0))
        n = min(n, S.FAR + (1 << 20) - 1 - pos)
        self.apply(DirectRead(index, pos, n, (), (), sync, None, 0, S.plan(draw, sync)))

    @precondition(lambda self: self.idle() and self.h.caps.crash)
    @rule(data=st.data(), index=st.integers(0, 1))
    def durable_write_then_crash(self, data: Any, index: int) -> None:
        """An O_DSYNC or O_SYNC direct write, acknowledged, then at once a power failure:
        the write and the i_size it made must be there after the remount, whatever the
        device (FUA, no write cache) let the engine skip."""
        _, size, bs, lbs, page = self._geometry(index)
        draw = S.drawer(data)
        pos = S.offset(draw, size, bs, lbs, page, self._edges(index))
        n = min(S.length(draw, bs, lbs, page), S.FAR + (1 << 20) - 1 - pos)
        flags = S.pick(draw, (("DSYNC",), ("SYNC",)))
        self.apply(DirectWrite(index, pos, n, self._next_wid(), flags))
        self.since_crash = -1
        self.apply(Crash())

    @precondition(lambda self: self.idle())
    @rule(data=st.data(), index=st.integers(0, 1))
    def write_into_prealloc(self, data: Any, index: int) -> None:
        """fallocate (keeping i_size or not), then a direct write into the unwritten
        extent it made, block-aligned or not (the engine zeroes the rest of each block),
        OVERWRITE_ONLY (iomap) or NOWAIT one time in three, O_DSYNC one time in two: the
        conversion at completion, the overwrite-only and NOWAIT rules, FUA into an
        unwritten extent."""
        h = self.h
        assert h is not None
        _, size, bs, lbs, _ = self._geometry(index)
        draw = S.drawer(data)
        free = (max(self._blocks(index), default=-1) + 1) * bs  # past every block: a hole
        at, keep, head, n = S.choose(draw, (free, -(-size // bs) * bs, free + bs),
                                     (False, True), (0, lbs, bs // 2),
                                     (bs, lbs, 2 * bs, bs + lbs))  # fmt: skip
        flags, dio, sync = S.choose(draw, ((), ("DSYNC",)), _PREALLOC_MODES, (True, True, False))
        at = min(at, S.FAR)  # (the loff_t limit)
        self.apply(Fallocate(index, at, 2 * bs, keep))
        if self.engine == "legacy":
            dio = ()
        if dio == ("NOWAIT",):
            flags, dio = (*flags, "NOWAIT"), ()
        self.apply(DirectWrite(index, at + head, n, self._next_wid(), flags, dio, sync, None,
                               0, S.plan(draw, sync)))  # fmt: skip

    @precondition(lambda self: self.idle())
    @rule(data=st.data(), index=st.integers(0, 1))
    def short_write_past_eof(self, data: Any, index: int) -> None:
        """A direct write across EOF whose user buffer faults after the first page: a
        short write that still moves i_size (PARTIAL on iomap: the bytes done, not the
        length asked for), sync or async."""
        _, size, bs, lbs, page = self._geometry(index)
        draw = S.drawer(data)
        back, pages, sync = S.choose(draw, (0, lbs, bs, 0), (2, 3), (True, True, False))
        pos = max(0, size - size % lbs - back)
        n = min(pages * page, S.FAR + (1 << 20) - 1 - pos)
        dio = () if self.engine == "legacy" else ("PARTIAL",)
        self.apply(DirectWrite(index, pos, n, self._next_wid(), (), dio, sync, page, 0,
                               S.plan(draw, sync)))  # fmt: skip

    @invariant()
    def sizes_agree(self) -> None:
        """The model's i_size of each file (through the oracle) is the implementation's."""
        h = self.h
        if h is None or h.pending is not None:
            return
        for f in h.files:
            problems = h.oracle.check_size(f.ino, f.size)
            if problems:
                self._do(lambda p=problems: h._problems(p), "sizes")


def machine_for(fs: str, engine: str, **attrs: Any) -> type[ConformanceMachine]:
    """A machine class for one filesystem and engine (its own running totals)."""
    name = "Conformance_" + fs.replace("-", "_") + "_" + engine
    for name in ("fs_factory", "backend_factory"):  # a function must not become a method
        if attrs.get(name) is not None:
            attrs[name] = staticmethod(attrs[name])
    return type(name, (ConformanceMachine,), {"fs": fs, "engine": engine, "totals": Stats(),
                                              "examples": 0, **attrs})  # fmt: skip
