"""Model, oracle and implementation side by side, one operation at a time.

`Harness.apply(op)` runs an operation (`conformance.ops`) on a backend
(`conformance.engine_backend`: the Python implementation's `World` through
`impl/engine_backend.py`, recording a v1 trace) and checks it at once, two ways:

- **engine level**: the request's trace events, as the implementation recorded them
  (its environment choices: mappings, bio cuts, completion order and statuses), are fed
  to the model's engine (`StreamReplayer`), which predicts every output itself: bios,
  FUA, flush, -EIOCBQUEUED, result, position and i_size. The first difference fails.
- **file level**: the model's oracle (`model.oracle`) is told what each operation did
  and checks what reads return (data read back, the range an operation touched as the
  implementation now holds it, everything after a crash): equal contents, no stale
  bytes, every acknowledged O_DSYNC/O_SYNC write still there after a crash, equal i_size.

A failure raises `ConformanceFailure`, which carries the story (every operation
applied), the kind of failure and what to save (trace events, operations).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from attrs import define, field, frozen

from ..impl.api import EAGAIN, ContractError
from ..impl.engine_backend import WorldBackend
from ..impl.examples import ENGINES, FILESYSTEMS
from ..model import seed_quirks as Q
from ..model.oracle import Oracle, Problem
from ..model.oracle_state import ZERO_SET
from ..model.pattern import pattern
from ..traces.replay import StreamReplayer
from . import file_ops as F
from .backend import Capabilities
from .engine_backend import EngineBackend, Schedule
from .failure import ConformanceFailure, Stats
from .inflight import WAITS_FOR_DIO, conflict, own_bios, widen
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
from .orders import allowed_results, check_completion_orders
from .snapshot import merge_ranges
from .verdicts import bio_statuses, check_cache_fresh, check_unchanged

_READ_EXPECTED = re.compile(r"read (.*), expected (.*)\.$")
_WID = re.compile(r"write #(\d+)")
EIOCBQUEUED = -529
MAX_ORDER_BIOS = 16  # in-flight bios up to which every completion order is checked by z3
# race points inside a write's completion (impl.iomap_dio._complete): a plan entry there
# is a buffered read of the request's range by another task (`Harness._read_race`)
COMPLETION_POINTS = ("end_io", "invalidate")
@frozen
class FileView:
    """One of the story's files, by inode number; its size is asked of the backend."""

    ino: int
    backend: EngineBackend = field(repr=False)

    @property
    def size(self) -> int:
        return self.backend.size(self.ino)

    @property
    def cached(self) -> bool:
        """It has cached pages (what iomap_dio_done reads: ``mapping->nrpages``)."""
        return self.backend.has_cached_pages(self.ino)


@define
class _Pending:
    """An async request the submitter left in flight (-EIOCBQUEUED)."""

    op: DirectWrite | DirectRead
    req: int
    completion: list[int]
    buf: bytearray
    ino: int
    state: Any = None  # the model's request state when it was queued
    statuses: dict[int, int] = field(factory=dict)  # bio index -> status it completed with
    bios: list[Any] = field(factory=list)  # its bios (others' plans leave them alone)


