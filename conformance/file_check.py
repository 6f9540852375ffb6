"""Operations performed on a backend, each checked against the file-level oracle.

``FileRun`` performs ``Op``s (``file_ops_gen.py``) on a ``FileBackend`` and keeps the
oracle (``model/oracle.py``) in step: after each operation the syscall's result must be
one the user's contract allows, and the touched range and the file's size must read as
the oracle says; after a remount, whole files. What breaks the contract is a ``Failure``
named by ``findings.classify``: a known finding by its name, anything else by what went
wrong. A finding the caller allows is counted, and the run goes on as if the oracle had
allowed it.
"""

from __future__ import annotations

import errno as errno_mod
import re
from collections import Counter
from typing import Any

from attrs import define, field, frozen

from ..model.errno import EAGAIN, EFAULT, EINVAL
from ..model.oracle import Oracle, Problem
from ..model.oracle_state import SECTOR
from ..model.pattern import describe, pattern
from .backend import FileBackend
from .file_ops_gen import BATCHES, Op
from .findings import FINDING_HEAD_PAD, absorb, classify, zeroed_own_data

Result = int
WID_STRIDE = 100_000  # run k writes wids k * WID_STRIDE + 1...


@frozen
class Failure:
    """What broke the contract, at which operation."""

    name: str  # a finding's name (findings.py) or unexplained-KIND
    index: int  # the operation (0-based)
    message: str
    # what the contract allowed, for a generated reproducer (repro_script.py): data
    # (a range's candidate values per piece), size (the sizes allowed) or result
    expect: dict[str, Any] | None = None
    wid_base: int = 0  # the run's write ids are wid_base + op.wid


