"""The data the conformance suite writes, and telling it apart from anything else.

Every write has a write id ``wid`` (``1 <= wid < 2**32``) and its bytes are a function of
``(wid, absolute file offset)``, so nobody has to keep payloads in memory. The file is cut
into 16-byte units; unit ``u`` (file bytes ``[16u, 16u + 16)``) written by ``wid`` holds::

    b"DIOW" + wid.to_bytes(4, "little") + u.to_bytes(8, "little")

A write of ``[pos, pos + len)`` holds the matching slice (any ``pos`` and ``len``). Data
moved by a reflink keeps the bytes of its source offset: ``shifted(wid, shift, pos, n)``
are the bytes at ``[pos, pos + n)`` of data written at ``pos + shift``.

``describe`` and ``is_foreign`` decode a buffer back into runs of zeros, writes (with their
shift) and *foreign* bytes — neither zeros nor any write's pattern: stale data. The decoder
is greedy: at each position it takes the hypothesis that matches the longest, comparing in
bulk. Hypotheses are zeros, the caller's hints, writes anchored by a ``DIOW`` magic within
16 bytes, and the write the unit's own bytes name (see ``_self_hyps`` for its limits). Since
every suffix of a run is itself a run, taking the longest match never leaves bytes
unexplained that another split among these would explain. ``is_foreign`` reports at unit
granularity: a unit (or the partial unit at an edge of the buffer) with any unexplained byte
is foreign as a whole. A foreign stretch is skipped in bulk to the next unit where some
hypothesis could start.
"""

from __future__ import annotations

import functools
import sys
from array import array
from collections.abc import Iterable

__all__ = [
    "MAGIC",
    "STALE_LABEL",
    "UNIT",
    "ZERO_LABEL",
    "describe",
    "is_foreign",
    "label",
    "pattern",
    "shifted",
    "summary",
]

UNIT = 16
MAGIC = b"DIOW"
WID_LIMIT = 1 << 32
POS_LIMIT = 1 << 64  # units are numbered with 8 bytes
ZERO_LABEL = "zeros"
STALE_LABEL = "stale/never written"

_MAGIC_INT = int.from_bytes(MAGIC, "little")
_BIG_ENDIAN = sys.byteorder == "big"
_MAX_STEP = 1 << 20  # largest chunk compared at once while extending a run
_DECODE_LIMIT = 1 << 63  # no file byte is at or past this offset: no unit number >= 2**59
# a moved run through a unit has the next unit's magic and wid (an anchor) within this
# many bytes after the unit, unless the buffer ends first
_TAIL = 7

Hyp = tuple[int, int]  # (wid, shift); (0, 0) means zeros
_ZERO: Hyp = (0, 0)


def _check_wid(wid: int) -> None:
    if isinstance(wid, bool) or not isinstance(wid, int) or not 1 <= wid < WID_LIMIT:
        raise ValueError(f"wid must be an integer in [1, 2**32), got {wid!r}")


def _check_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


@functools.lru_cache(maxsize=32)
def _units(wid: int, first: int, last: int) -> bytes:
    """Units ``[first, last)`` of write ``wid``, built as one array of 64-bit words (the
    last few kept: a write's data is built again for every check of it)."""
    n = last - first
    words = array("Q", bytes(UNIT * n))
    words[0::2] = array("Q", [_MAGIC_INT | wid << 32]) * n
    words[1::2] = array("Q", range(first, last))
    if _BIG_ENDIAN:
        words.byteswap()
    return words.tobytes()


def pattern(wid: int, pos: int, length: int) -> bytes:
    """The ``length`` bytes write ``wid`` puts at file offset ``pos``."""
    _check_wid(wid)
    _check_int("pos", pos)
    _check_int("length", length)
    if pos + length > POS_LIMIT:
        raise ValueError(f"pos {pos} + length {length} exceeds 2**64")
    if length == 0:
        return b""
    first, last = pos // UNIT, -(-(pos + length) // UNIT)
    data = _units(wid, first, last)
    head = pos - first * UNIT
    return data if head == 0 and len(data) == length else data[head : head + length]


def shifted(wid: int, shift: int, pos: int, length: int) -> bytes:
    """Bytes at ``[pos, pos + length)`` of data written at ``pos + shift`` and moved by ``shift``.

    A reflink from ``src`` to ``dst`` moves data by ``shift = src - dst``.
    """
    if isinstance(shift, bool) or not isinstance(shift, int):
        raise ValueError(f"shift must be an integer, got {shift!r}")
    _check_int("pos", pos)
    if pos + shift < 0:
        raise ValueError(f"pos {pos} + shift {shift} is before the start of the file")
    return pattern(wid, pos + shift, length)


def label(wid: int, shift: int, start: int) -> str:
    """Human name of the value ``(wid, shift)`` for a run starting at ``start``."""
    if wid == 0:
        return ZERO_LABEL
    if shift == 0:
        return f"write #{wid}"
    return f"write #{wid} (from offset {start + shift})"


# --------------------------------------------------------------------------- decoding