@define
class Harness:
    """One implementation world and its model, checked after every operation."""

    fs: str
    engine: str = "iomap"
    logical_block_size: int = 512
    write_cache: bool = True
    fua: bool = False
    nfiles: int = 2
    image_dir: str | None = None
    size: int = 1 << 30
    fs_factory: Callable[[Any], Any] | None = None
    # another backend than the Python implementation's World: called with the schedule
    # (the suite's race control) it must call at each race point
    backend_factory: Callable[[Schedule], EngineBackend] | None = None
    backend: EngineBackend = field(init=False)
    oracle: Oracle = field(init=False)
    stream: StreamReplayer = field(init=False)
    files: list[FileView] = field(init=False)
    ops: list[Op] = field(init=False, factory=list)
    stats: Stats = field(init=False, factory=Stats)
    pending: _Pending | None = field(init=False, default=None)
    _plan: Iterator[Pick | None] = field(init=False, factory=lambda: iter(()))
    _fed: int = field(init=False, default=0)
    _racing: tuple[int, int, int] | None = field(init=False, default=None)  # file, pos, len
    _tmp: Any = field(init=False, default=None)
    abandoned: set[int] = field(init=False, factory=set)  # requests a crash cut short

    def __attrs_post_init__(self) -> None:
        factory = self.fs_factory or FILESYSTEMS.get(self.fs)
        if factory is None:
            raise ValueError(f"unknown filesystem {self.fs!r} (known: {sorted(FILESYSTEMS)})")
        if self.fs_factory is None and ENGINES.get(self.fs, "iomap") != self.engine:
            raise ValueError(f"filesystem {self.fs!r} does not run on the {self.engine} engine")
        image = None  # a temporary image of the device's own, removed at close
        if self.image_dir is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dioconf-run-", dir=self.image_dir)
            image = Path(self._tmp.name) / "image"
        if self.backend_factory is not None:
            self.backend = self.backend_factory(self._schedule)
        else:
            self.backend = WorldBackend(factory, engine=self.engine, image=image,
                                        size=self.size,
                                        logical_block_size=self.logical_block_size,
                                        write_cache=self.write_cache, fua=self.fua,
                                        schedule=self._schedule)  # fmt: skip
        if self.backend.engine != self.engine:
            self.close()
            raise ValueError(f"the backend runs the {self.backend.engine} engine, "
                             f"not {self.engine}")  # fmt: skip
        self.stream = StreamReplayer(self.backend.header, "<conformance>")
        self.oracle = Oracle()
        self.files = []
        for _ in range(self.nfiles):
            f = FileView(self.backend.create(), self.backend)
            self.files.append(f)
            self.oracle = self.oracle.create(f.ino)
        self.backend.fsync()  # the files exist durably (a crash keeps them)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.backend.close()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this harness (for a reproduction)."""
        return {"fs": self.fs, "engine": self.engine,
                "logical_block_size": self.logical_block_size,
                "write_cache": self.write_cache, "fua": self.fua,
                "nfiles": self.nfiles}  # fmt: skip

    @property
    def caps(self) -> Capabilities:
        return self.backend.caps

    @property
    def block_size(self) -> int:
        return self.backend.caps.block_size

    @property
    def page_size(self) -> int:
        return self.backend.caps.page_size

    def inflight(self) -> int:
        return len(self.backend.inflight())

    def run(self, ops: Iterable[Op]) -> None:
        """Apply every operation (a reproduction)."""
        for op in ops:
            self.apply(op)

    def save_trace(self, path: str | Path) -> Path:
        return self.backend.save_trace(path)

    # -- applying ----------------------------------------------------------------------

    def apply(self, op: Op) -> None:
        self._racing = None
        why = conflict(self, op)
        if why:
            raise ValueError(f"{op.describe()}: not while request {self.pending.req} is in "
                             f"flight: {why}")  # type: ignore[union-attr]  # fmt: skip
        self.ops.append(op)
        self.stats.steps += 1
        try:
            if self.pending is not None and isinstance(op, WAITS_FOR_DIO):
                _dio_wait(self)
            _HANDLERS[type(op)](self, op)
            widen(self)
            if self.pending is not None and self.caps.page_cache_pins:
                # what iomap_dio_done will read when the request in flight completes
                cached = self.files[self.pending.op.file].cached
                self.stream.set_cached_pages(self.pending.req, cached)
        except ConformanceFailure:
            raise
        except ContractError as exc:
            raise ConformanceFailure("contract", str(exc), self) from exc
        except Exception as exc:  # the implementation itself broke: still a story to tell
            raise ConformanceFailure("crash", f"{type(exc).__name__}: {exc}", self) from exc
        self._feed()
        p = self.pending
        if p is not None and p.state is None:
            self._check_orders(p)

    def _check_orders(self, p: _Pending) -> None:
        """z3, over every completion order of the bios left in flight (statuses left
        symbolic): exactly one completer, and the first error wins."""
        p.state = self.stream.state_of(p.req)
        if p.state is None or self.inflight() > MAX_ORDER_BIOS:
            return  # (the encoding grows with the square of the bios in flight)
        check = check_completion_orders(self.engine, p.state, None, tight=False)
        if check.status == "unknown":  # z3 gave up (time): no verdict, not a failure
            return
        self.stats.order_checks += 1
        if not check.ok:
            self.fail("engine", f"completion orders of request {p.req}: {check.detail}")

    def _check_result_allowed(self, p: _Pending, ret: int) -> None:
        """The result is one the model allows for these statuses in some order."""
        if p.state is None:
            return
        allowed = allowed_results(self.engine, p.state, dict(p.statuses))
        if ret not in allowed:
            self.fail("engine", f"request {p.req} completed with {ret}; over all completion "
                                f"orders the model allows {sorted(allowed)}")  # fmt: skip


    def fail(self, kind: str, message: str) -> None:
        if kind == "engine":
            self.stats.divergences += 1
        raise ConformanceFailure(kind, message, self)

    # -- race control ------------------------------------------------------------------

    def _schedule(self, where: str, inflight: list[Any]) -> list[tuple[Any, int]]:
        pick = next(self._plan, None)
        if where in COMPLETION_POINTS:
            if pick is not None and self._racing is not None:
                self._read_race()
            return []
        own = own_bios(self, inflight)
        if own is not inflight and where == "wait" and pick is None and own:
            return [(own[0], 0)]  # not the in-flight request's: a `complete` step does that
        inflight = own
        if pick is None or not inflight:
            return []
        bio = inflight[pick.k % len(inflight)]
        if where != "wait" or bio is not inflight[0] or pick.status:
            self.stats.races += 1
        return [(bio, pick.status)]

    def _read_race(self) -> None:
        """Another task reads the completing request's range through the page cache at
        a race point of the completion (``end_io``: before ->end_io converts extents and
        moves i_size; ``invalidate``: after it, before the post-write invalidation). What
        it reads is not checked (either value may show); the pages it caches are, once
        the request has completed (`verdicts.check_cache_fresh`)."""
        index, pos, length = self._racing  # type: ignore[misc]
        if not self.caps.page_cache_pins:  # (no page cache to race through)
            return
        self.stats.races += 1
        self.backend.buffered_read(self.files[index].ino, pos, length)

    # -- engine-level check ------------------------------------------------------------

    def _feed(self) -> None:
        pending_req = self.pending.req if self.pending is not None else None
        for obj in self.backend.events_since(self._fed):
            self._fed += 1
            ev = obj["ev"]
            if ev == "begin":
                self.stats.requests += 1
                if obj["req"] == pending_req and self.pending is not None:
                    # in flight: iomap_dio_done will read the cached pages of now
                    obj = dict(obj)
                    cached = self.files[self.pending.op.file].cached
                    obj.pop("cached_pages", None)
                    if cached:
                        obj["cached_pages"] = True
            elif ev == "bio":
                self.stats.bios += 1
            div = self.stream.feed(self._fed + 1, obj)
            if div is not None:
                self.fail("engine", "\n".join(div.report()))

    # -- file-level checks -------------------------------------------------------------

    def _problems(self, problems: list[Problem]) -> None:
        if problems:
            texts = [self._foreign(p) for p in problems[:4]]
            worst = next((p for p in problems if p.kind in ("stale", "lost")), problems[0])
            kind = "contents" if worst.kind == "mismatch" else worst.kind
            if any(t != str(p) for t, p in zip(texts, problems, strict=False)):
                kind = "stale"  # another file's data: an exposure, whatever else it is
            self.fail(kind, "; ".join(texts))

    def _foreign(self, p: Problem) -> str:
        """``p``'s message, saying so when what was read is another file's write (a
        block shared or reused while the commit still gave it to that file)."""
        m = _READ_EXPECTED.search(p.message)
        index = next((i for i, f in enumerate(self.files) if f.ino == p.ino), None)
        if m is None or index is None:
            return str(p)
        got, want = m.group(1), m.group(2)
        wids = {int(w) for w in _WID.findall(got)} - {int(w) for w in _WID.findall(want)}
        cloned = any(isinstance(op, Reflink) and op.dst == index for op in self.ops)
        owners = {getattr(op, "wid", None): op.file for op in self.ops if hasattr(op, "wid")}
        other = sorted(w for w in wids if owners.get(w, index) != index)
        if not other or cloned:
            return str(p)
        names = ", ".join(f"write #{w} (to file {owners[w]})" for w in other)
        return (f"{p} This is another file's data: {names}; a block the last commit still "
                "gives to this file was reused or written in place (a free or an unshare "
                "not yet committed?).")

    def _check_range(self, index: int, pos: int, end: int) -> None:
        """The implementation's view of [pos, end) against the oracle, which then keeps
        what the implementation chose where it could choose. Sparse: only where either
        side may hold anything but zeros, plus the blocks at both ends, is read."""
        f = self.files[index]
        self._problems(self.oracle.check_size(f.ino, f.size))
        self.oracle = self.oracle.observe_size(f.ino, f.size)
        end = min(end, f.size)
        if pos >= end:
            return
        bs = self.block_size
        ranges = [(pos, min(end, pos + bs)), (max(pos, end - bs), end)]
        ranges += self.backend.data_ranges(f.ino, pos, end)
        ranges += [(max(s, pos), min(e, end)) for s, e, vals in self.oracle.contents(f.ino)
                   if s < end and e > pos and vals != ZERO_SET]  # fmt: skip
        for s, e in merge_ranges(ranges, bs):
            data = self.backend.read_view(f.ino, s, e)
            self._problems(self.oracle.check_read(f.ino, s, data))
            self.oracle = self.oracle.observe(f.ino, s, data)

    def _check_file(self, index: int) -> None:
        """The whole file (sparse: see `_check_range`)."""
        self._check_range(index, 0, self.files[index].size)

    def check_all(self) -> None:
        if self.pending is None:
            for i in range(len(self.files)):
                self._check_file(i)


