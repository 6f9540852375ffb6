"""The file-level oracle: what a file may contain now, and what survives a crash.

The conformance suite writes only data from ``pattern.py``, so a byte's value is a
``Value(wid, shift)`` — write ``wid``'s pattern moved by ``shift`` (a reflink) — or ``ZERO``
(holes, unwritten extents, space past an old EOF). Per file, ``FileOracle`` keeps sparse
interval maps (``oracle_map.py``) from byte ranges to *candidate sets*:

- ``now``: what a read may return; one value normally, several after a write that failed
  (its bios may or may not have landed) or after a crash;
- ``since_sync``: what the byte may hold after a crash: its durable value plus every value it
  held since it was last made durable; always a superset of ``now``;
- ``sizes`` and ``sizes_since_sync``: the same for i_size.

Memory is proportional to the number of operations, never to the file size; nothing is
stored at or after the largest candidate size of ``now`` (space past EOF reads as ZERO
when a later operation extends the file). Where the oracle cannot tell which candidate is
real it keeps all of them; ``observe``/``observe_size`` narrow them once a read has shown
what the implementation chose, and ``settle`` ends a crash's uncertainty.

Reads are checked per map range and candidate in bulk; only on a miss does the check go
sector by sector: bios are sector-atomic, so a range may be torn between candidates at
512-byte boundaries, but each sector of one range must be one candidate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs
from attrs import field, frozen

from .evolve import evolve
from .oracle_map import IntervalMap
from .oracle_state import SECTOR, ZERO, FileOracle, Value, expected_bytes, match_piece
from .pattern import is_foreign, label, summary
from .types import LOFF_MAX

__all__ = ["SECTOR", "ZERO", "FileOracle", "Oracle", "Problem", "Value"]

KINDS = ("stale", "mismatch", "lost", "size")

Contents = list[tuple[int, int, frozenset[Value]]]


@frozen
class Problem:
    """One way an observation disagrees with the oracle."""

    ino: int
    start: int
    end: int
    kind: str = field(validator=attrs.validators.in_(KINDS))
    message: str

    def __str__(self) -> str:
        return self.message


def _int(op: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{op}: {name} must be a non-negative integer, got {value!r}")
    return value


def _range(op: str, pos: object, length: object) -> tuple[int, int]:
    """``[pos, pos + length)`` validated as a file range."""
    start, n = _int(op, "pos", pos), _int(op, "length", length)
    if start + n > LOFF_MAX:
        raise ValueError(f"{op}: pos {start} + length {n} exceeds the loff_t limit 2**63 - 1")
    return start, start + n


def _wid(op: str, wid: object) -> int:
    if isinstance(wid, bool) or not isinstance(wid, int) or not 1 <= wid < 1 << 32:
        raise ValueError(f"{op}: wid must be an integer in [1, 2**32), got {wid!r}")
    return wid


def _labels(values: Iterable[Value], start: int) -> str:
    return " or ".join(label(v.wid, v.shift, start) for v in sorted(values))


def _freeze(files: Mapping[int, FileOracle]) -> Mapping[int, FileOracle]:
    return files if isinstance(files, MappingProxyType) else MappingProxyType(dict(files))


@frozen(repr=False)
class Oracle:
    """All files of the system under test, by inode number; every operation returns a copy."""

    files: Mapping[int, FileOracle] = field(factory=dict, converter=_freeze)

    # -- helpers --------------------------------------------------------------------------

    def file(self, ino: int, op: str = "file") -> FileOracle:
        """The oracle of inode ``ino``."""
        try:
            return self.files[ino]
        except (KeyError, TypeError):
            raise ValueError(f"{op}: unknown inode {ino!r}") from None

    def _with(self, ino: int, f: FileOracle, note: str) -> Oracle:
        return Oracle(MappingProxyType({**self.files, ino: f.noted(note)}))

    # -- operations -----------------------------------------------------------------------

    def create(self, ino: int) -> Oracle:
        """A new empty file (size 0)."""
        _int("create", "ino", ino)
        if ino in self.files:
            raise ValueError(f"create: inode {ino} already exists")
        return self._with(ino, FileOracle(), "create")

    def direct_write(
        self,
        ino: int,
        pos: int,
        length: int,
        wid: int,
        ret: int,
        *,
        durable: bool,
        granule: int = 0,
    ) -> Oracle:
        """A direct write of ``length`` bytes of write ``wid`` at ``pos`` returned ``ret``.

        ``durable``: the write was O_DSYNC/O_SYNC (it only counts when ``ret > 0``).
        ``granule``: part of it may have gone through the page cache (a buffered
        fallback), so see `buffered_write`.
        """
        start, end = _range("direct_write", pos, length)
        _wid("direct_write", wid)
        if isinstance(ret, bool) or not isinstance(ret, int) or ret > end - start:
            raise ValueError(
                f"direct_write: ret must be an integer <= length {length}, got {ret!r}"
            )
        f = self.file(ino, "direct_write")
        note = f"direct write #{wid} [{start}, {end}) ret {ret}" + (" durable" if durable else "")
        return self._with(ino, f.direct_write(start, end, wid, ret, durable, granule), note)

    def buffered_write(
        self, ino: int, pos: int, length: int, wid: int, granule: int = 0
    ) -> Oracle:
        """A buffered write of ``length`` bytes of write ``wid`` at ``pos`` (not durable).

        ``granule``: writeback writes pages of this size, and the on-disk i_size follows
        the data it writes (xfs_setfilesize at ioend): if the write grew the file, a crash
        may find any of the granule boundaries between the old and new i_size.
        """
        start, end = _range("buffered_write", pos, length)
        _wid("buffered_write", wid)
        f = self.file(ino, "buffered_write")
        note = f"buffered write #{wid} [{start}, {end})"
        return self._with(ino, f.direct_write(start, end, wid, end - start, False, granule), note)

    def dirtied(self, ino: int, pos: int, length: int) -> Oracle:
        """``[pos, pos + length)`` is dirty in the page cache (an mmap write): contents
        unchanged, but its writeback may move the on-disk i_size up to its end, clamped
        to i_size (xfs_setfilesize at ioend, ext4's i_disksize at writeback)."""
        start, end = _range("dirtied", pos, length)
        f = self.file(ino, "dirtied")
        return self._with(ino, f.disk_size_at([end]), f"dirtied [{start}, {end})")

    def truncate(self, ino: int, size: int) -> Oracle:
        """ftruncate to ``size``."""
        new, _ = _range("truncate", size, 0)
        return self._with(ino, self.file(ino, "truncate").truncate(new), f"truncate {new}")

    def may_be_zeroed(self, ino: int, pos: int, length: int) -> Oracle:
        """``[pos, pos + length)`` may read as zeros as well as what it held: where the
        seed itself may zero data it wrote (a known quirk the caller names)."""
        start, end = _range("may_be_zeroed", pos, length)
        f = self.file(ino, "may_be_zeroed")
        return self._with(ino, f.may_be_zeroed(start, end), f"may be zeroed [{start}, {end})")

    def punch(self, ino: int, pos: int, length: int) -> Oracle:
        """fallocate(PUNCH_HOLE | KEEP_SIZE): ``[pos, pos + length)`` reads as zeros."""
        start, end = _range("punch", pos, length)
        f = self.file(ino, "punch")
        return self._with(ino, f.punch(start, end), f"punch [{start}, {end})")

    def fallocate(self, ino: int, pos: int, length: int, keep_size: bool) -> Oracle:
        """fallocate (mode 0 or KEEP_SIZE): contents unchanged, the size may grow."""
        start, end = _range("fallocate", pos, length)
        f = self.file(ino, "fallocate")
        if keep_size or start == end:
            return self._with(ino, f, f"fallocate [{start}, {end}) keep_size")
        return self._with(ino, f.grown(end), f"fallocate [{start}, {end})")

    def reflink(self, src: int, spos: int, dst: int, dpos: int, length: int) -> Oracle:
        """FICLONERANGE: ``dst[dpos, dpos + length)`` gets ``src[spos, ...)``'s current data.

        Bytes past the source's EOF are copied as what they read as: zeros.
        """
        s0, s1 = _range("reflink", spos, length)
        d0, d1 = _range("reflink", dpos, length)
        pieces = self.file(src, "reflink").now.pieces(s0, s1)
        d = s0 - d0  # data at dst offset x comes from x + d
        moved = [(s - d, e - d, frozenset(v.moved(d) for v in vs)) for s, e, vs in pieces]
        f = self.file(dst, "reflink")
        note = f"reflink ino {src} [{s0}, {s1}) -> [{d0}, {d1})"
        return self._with(dst, f.reflinked(d0, d1, moved), note)

    def fsync(self, ino: int) -> Oracle:
        """fsync: everything now is durable."""
        f = self.file(ino, "fsync")
        return self._with(ino, evolve(f, since_sync=f.now, sizes_since_sync=f.sizes), "fsync")

    def crash(self) -> Oracle:
        """Power loss and remount: each file holds any of its ``since_sync`` candidates."""
        return Oracle(
            MappingProxyType(
                {ino: f.crashed_copy().noted("crash") for ino, f in self.files.items()}
            )
        )

    # -- narrowing ------------------------------------------------------------------------

    def observe_size(self, ino: int, size: int) -> Oracle:
        """The implementation's i_size is ``size`` (one of the candidates)."""
        f = self.file(ino, "observe_size")
        if size not in f.sizes:
            raise ValueError(f"observe_size: {size!r} is not a candidate size of inode {ino}")
        new = evolve(f, sizes=frozenset({size}), now=f.now.truncate(size))
        return self._with(ino, new, f"observed size {size}")

    def observe(self, ino: int, pos: int, data: bytes | bytearray | memoryview) -> Oracle:
        """A read of ``[pos, ...)`` returned ``data``: keep only the candidates it matches."""
        start, end = _range("observe", pos, len(data))
        f = self.file(ino, "observe")
        buf = data if isinstance(data, bytes) else bytes(data)
        now = f.now
        for s, e, cands in f.now.pieces(start, end):
            parts = match_piece(s, e, cands, buf[s - start : e - start])
            if any(not m for _, _, m in parts):
                a, b, _ = next(p for p in parts if not p[2])
                raise ValueError(
                    f"observe: inode {ino} [{a}, {b}) matches none of its candidates "
                    f"({_labels(cands, s)}); check_read it first"
                )
            if len(parts) > 1 or parts[0][2] != cands:
                now = now.splice(s, e, parts)
        return self._with(ino, evolve(f, now=now), f"observed [{start}, {end})")

    def settle(self, ino: int) -> Oracle:
        """A crash has been fully observed: what is now is durable and certain."""
        f = self.file(ino, "settle")
        new = evolve(f, since_sync=f.now, sizes_since_sync=f.sizes, crashed=IntervalMap(False))
        return self._with(ino, new, "settled")

    # -- checks ---------------------------------------------------------------------------

    def check_size(self, ino: int, size: int) -> list[Problem]:
        """Problems with i_size being ``size``."""
        _int("check_size", "size", size)
        f = self.file(ino, "check_size")
        if size in f.sizes:
            return []
        want = " or ".join(str(s) for s in sorted(f.sizes))
        lo, hi = min(size, *f.sizes), max(size, *f.sizes)
        msg = f"inode {ino}: i_size is {size}, but the oracle expects {want}"
        return [Problem(ino, lo, hi, "size", msg + ".")]

    def check_read(self, ino: int, pos: int, data: bytes | bytearray | memoryview) -> list[Problem]:
        """Problems with a read of ``[pos, pos + len(data))`` having returned ``data``."""
        start, end = _range("check_read", pos, len(data))
        f = self.file(ino, "check_read")
        buf = data if isinstance(data, bytes) else bytes(data)
        bad: list[tuple[int, int, str, Contents]] = []
        for s, e, cands in f.now.pieces(start, end):
            piece = buf[s - start : e - start]
            if any(piece == expected_bytes(v, s, e - s) for v in cands):
                continue
            for a, b, m in match_piece(s, e, cands, piece):
                if m:
                    continue
                for a2, b2, kind in self._kinds(f, buf, start, a, b):
                    if bad and bad[-1][1] == a2 and bad[-1][2] == kind:
                        s0, _, _, parts = bad[-1]
                        if parts[-1][2] == cands:
                            parts = [*parts[:-1], (parts[-1][0], b2, cands)]
                        else:
                            parts = [*parts, (a2, b2, cands)]
                        bad[-1] = (s0, b2, kind, parts)
                    else:
                        bad.append((a2, b2, kind, [(a2, b2, cands)]))
        return [self._problem(ino, buf, start, *b) for b in bad]

    def _kinds(
        self, f: FileOracle, buf: bytes, start: int, a: int, b: int
    ) -> list[tuple[int, int, str]]:
        """``[a, b)`` (bad sectors) cut into stale, lost and mismatched ranges.

        A sector with a foreign unit is stale; else lost where the crash decided the
        candidates; else a mismatch.
        """
        lo, hi = max(start, a - 16), min(start + len(buf), b + 16)  # a unit of context
        hints = {(v.wid, v.shift) for _, _, vs in f.now.stored(lo, hi) for v in vs}
        stale: list[tuple[int, int]] = []
        for s, e in is_foreign(buf[lo - start : hi - start], lo, sorted(hints)):
            s, e = max(a, s // SECTOR * SECTOR), min(b, -(-e // SECTOR) * SECTOR)
            if s >= e:
                continue
            if stale and stale[-1][1] >= s:
                stale[-1] = (stale[-1][0], max(e, stale[-1][1]))
            else:
                stale.append((s, e))
        out: list[tuple[int, int, str]] = []

        def add(s: int, e: int, kind: str) -> None:
            if s < e:
                if out and out[-1][1] == s and out[-1][2] == kind:
                    out[-1] = (out[-1][0], e, kind)
                else:
                    out.append((s, e, kind))

        def not_stale(s: int, e: int) -> None:
            for c0, c1, _ in f.crashed.stored(s, e) if s < e else ():
                add(s, c0, "mismatch")
                add(c0, c1, "lost")
                s = c1
            add(s, e, "mismatch")

        pos = a
        for s, e in stale:
            not_stale(pos, s)
            add(s, e, "stale")
            pos = e
        not_stale(pos, b)
        return out

    def _problem(
        self, ino: int, buf: bytes, start: int, a: int, b: int, kind: str, parts: list
    ) -> Problem:
        hints = sorted({(v.wid, v.shift) for _, _, vs in parts for v in vs})
        got = summary(buf[a - start : b - start], a, hints)
        if len(parts) == 1:
            want = _labels(parts[0][2], a)
        else:
            want = "; ".join(f"{_labels(vs, s)} at [{s}, {e})" for s, e, vs in parts[:6])
        return Problem(ino, a, b, kind, _sentence(ino, a, b, kind, got, want))

    def check_sparse(
        self, ino: int, size: int, extents: Iterable[tuple[int, bytes | bytearray | memoryview]]
    ) -> list[Problem]:
        """Problems with the whole file: i_size ``size``, data ``extents``, zeros elsewhere.

        ``extents`` are ``(offset, data)``, sorted, disjoint and inside ``[0, size)``; the gaps
        are checked against the map's stored ranges only, so holes are never materialised.
        """
        _int("check_sparse", "size", size)
        f = self.file(ino, "check_sparse")
        problems = self.check_size(ino, size)
        gaps: list[tuple[int, int]] = []
        pos = 0
        for off, data in extents:
            s, e = _range("check_sparse", off, len(data))
            if s < pos or e > size:
                raise ValueError(
                    f"check_sparse: extent [{s}, {e}) overlaps the previous one, is out of "
                    f"order or ends past size {size}"
                )
            gaps.append((pos, s))
            problems += self.check_read(ino, s, data)
            pos = e
        gaps.append((pos, size))
        for g0, g1 in gaps:
            for s, e, cands in f.now.stored(g0, g1) if g0 < g1 else ():
                if ZERO in cands:
                    continue
                kind = "lost" if f.crashed.stored(s, e) else "mismatch"
                msg = _sentence(ino, s, e, kind, "a hole (zeros)", _labels(cands, s))
                problems.append(Problem(ino, s, e, kind, msg))
        problems.sort(key=lambda p: (p.start, p.end))
        return problems

    # -- inspection -----------------------------------------------------------------------

    def contents(self, ino: int) -> Contents:
        """The stored ranges of ``now``: ``(start, end, candidates)``; the rest is ZERO."""
        return list(self.file(ino, "contents").now.items())

    def story(self, ino: int | None = None) -> str:
        """A few lines on one file (or all): sizes, contents, what a crash may undo, history."""
        inos = sorted(self.files) if ino is None else [ino]
        return "\n".join(self.file(i, "story").story(i) for i in inos)

    def __repr__(self) -> str:
        files = ", ".join(
            f"{ino}: size {'|'.join(map(str, sorted(f.sizes)))}, {len(f.now)} ranges"
            for ino, f in sorted(self.files.items())
        )
        return f"Oracle({{{files}}})"


def _sentence(ino: int, a: int, b: int, kind: str, got: str, want: str) -> str:
    where = f"inode {ino} [{a}, {b})"
    if kind == "stale":
        return f"{where} exposes stale data: read {got}, expected {want}."
    if kind == "lost":
        return f"{where} lost data that had to survive the crash: read {got}, expected {want}."
    return f"{where} holds the wrong data: read {got}, expected {want}."