def _expected(hyp: Hyp, at: int, n: int) -> bytes | None:
    """What ``hyp`` puts at absolute ``[at, at + n)``; None when it has no bytes there."""
    wid, shift = hyp
    if wid == 0:
        return bytes(n)
    src = at + shift
    if src < 0 or src + n > _DECODE_LIMIT:
        return None
    return pattern(wid, src, n)


def _first_diff(a: bytes, b: bytes) -> int:
    """Length of the common prefix of two different, equally long byte strings."""
    lo, hi = 0, len(a)  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _match_end(data: bytes, pos: int, p: int, hyp: Hyp) -> int:
    """End (buffer index) of the longest run of ``hyp`` in ``data`` starting at index ``p``."""
    n = len(data)
    step = 4 * UNIT
    while p < n:
        q = min(n, p + step)
        exp = _expected(hyp, pos + p, q - p)
        if exp is None:
            return p
        chunk = data[p:q]
        if chunk != exp:
            return p + _first_diff(chunk, exp)
        p = q
        step = min(2 * step, _MAX_STEP)
    return n


def _anchors(data: bytes, pos: int, lo: int, hi: int) -> list[Hyp]:
    """Write hypotheses read from every magic starting in ``data[lo:hi]``.

    A magic at absolute offset ``x`` followed by a wid gives ``(wid, 0)`` and the shift its
    unit number says; unit-number bytes cut off by the end of the buffer are taken from
    ``x // 16`` (exact for data that was not moved).
    """
    out: list[Hyp] = []
    n = len(data)
    i = data.find(MAGIC, max(lo, 0), min(hi, n))
    while i >= 0:
        if i + 8 <= n:
            wid = int.from_bytes(data[i + 4 : i + 8], "little")
            if wid:
                x = pos + i
                k = min(8, n - i - 8)
                bits = 8 * k
                unit = ((x // UNIT) >> bits << bits) | int.from_bytes(
                    data[i + 8 : i + 8 + k], "little"
                )
                out.append((wid, 0))
                out.append((wid, UNIT * unit - x))
        i = data.find(MAGIC, i + 1, min(hi, n))
    return out


def _self_hyps(data: bytes, pos: int, p: int) -> list[Hyp]:
    """Writes that would put ``data[p:]``'s bytes in the rest of their (destination) unit.

    This explains runs too short to hold a magic: small writes, what later writes left of a
    reflinked block, and buffer edges. The run is assumed to go on to the end of the unit
    (its wid and unit number are read there); a shorter one needs a hint. Inside the buffer
    the source must be at the same offset in its unit (a shift that is a multiple of 16, as
    every block-aligned reflink's). In a unit at an edge of the buffer (first, cut, or too
    close to the end for the next magic and wid to fit) every alignment is tried.
    """
    x = pos + p
    first = x % UNIT
    known = data[p : p + UNIT - first]
    if p and p + len(known) + _TAIL <= len(data) and first + len(known) == UNIT:
        # not at an edge: a run moved by other than a multiple of 16 has an anchor in reach
        return _solve(known, x, first)
    out: list[Hyp] = []
    for r in range(UNIT):
        out += _solve(known, x, r)
    return out


def _solve(known: bytes, x: int, r: int) -> list[Hyp]:
    """Writes whose bytes at ``x, x + 1, ...`` could be ``known``, if ``x + shift`` is at offset
    ``r`` of its unit (``known`` spans at most two source units)."""
    wid_bytes: list[int | None] = [None] * 4
    units: list[list[int | None]] = [[None] * 8, [None] * 8]  # number of unit a and a + 1
    for i, b in enumerate(known):
        second, o = divmod(r + i, UNIT)
        if o < 4:
            if b != MAGIC[o]:
                return []
        elif o < 8:
            if wid_bytes[o - 4] not in (None, b):
                return []
            wid_bytes[o - 4] = b
        else:
            units[second][o - 8] = b
    wid = sum((b or 0) << (8 * k) for k, b in enumerate(wid_bytes))
    if wid == 0:
        missing = [k for k, b in enumerate(wid_bytes) if b is None]
        if not missing:
            return []
        wid = 1 << (8 * missing[0])  # any value will do: those bytes are not compared
    guess = x // UNIT  # unit-number bytes the buffer does not hold: about here
    found = set()
    for k, nums in enumerate(units):
        own = (guess + k).to_bytes(8, "little")
        num = int.from_bytes(
            bytes(own[j] if b is None else b for j, b in enumerate(nums)), "little"
        )
        found.add(num - k)
    return [(wid, UNIT * a + r - x) for a in sorted(found)]


class _Skipper:
    """Finds the next unit start in a foreign stretch where some hypothesis could begin.

    At a unit start ``p``, zeros need ``data[p] == 0``, anchored and self hypotheses need a
    magic within 16 bytes (or a unit at the end of the buffer), and a hint whose shift is
    ``0..7`` modulo 16 needs its constant first byte (magic or wid). Hints with other shifts
    start with a unit-number byte, which varies: then nothing is skipped.
    """

    def __init__(self, data: bytes, pos: int, hints: list[Hyp]) -> None:
        self.data = data
        self.first = -pos % UNIT  # buffer index of the first unit start
        self.firsts = data[self.first :: UNIT]  # first byte of each unit
        # units from here on are near the end: their runs may lack a whole magic
        near_end = len(data) - UNIT - _TAIL - self.first + 1
        self.last = self.first + max(0, -(-near_end // UNIT)) * UNIT
        leads = {0}
        self.exact = True
        for wid, shift in hints:
            k = shift % UNIT
            if wid == 0:
                continue
            if k < 8:
                leads.add((MAGIC + wid.to_bytes(4, "little"))[k])
            else:
                self.exact = False
        self.leads = [bytes([b]) for b in sorted(leads)]
        self.found: dict[bytes, tuple[int, int]] = {}  # needle -> (searched from, found at)

    def _find(self, where: bytes, needle: bytes, start: int) -> int:
        """``where.find(needle, start)``, remembering the answer (searches only go forward)."""
        since, at = self.found.get(needle, (len(where) + 1, -1))
        if not (since <= start and (at == -1 or at >= start)):
            since, at = start, where.find(needle, start)
            self.found[needle] = (since, at)
        return at

    def next_start(self, p: int) -> int:
        """The first unit start ``>= p`` (a unit start) where a run could begin."""
        if not self.exact or p >= self.last:
            return p
        k = (p - self.first) // UNIT
        best = self.last
        for lead in self.leads:
            j = self._find(self.firsts, lead, k)
            if j >= 0:
                best = min(best, self.first + j * UNIT)
        m = self._find(self.data, MAGIC, p)
        if m >= 0:
            best = min(best, max(p, (m - UNIT - self.first) // UNIT * UNIT + self.first))
        return best


def _segments(data: bytes, pos: int, hints: Iterable[Hyp]) -> list[tuple[int, int, Hyp | None]]:
    """Split ``data`` (read at ``pos``) into maximal runs, buffer-relative; None = foreign."""
    hint_list = [(w, s if w else 0) for w, s in hints]
    skipper: _Skipper | None = None
    out: list[tuple[int, int, Hyp | None]] = []
    n = len(data)
    p = 0
    while p < n:
        best, best_end = None, p
        seen: set[Hyp] = set()
        anchors = _anchors(data, pos, p - UNIT + 1, p + UNIT + 4)
        for hyp in [*hint_list, _ZERO, *anchors, *_self_hyps(data, pos, p)]:
            if hyp in seen:
                continue
            seen.add(hyp)
            end = _match_end(data, pos, p, hyp)
            if end > best_end:
                best, best_end = hyp, end
        if best is None:  # nothing starts here: foreign up to a unit where something may
            best_end = min(n, (pos + p) // UNIT * UNIT + UNIT - pos)
            if best_end < n:
                skipper = skipper or _Skipper(data, pos, hint_list)
                best_end = skipper.next_start(best_end)
        if out and out[-1][2] == best and out[-1][1] == p:
            out[-1] = (out[-1][0], best_end, best)
        else:
            out.append((p, best_end, best))
        p = best_end
    return out


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


def describe(
    data: bytes | bytearray | memoryview, pos: int, hints: Iterable[Hyp] = ()
) -> list[tuple[int, int, str]]:
    """Runs ``[start, end)`` (absolute offsets) of ``data`` read at ``pos``, with a label.

    Labels: ``"zeros"``, ``"write #7"``, ``"write #7 (from offset X)"`` for moved data (X is
    where the run's first byte was written) and ``"stale/never written"`` for the rest.
    ``hints`` are ``(wid, shift)`` values worth trying first (e.g. what the oracle expected).
    """
    _check_int("pos", pos)
    buf = _as_bytes(data)
    return [
        (pos + a, pos + b, STALE_LABEL if hyp is None else label(*hyp, pos + a))
        for a, b, hyp in _segments(buf, pos, hints)
    ]


def is_foreign(
    data: bytes | bytearray | memoryview, pos: int, hints: Iterable[Hyp] = ()
) -> list[tuple[int, int]]:
    """Absolute ranges of ``data`` (read at ``pos``) that are neither zeros nor any write.

    Unit granular: each 16-byte unit of the file (clipped to the buffer at its edges) that
    holds any byte no hypothesis explains is reported whole; adjacent units are merged.
    """
    _check_int("pos", pos)
    buf = _as_bytes(data)
    end = pos + len(buf)
    out: list[tuple[int, int]] = []
    for a, b, hyp in _segments(buf, pos, hints):
        if hyp is not None:
            continue
        start = max(pos, (pos + a) // UNIT * UNIT)
        stop = min(end, -(-(pos + b) // UNIT) * UNIT)
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def summary(data: bytes | bytearray | memoryview, pos: int, hints: Iterable[Hyp] = ()) -> str:
    """``describe`` as one phrase: ``"write #3"``, or ``"zeros at [0, 512), write #3 at ..."``."""
    runs = describe(data, pos, hints)
    if not runs:
        return "nothing"
    if len(runs) == 1:
        return runs[0][2]
    shown = [f"{lab} at [{s}, {e})" for s, e, lab in runs[:6]]
    if len(runs) > 6:
        shown.append(f"and {len(runs) - 6} more runs")
    return ", ".join(shown)