def _bios_of(h: Harness, req: int) -> int:
    return sum(1 for e in h.backend.events_since(0) if e["ev"] == "bio" and e.get("req") == req)


def _written(ret: int, done_before: int) -> int:
    """Bytes a direct request did (ret includes done_before only when positive)."""
    return ret - done_before if ret > 0 else ret


def _direct(h: Harness, op: DirectWrite | DirectRead) -> None:
    f = h.files[op.file]
    h._plan = iter(op.plan)
    write = isinstance(op, DirectWrite)
    h._racing = (op.file, op.pos, op.length)
    buf = bytearray(pattern(op.wid, op.pos, op.length)) if write else bytearray(op.length)
    r = h.backend.direct(f.ino, op.pos, buf, write=write, flags=op.flags, dio=op.dio,
                         sync=op.sync, fault_at=op.fault_at, done_before=op.done_before)
    if r.queued and not r.completion:
        assert r.completion is not None
        h.pending = _Pending(op, r.req, r.completion, buf, f.ino,
                             bios=h.backend.inflight())  # fmt: skip
        return
    ret = r.completion[0] if r.queued and r.completion else r.ret
    _finish(h, op, r.req, ret, buf)


def _finish(h: Harness, op: DirectWrite | DirectRead, req: int, ret: int, buf: bytearray) -> None:
    f = h.files[op.file]
    n = _written(ret, op.done_before)
    h._feed()  # the model agrees on ret first
    recorded = next((e["ret"] for e in reversed(h.backend.events_since(0))
                     if e["ev"] == "complete" and e.get("req") == req), None)  # fmt: skip
    if recorded is not None and recorded != ret:
        h.fail("engine", f"request {req} returned {ret} but its trace recorded {recorded}")
    if isinstance(op, DirectWrite):
        nowait = "NOWAIT" in op.flags
        if n < 0 and not _bios_of(h, req):
            pass  # refused before any I/O: nothing changed
        elif n == EAGAIN and nowait and EAGAIN not in bio_statuses(h, req):
            check_unchanged(h, op)  # NOWAIT answered -EAGAIN: the file must not change
        else:
            if Q.nowait_eagain_landed(n, nowait, True):
                h.stats.findings["nowait-eagain-landed"] += 1  # (counted as a quirk)
            durable = n > 0 and bool({"DSYNC", "SYNC"} & set(op.flags))
            h.oracle = h.oracle.direct_write(f.ino, op.pos, op.length, op.wid,
                                             n if n >= 0 else -1, durable=durable)  # fmt: skip
            for allowed in (
                Q.legacy_zero_page_after_fault(h.engine, n, op.pos, op.length, op.fault_at),
                Q.iomap_head_pad_after_dropped_fault(n, op.pos, op.fault_at, h.block_size)
                if h.engine == "iomap" else None,  # (the legacy engine has its own)
            ):
                if allowed is not None:  # named in model/seed_quirks.py
                    h.stats.findings[allowed.name] += 1
                    h.oracle = h.oracle.may_be_zeroed(
                        f.ino, allowed.start, allowed.end - allowed.start
                    )
        if n > 0:
            check_cache_fresh(h, op, n)
    elif n > 0:
        data = bytes(buf[:n])
        h._problems(h.oracle.check_read(f.ino, op.pos, data))
        h.oracle = h.oracle.observe(f.ino, op.pos, data)
    h._check_range(op.file, op.pos, op.pos + op.length)