@define
class FileRun:
    """One run: its own files (``prefix`` + ``f0``...) on a shared backend."""

    backend: FileBackend
    prefix: str
    files: int = 2
    wid_base: int = 0  # this run's writes are wid_base + op.wid (WID_STRIDE apart)
    allow: frozenset[str] = frozenset()
    oracle: Oracle = field(factory=Oracle)
    inos: dict[str, int] = field(factory=dict)
    story: list[str] = field(factory=list)  # one line per operation, with its result
    allowed: Counter[str] = field(factory=Counter)  # allowed findings met, by name
    steps: int = 0
    # an allowed finding the oracle cannot follow (stale bytes) ends the run, clean
    ended: bool = False
    # direct writes that reached past EOF and failed (evidence for findings.classify:
    # where ext4 leaves written blocks behind)
    failed_end: dict[str, int] = field(factory=dict)  # by file: the furthest such end
    failed_ranges: dict[str, list[tuple[int, int]]] = field(factory=dict)  # by file
    # ranges a truncate, punch or zero range freed, by file: old data showing there
    # again is stale, not a lost write
    freed: dict[str, list[tuple[int, int]]] = field(factory=dict)
    reflinked: bool = False  # data may have moved (a reflink succeeded)

    def wid(self, op: Op) -> int:
        """The write id of ``op``'s data in this run: runs sharing a backend write
        different data, so bytes of another run's (deleted) file read back are stale."""
        if not 0 < op.wid < WID_STRIDE:
            raise ValueError(f"write ids are 1..{WID_STRIDE - 1}, not {op.wid}")
        return self.wid_base + op.wid

    def foreign(self, data: bytes, pos: int, file: str = "", own: int = 0) -> bool:
        """``data`` (read at ``pos`` of ``file``) holds another run's writes, this run's
        moved where no reflink moved them, or this run's back where a truncate, punch or
        zero range freed them: stale data (freed blocks handed out unzeroed)."""
        freed = self.freed.get(file, [])
        for s, e, lab in describe(data, pos):
            if lab.startswith("write #"):
                wid = int(lab[7:].split()[0])
                if wid - wid % WID_STRIDE != self.wid_base:
                    return True
                if "(from offset" in lab and not self.reflinked:
                    return True
                if wid != own and any(s < fe and fs < e for fs, fe in freed):
                    return True  # (the operation's own data is no stale data)
        return False

    def start(self) -> None:
        for i in range(self.files):
            name = f"f{i}"
            ino = self.backend.create(self.prefix + name)
            self.inos[name] = ino
            self.oracle = self.oracle.create(ino)

    # -- one operation --------------------------------------------------------------------

    def step(self, index: int, op: Op) -> Failure | None:
        """Perform ``op``; the first way it broke the contract, or None."""
        self.steps += 1
        if op.kind in ("pread", "bread"):
            ret, data = _read(self, op)
            self.story.append(f"{index:4}: {op} -> {_show(ret)}")
            return self._check_size(index, op, ret, op.file) or self.check_read(
                index, op, ret, data
            )
        if op.kind in BATCHES:
            return self._step_aio(index, op)
        ret = _perform(self, op)
        self.story.append(f"{index:4}: {op} -> {_show(ret)}")
        return self._after(index, op, ret)

    def _after(self, index: int, op: Op, ret: Result) -> Failure | None:
        bad = self._result_problem(op, ret)
        if bad is not None:
            return self._result_failure(index, op, ret, bad)
        self._apply(op, ret)
        return self._check_after(index, op, ret)

    def batch_requests(self, op: Op) -> list[tuple[str, str, int, int, int, frozenset[str]]]:
        """A batch (aio, uring) as the backend takes it (FileBackend.direct_batch)."""
        return [(b.kind, self.prefix + b.file, b.pos, b.length, self.wid(b) if b.wid else 0,
                 b.flags) for b in op.batch]  # fmt: skip

    def _step_aio(self, index: int, op: Op) -> Failure | None:
        """Requests in flight together, on ranges that do not overlap: each is checked
        as if alone, the writes first (a read past EOF may see the size before or after
        an extending write of the batch). Through Linux AIO or io_uring (``op.kind``)."""
        results = self.backend.direct_batch(self.batch_requests(op), via=op.kind)
        shown = ", ".join(_show(ret) for ret, _ in results)
        self.story.append(f"{index:4}: {op} -> {shown}")
        before = {n: self.oracle.file(ino).sizes for n, ino in self.inos.items()}
        writes = [(b, ret) for b, (ret, _) in zip(op.batch, results, strict=True)
                  if b.kind == "pwrite"]  # fmt: skip
        for b, ret in writes:  # all results, then the oracle follows them all
            bad = self._result_problem(b, ret)
            if bad is not None:
                return self._result_failure(index, b, ret, bad)
            self._apply(b, ret)
        for b, ret in writes:  # then what the files hold now
            bad = self._check_after(index, b, ret)
            if bad is not None or self.ended:
                return bad
        for b, (ret, data) in zip(op.batch, results, strict=True):
            if b.kind == "pread":
                bad = self.check_read(index, b, ret, data, also=before[b.file])
                if bad is not None or self.ended:
                    return bad
        return None

    def _result_problem(self, op: Op, ret: Result) -> str | None:
        """Why ``ret`` is not a result the contract allows for ``op`` (None: it is)."""
        k = op.kind
        nowait = "NOWAIT" in op.flags
        if k == "pwrite":
            if ret > op.length:
                return f"the write returned {ret}, more than its {op.length} bytes"
            if op.fault_at is not None and ret > op.fault_at:
                return f"the write returned {ret} past its buffer's fault at {op.fault_at}"
            if ret < 0:
                ok = (op.fault_at is not None and ret == EFAULT) or (nowait and ret == EAGAIN)
                return None if ok else f"the write failed with {_show(ret)}"
            if ret < op.length and op.fault_at is None and not nowait:
                return f"a short write: {ret} of {op.length} bytes"
            return None
        if k == "bwrite":
            return None if ret == op.length else f"the buffered write returned {_show(ret)}"
        if k == "mmap_write":  # up to EOF
            size = max(self.oracle.file(self.inos[op.file]).sizes)
            want = max(0, min(op.length, size - op.pos))
            return None if ret == want else f"the mapping took {_show(ret)} bytes, not {want}"
        if k == "reflink":
            # FICLONERANGE: a source range past the source's EOF is -EINVAL
            # (generic_remap_checks); the ranges are block-aligned and in different files
            src_size = max(self.oracle.file(self.inos[op.src]).sizes)
            want = EINVAL if op.spos + op.length > src_size else 0
            if ret == want:
                return None
            return f"FICLONERANGE returned {_show(ret)}, expected {_show(want)} " \
                f"(source i_size {src_size})"
        return None if ret == 0 else f"{k} failed with {_show(ret)}"

    def _apply(self, op: Op, ret: Result) -> None:
        """The oracle follows the operation."""
        o, k = self.oracle, op.kind
        ino = self.inos.get(op.file, 0)
        if ret < 0 and k != "pwrite":
            return  # (an error the contract allows: nothing changed)
        if k == "pwrite" and ret < 0 and op.pos + op.length > max(o.file(ino).sizes):
            end = op.pos + op.length
            self.failed_end[op.file] = max(end, self.failed_end.get(op.file, 0))
            bs = self.backend.caps.block_size  # (blocks are allocated whole)
            span = (op.pos - op.pos % bs, -(-end // bs) * bs)
            self.failed_ranges.setdefault(op.file, []).append(span)
        if k == "reflink":
            self.reflinked = True
        if k == "pwrite" and ret == EAGAIN and "NOWAIT" in op.flags:
            pass  # preadv2(2): RWF_NOWAIT answers EAGAIN instead of doing anything
        elif k == "pwrite":
            durable = ret > 0 and bool({"DSYNC", "SYNC"} & op.flags)
            o = o.direct_write(ino, op.pos, op.length, self.wid(op), ret if ret >= 0 else -1,
                               durable=durable)  # fmt: skip
        elif k == "bwrite":
            o = o.buffered_write(ino, op.pos, op.length, self.wid(op))
        elif k == "mmap_write" and ret > 0:
            o = o.buffered_write(ino, op.pos, ret, self.wid(op))
        elif k == "zero_range":  # zeros, and the size grows unless KEEP_SIZE
            self.freed.setdefault(op.file, []).append((op.pos, op.pos + op.length))
            o = o.punch(ino, op.pos, op.length).fallocate(ino, op.pos, op.length, op.keep_size)
        elif k in ("fsync", "fdatasync"):
            o = o.fsync(ino)
        elif k == "truncate":
            old = max(o.file(ino).sizes)
            if op.pos < old:
                self.freed.setdefault(op.file, []).append((op.pos, old))
            o = o.truncate(ino, op.pos)
        elif k == "fallocate":
            o = o.fallocate(ino, op.pos, op.length, op.keep_size)
        elif k == "punch":
            self.freed.setdefault(op.file, []).append((op.pos, op.pos + op.length))
            o = o.punch(ino, op.pos, op.length)
        elif k == "reflink":
            o = o.reflink(self.inos[op.src], op.spos, ino, op.pos, op.length)
        self.oracle = o

    # -- checks ---------------------------------------------------------------------------

    def _check_after(self, index: int, op: Op, ret: Result) -> Failure | None:
        if op.kind == "remount":
            for name in self.inos:
                bad = self._check_file(index, op, ret, name, 0, None)
                if bad is not None or self.ended:
                    return bad
            return None
        if op.kind in ("fsync", "fdatasync", "drop_cache"):
            return None
        lo, hi = op.pos, op.pos + op.length
        if op.kind == "truncate":
            lo, hi = max(0, op.pos - 4096), op.pos + 4096
        bad = self._check_file(index, op, ret, op.file, lo, hi)
        if bad is None and not self.ended and op.kind == "pwrite" and ret == EFAULT:
            return self._check_failed_write(index, op, ret)
        return bad

    def _check_failed_write(self, index: int, op: Op, ret: Result) -> Failure | None:
        """A write that failed with EFAULT may leave its range unspecified, but not
        zero the data it had submitted (findings.zeroed_own_data)."""
        at = zeroed_own_data(op, self.backend.caps.block_size)
        if at is None:
            return None
        lo, hi = at
        data = self.backend.read_view(self.prefix + op.file, lo - SECTOR, hi - lo + SECTOR)
        if data[:SECTOR] != pattern(self.wid(op), lo - SECTOR, SECTOR) or data[SECTOR:].count(0) \
                != hi - lo:  # fmt: skip
            return None
        name = FINDING_HEAD_PAD
        if name in self.allow:
            self.allowed[name] += 1
            return None
        expect = {"kind": "data", "file": op.file, "start": lo, "end": hi,
                  "pieces": [[lo, hi, [[self.wid(op), 0]]]]}  # its own data only
        return Failure(name, index, f"the write failed with EFAULT at buffer offset "
                       f"{op.fault_at}, and its data landed up to {lo}, but [{lo}, {hi}) "
                       "reads as zeros although the buffer held that data in a page before "
                       "the fault: the request zeroed data it had just written",
                       expect, self.wid_base)  # fmt: skip

    def _check_size(self, index: int, op: Op, ret: Result, name: str) -> Failure | None:
        ino = self.inos[name]
        size = self.backend.size(self.prefix + name)
        problems = self.oracle.check_size(ino, size)
        if problems:
            bad = self._failure(index, op, ret, problems, size=size)
            if bad is not None or self.ended:
                return bad
        self.oracle = self.oracle.observe_size(ino, size)
        return None

    def _check_file(self, index: int, op: Op, ret: Result, name: str, lo: int,
                    hi: int | None) -> Failure | None:  # fmt: skip
        """Size, then ``[lo, hi)`` (None: to EOF) as a reader sees it."""
        bad = self._check_size(index, op, ret, name)
        if bad is not None or self.ended:
            return bad
        ino = self.inos[name]
        size = max(self.oracle.file(ino).sizes)
        hi = size if hi is None else min(hi, size)
        if lo >= hi:
            return None
        data = self.backend.read_view(self.prefix + name, lo, hi - lo)
        return self._check_data(index, op, ret, ino, lo, data)

    def _check_data(self, index: int, op: Op, ret: Result, ino: int, pos: int,
                    data: bytes) -> Failure | None:  # fmt: skip
        problems = self.oracle.check_read(ino, pos, data)
        if problems:
            bad = self._failure(index, op, ret, problems, data, pos)
            if bad is not None or self.ended:
                return bad
        self.oracle = self.oracle.observe(ino, pos, data)
        return None

    def _failure(self, index: int, op: Op, ret: Result, problems: list[Problem],
                 data: bytes = b"", pos: int = 0, size: int = -1) -> Failure | None:  # fmt: skip
        """A failure for ``problems``, or None when they are evidence of an allowed
        finding (the oracle then allows what was seen)."""
        kinds = sorted({p.kind for p in problems})
        file = name_of(problems[0].ino, self.inos)
        if kinds == ["mismatch"] and any(
            self.foreign(data[p.start - pos : p.end - pos], p.start, file,
                         self.wid(op) if op.wid else 0)
            for p in problems
        ):
            kinds = ["stale"]  # another run's data: blocks handed out without zeroing
        name = classify(op, ret, kinds[0], problems, data, pos, self.backend.caps.block_size,
                        size=size, failed_end=self.failed_end.get(file, 0),
                        failed_ranges=self.failed_ranges.get(file, []))  # fmt: skip
        if name in self.allow:
            self.allowed[name] += 1
            if kinds == ["stale"] or name.startswith("unexplained-"):
                # no candidate stands for what freed blocks held, or for what an
                # unexplained failure did: the run ends here, clean
                self.ended = True
                return None
            wid = self.wid(op) if op.wid else 0
            self.oracle = absorb(name, self.oracle, self.inos[op.file], op, wid, problems, size)
            return None
        message = "\n".join(self.relative(str(p)) for p in problems[:6])
        return Failure(name, index, message, self._expect(file, problems), self.wid_base)

    def _expect(self, file: str, problems: list[Problem]) -> dict[str, Any]:
        """What the oracle allowed where the first problem is."""
        p = problems[0]
        f = self.oracle.file(p.ino)
        if p.kind == "size":
            return {"kind": "size", "file": file, "sizes": sorted(f.sizes)}
        pieces = [[s, e, sorted([v.wid, v.shift] for v in vs)]
                  for s, e, vs in f.now.pieces(p.start, p.end)]  # fmt: skip
        return {"kind": "data", "file": file, "start": p.start, "end": p.end,
                "pieces": pieces}  # fmt: skip

    def relative(self, text: str) -> str:
        """``text`` with this run's write ids as the operations show them (#7, not
        #300007) and other runs' marked as such."""

        def show(m: re.Match[str]) -> str:
            wid = int(m.group(1))
            if wid - wid % WID_STRIDE == self.wid_base:
                return f"#{wid % WID_STRIDE}"
            return f"#{wid} (another run's data)"

        return re.sub(r"#(\d+)", show, text)

    # -- reads ----------------------------------------------------------------------------

    def check_read(self, index: int, op: Op, ret: Result, data: bytes,
                   also: frozenset[int] = frozenset()) -> Failure | None:  # fmt: skip
        """A read returned ``ret`` and ``data``: its length against i_size (or one of
        ``also``), its bytes against the oracle."""
        if self.ended:
            return None
        ino = self.inos[op.file]
        sizes = self.oracle.file(ino).sizes | also
        if ret < 0:
            if ret == EAGAIN and "NOWAIT" in op.flags:
                return None
            return self._result_failure(index, op, ret, f"the read failed with {_show(ret)}")
        want = {max(0, min(op.length, s - op.pos)) for s in sizes}
        if "NOWAIT" in op.flags and 0 < ret <= max(want):
            pass  # preadv2(2): RWF_NOWAIT returns what was read without waiting
        elif ret not in want:
            return self._result_failure(
                index, op, ret, f"the read returned {ret}, expected "
                f"{' or '.join(map(str, want))} (i_size {' or '.join(map(str, sorted(sizes)))})")
        return self._check_data(index, op, ret, ino, op.pos, data[:ret])

    def _result_failure(self, index: int, op: Op, ret: Result, message: str) -> Failure | None:
        """A result the contract does not allow: a failure, or None when it is an
        allowed finding (nothing changed, so the oracle stays as it is)."""
        size = max(self.oracle.file(self.inos[op.file]).sizes)
        name = classify(op, ret, "result", size=size)
        if name in self.allow:
            self.allowed[name] += 1
            self.ended = name.startswith("unexplained-")  # (what did it do?)
            return None
        expect = {"kind": "result", "file": op.file, "bad": ret, "why": message}
        return Failure(name, index, message, expect, self.wid_base)


def name_of(ino: int, inos: dict[str, int]) -> str:
    return next((name for name, i in inos.items() if i == ino), "")


def _show(ret: Result) -> str:
    """A result as the user reads it: a count, or -EFAULT."""
    return str(ret) if ret >= 0 else "-" + (errno_mod.errorcode.get(-ret) or str(-ret))


def _perform(r: FileRun, op: Op) -> Result:
    """Do ``op`` (not a read) on the backend."""
    b, name, k = r.backend, r.prefix + op.file, op.kind
    if k == "pwrite":
        return b.direct_write(name, op.pos, op.length, r.wid(op), op.flags, op.fault_at)
    if k == "bwrite":
        return b.buffered_write(name, op.pos, op.length, r.wid(op))
    if k in ("fsync", "fdatasync"):
        return b.fsync(name, k == "fdatasync")
    if k == "truncate":
        return b.truncate(name, op.pos)
    if k == "fallocate":
        return b.fallocate(name, op.pos, op.length, op.keep_size)
    if k == "punch":
        return b.punch(name, op.pos, op.length)
    if k == "zero_range":
        return b.zero_range(name, op.pos, op.length, op.keep_size)
    if k == "mmap_write":
        return b.mmap_write(name, op.pos, op.length, r.wid(op))
    if k == "reflink":
        return b.reflink(r.prefix + op.src, op.spos, name, op.pos, op.length)
    if k == "drop_cache":
        return b.drop_cache(name)
    if k == "remount":
        return b.remount()
    raise ValueError(f"not an operation FileRun performs: {op}")


def perform_unchecked(r: FileRun, op: Op) -> object:
    """Do ``op`` on the backend and check nothing (the raw side of bench/kernel.py)."""
    if op.kind in ("pread", "bread"):
        return _read(r, op)
    if op.kind in BATCHES:
        return r.backend.direct_batch(r.batch_requests(op), via=op.kind)
    return _perform(r, op)


def _read(r: FileRun, op: Op) -> tuple[Result, bytes]:
    name = r.prefix + op.file
    if op.kind == "pread":
        return r.backend.direct_read(name, op.pos, op.length, op.flags)
    return r.backend.buffered_read(name, op.pos, op.length)