def _complete_bio(h: Harness, op: CompleteBio) -> None:
    inflight = h.backend.inflight()
    if not inflight:
        raise ValueError("complete: no bio is in flight")
    bio = inflight[op.k % len(inflight)]
    if bio is not inflight[0] or op.status:
        h.stats.races += 1
    p = h.pending
    if p is not None:
        p.statuses[bio.index] = op.status
        h._racing = (p.op.file, p.op.pos, p.op.length)
    h._plan = iter(op.plan)  # the completion's own race points
    h.backend.complete(bio, op.status)
    if p is not None and p.completion:
        h.pending = None
        h._check_result_allowed(p, p.completion[0])
        _finish(h, p.op, p.req, p.completion[0], p.buf)


def _dio_wait(h: Harness) -> None:
    """inode_dio_wait: the request in flight completes (its bios in order, status 0)."""
    while h.pending is not None and h.backend.inflight():
        _complete_bio(h, CompleteBio(0))


_HANDLERS: dict[type, Callable[[Harness, Any], None]] = {
    MmapDirty: F.mmap_dirty,
    Unpin: F.unpin,
    DirectWrite: _direct,
    DirectRead: _direct,
    CompleteBio: _complete_bio,
    FileWrite: F.file_write,
    BufferedWrite: F.buffered_write,
    BufferedRead: F.buffered_read,
    Fallocate: F.fallocate,
    Punch: F.punch,
    Truncate: F.truncate,
    Reflink: F.reflink,
    Fsync: F.fsync,
    Crash: F.crash,
}
