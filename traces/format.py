"""Trace format v1: reader, validator and writer (spec: /work/shared/trace-format.md).

``read_trace`` / ``parse_trace`` validate a whole file before returning it and raise
``TraceFormatError`` (file, line, problem) for the first thing wrong; a ``Trace`` is never
half valid. Line numbers are 1-based and count blank lines; line 0 means the file as a
whole (unreadable, or no header at all). The per-event field tables are in ``schema.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import attrs

from ..model.types import (
    BioEnd,
    Fault,
    Geometry,
    InvalidateResult,
    MapError,
    Mapping,
    Request,
    WritebackResult,
)
from .schema import (
    EVENT_FIELDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    GEOMETRY_KEYS,
    HEADER_KEYS,
    HEADER_OPTIONAL,
    INPUT_KINDS,
    OUTPUT_KINDS,
    OUTPUT_ORDER,
    Problem,
    check_event_fields,
    check_header,
    is_int,
    show,
)

__all__ = [
    "INPUT_KINDS",
    "OUTPUT_KINDS",
    "Event",
    "Header",
    "Trace",
    "TraceFormatError",
    "begin_to_request",
    "dump_line",
    "event_dict",
    "event_to_input",
    "header_dict",
    "parse_trace",
    "read_trace",
    "scan_trace",
    "write_trace",
]

_JSON_WHITESPACE = " \t\r\n"


class TraceFormatError(Exception):
    """A trace file is malformed: ``path``, ``line`` (1-based; 0: the whole file), ``problem``."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(path, line, problem)
        self.path = path
        self.line = line
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


@attrs.frozen
class Header:
    """The header line: engine, geometry and the informational fields."""

    engine: str
    geometry: Geometry
    observed: frozenset[str]  # output kinds recorded; all four when absent
    source: str | None
    fs: str | None
    kernel: str | None
    note: str | None
    raw: dict  # the header object as read


@attrs.frozen
class Event:
    """One event line; ``fields`` holds every key but "ev" and "req", as read."""

    line: int
    ev: str
    req: int | None  # None only for "file"
    fields: dict


@attrs.frozen
class Trace:
    path: str
    header: Header
    events: tuple[Event, ...]


# --------------------------------------------------------------------------- reading


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """Read and validate the trace file at ``path``."""
    name = str(os.fspath(path))
    items = scan_trace(path)
    header = next(items)
    assert isinstance(header, Header)
    return Trace(name, header, tuple(e for e in items if isinstance(e, Event)))


def scan_trace(path: str | os.PathLike[str]) -> Iterator[Header | Event]:
    """The header, then each event, validated as they are read: a streaming
    ``read_trace`` whose memory does not grow with the file. It raises
    ``TraceFormatError`` where ``read_trace`` would, when it gets there: a caller that acts
    on the events before the end must not report a result until the iterator ends."""
    name = str(os.fspath(path))
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below, also when abandoned
    except OSError as e:
        raise TraceFormatError(name, 0, f"cannot read file: {e.strerror or e}") from None

    def lines() -> Iterator[tuple[int, str]]:
        with fp:
            for number, raw in enumerate(fp, 1):
                raw = raw.removesuffix(b"\n")
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise TraceFormatError(
                        name,
                        number,
                        f"not valid UTF-8: byte 0x{raw[e.start]:02x} at column {e.start + 1}",
                    ) from None

    return _scan(lines(), name)


def parse_trace(lines: Iterable[str], path: str = "<string>") -> Trace:
    """Validate a trace given as lines (a single ``str`` is split at newlines)."""
    if isinstance(lines, str):
        lines = lines.split("\n")
    return _parse(enumerate(lines, 1), str(path))


def _parse(lines: Iterable[tuple[int, str]], path: str) -> Trace:
    items = _scan(lines, path)
    header = next(items)
    assert isinstance(header, Header)
    return Trace(path, header, tuple(e for e in items if isinstance(e, Event)))


def _scan(lines: Iterable[tuple[int, str]], path: str) -> Iterator[Header | Event]:
    header: Header | None = None
    requests = _Requests()
    for number, text in lines:
        if not text.strip(_JSON_WHITESPACE):
            continue
        try:
            obj = _load_object(text)
            if header is None:
                header = _make_header(obj)
                item: Header | Event = header
            else:
                item = _make_event(number, obj, header)
                requests.check(item, header)
        except Problem as p:
            raise TraceFormatError(path, number, str(p)) from None
        yield item
    if header is None:
        raise TraceFormatError(path, 0, "no header: the file has no non-blank line")


def parse_header(obj: dict[str, Any], path: str = "<header>") -> Header:
    """Validate a header given as a dict (line 1 of a trace)."""
    try:
        return _make_header(obj)
    except Problem as p:
        raise TraceFormatError(path, 1, str(p)) from None


def make_event(path: str, line: int, obj: dict[str, Any], header: Header) -> Event:
    """Validate one event given as a dict, as line ``line`` of a trace under ``header``
    (the per-request ordering checks of a whole file are not made)."""
    try:
        return _make_event(line, obj, header)
    except Problem as p:
        raise TraceFormatError(path, line, str(p)) from None


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise Problem(f"invalid JSON: {name} is not allowed (numbers must be integers)")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else f"the value {show(value)}"


def _load_object(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey as e:
        raise Problem(f'duplicate key "{e.args[0]}" in a JSON object') from None
    except json.JSONDecodeError as e:
        raise Problem(f"invalid JSON: {e.msg} at column {e.colno}") from None
    except ValueError as e:  # e.g. an integer with too many digits
        raise Problem(f"invalid JSON: {e}") from None
    except RecursionError:  # arrays or objects nested past the parser's stack
        raise Problem("invalid JSON: nested too deeply (no trace field nests)") from None
    if not isinstance(obj, dict):
        raise Problem(f"each line must be a JSON object, got {_json_kind(obj)}")
    return obj


def _make_header(obj: dict[str, Any]) -> Header:
    geometry, observed = check_header(obj)
    return Header(
        engine=obj["engine"],
        geometry=geometry,
        observed=observed,
        source=obj.get("source"),
        fs=obj.get("fs"),
        kernel=obj.get("kernel"),
        note=obj.get("note"),
        raw=obj,
    )


def _make_event(number: int, obj: dict[str, Any], header: Header) -> Event:
    if "ev" not in obj:
        if "format" in obj:
            raise Problem("a second header line: only the first line may be the header")
        raise Problem('missing "ev" field: every line after the header is an event')
    ev = obj["ev"]
    if not isinstance(ev, str) or ev not in EVENT_FIELDS:
        raise Problem(f"unknown event kind {show(ev)} (known: {', '.join(sorted(EVENT_FIELDS))})")
    req = None
    if ev != "file":
        if "req" not in obj:
            raise Problem(f'missing field "req" in "{ev}" event')
        req = obj["req"]
        if not is_int(req) or req < 0:
            raise Problem(f'field "req" must be a non-negative integer, got {show(req)}')
    fields = {k: v for k, v in obj.items() if k != "ev" and (k != "req" or ev == "file")}
    check_event_fields(ev, fields, header.engine, header.geometry)
    if ev in OUTPUT_KINDS and ev not in header.observed:
        raise Problem(f'"{ev}" event recorded but the header\'s observed list does not include it')
    return Event(number, ev, req, fields)


@attrs.define
class _Request:
    op: str
    begin: int  # line numbers
    observed: frozenset[str]
    bios: int = 0
    ended: dict[int, int] = attrs.Factory(dict)  # bio index -> bio_end line
    first_io: int | None = None  # first map or bio
    invalidate: int | None = None
    writeback: int | None = None


class _Requests:
    """Cross-line checks: begin first, nothing after complete, bio_end indexes."""

    def __init__(self) -> None:
        self.by_req: dict[int, _Request] = {}  # requests not complete yet
        self.done: dict[int, tuple[int, int]] = {}  # req -> lines of its begin, complete

    def check(self, event: Event, header: Header) -> None:
        ev, req, line = event.ev, event.req, event.line
        if req is None:
            return
        if ev == "syscall":
            self._check_syscall(event)
            return
        r = self.by_req.get(req)
        if r is None and req in self.done:
            begin, complete = self.done[req]
            if ev == "begin":
                raise Problem(f'duplicate "begin" for req {req} (first on line {begin})')
            if ev == "complete":
                raise Problem(f'duplicate "complete" for req {req} (first on line {complete})')
            raise Problem(f'"{ev}" event for req {req} after its "complete" (line {complete})')
        if ev == "begin":
            if r is not None:
                raise Problem(f'duplicate "begin" for req {req} (first on line {r.begin})')
            observed = frozenset(event.fields.get("observed", header.observed))
            if not observed <= header.observed:
                extra = sorted(observed - header.observed)
                raise Problem(
                    f'field "observed" of req {req} lists {extra}, which the header\'s '
                    "observed list does not include"
                )
            self.by_req[req] = _Request(event.fields["op"], line, observed)
            return
        if r is None:
            raise Problem(f'"{ev}" event for req {req} before its "begin"')
        if ev in OUTPUT_KINDS and ev not in r.observed:
            raise Problem(
                f'"{ev}" event recorded for req {req} but its begin\'s observed list '
                "does not include it"
            )
        if ev in ("invalidate", "writeback"):
            self._check_pre_io(ev, req, r, "write" if ev == "invalidate" else "read")
            setattr(r, ev, line)
        elif ev in ("map", "bio"):
            r.first_io = r.first_io or line
            r.bios += ev == "bio"
        elif ev == "bio_end":
            index = event.fields["index"]
            if "bio" in header.observed:
                if index >= r.bios:
                    raise Problem(
                        f'"bio_end" index {index} of req {req} refers to no "bio" seen so far '
                        f"(req {req} has {r.bios} bio(s) up to here)"
                    )
                if index in r.ended:
                    raise Problem(
                        f'duplicate "bio_end" for index {index} of req {req} '
                        f"(first on line {r.ended[index]})"
                    )
                r.ended[index] = line
        elif ev == "complete":
            del self.by_req[req]  # only its two line numbers are kept: memory stays flat
            self.done[req] = (r.begin, line)

    def _check_syscall(self, event: Event) -> None:
        reqs = event.fields["reqs"]
        if reqs[-1] != event.req:
            raise Problem(f'"syscall": the last of "reqs" {reqs} must be its req {event.req}')
        for req in reqs:
            if req not in self.by_req and req not in self.done:
                raise Problem(f'"syscall" lists req {req} before its "begin"')
        ops = {self.by_req[q].op if q in self.by_req else None for q in reqs} - {None}
        if len(ops) > 1:
            raise Problem(f'"syscall" lists both reads and writes: {reqs}')

    @staticmethod
    def _check_pre_io(ev: str, req: int, r: _Request, op: str) -> None:
        if r.op != op:
            raise Problem(
                f'{"an" if ev[0] in "aeiou" else "a"} "{ev}" event is only valid for a {op} '
                f"request (req {req} is a {r.op})"
            )
        earlier = getattr(r, ev)
        if earlier is not None:
            raise Problem(f'duplicate "{ev}" for req {req} (first on line {earlier})')
        if r.first_io is not None:
            raise Problem(
                f'"{ev}" must come before any "map" or "bio" of req {req} '
                f"(first on line {r.first_io})"
            )


# --------------------------------------------------------------------------- conversion


def begin_to_request(ev: Event) -> Request:
    """The model ``Request`` of a validated "begin" event."""
    if ev.ev != "begin":
        raise ValueError(f'line {ev.line}: expected a "begin" event, got "{ev.ev}"')
    f = ev.fields
    return Request(
        op=f["op"],
        pos=f["pos"],
        len=f["len"],
        done_before=f["done_before"],
        iocb=frozenset(f["iocb"]),
        dio=frozenset(f["dio"]),
        sync=f["sync"],
        cached_pages=f.get("cached_pages", False),
    )


def event_to_input(
    ev: Event,
) -> Mapping | MapError | InvalidateResult | WritebackResult | BioEnd | Fault:
    """The model input of a validated map/invalidate/writeback/fault/bio_end event."""
    f = ev.fields
    if ev.ev == "map":
        if "error" in f:
            return MapError(f["error"])
        return Mapping(f["offset"], f["length"], f["type"], frozenset(f["flags"]), f["addr"])
    if ev.ev == "invalidate":
        return InvalidateResult(f["ret"])
    if ev.ev == "writeback":
        return WritebackResult(f["ret"])
    if ev.ev == "fault":
        return Fault(f["at"], f.get("errno", -14))
    if ev.ev == "bio_end":
        return BioEnd(f["index"], f["status"])
    hint = ' (use begin_to_request for "begin")' if ev.ev == "begin" else ""
    raise ValueError(f'line {ev.line}: a "{ev.ev}" event is not an engine input{hint}')


# --------------------------------------------------------------------------- writing


def header_dict(engine: str, geometry: Geometry, **optional: Any) -> dict[str, Any]:
    """The canonical header object; ``optional``: source, fs, kernel, profile, observed, note.

    ``None`` values are left out; ``observed`` may be any iterable of output kinds.
    Raises ``ValueError`` when the result would not be a valid header.
    """
    header: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "engine": engine,
        "geometry": {key: getattr(geometry, key) for key in GEOMETRY_KEYS},
    }
    for key in optional:
        if key not in HEADER_OPTIONAL:
            raise ValueError(f"unknown header field {key!r}; allowed: {HEADER_OPTIONAL}")
    for key in HEADER_OPTIONAL:
        value = optional.get(key)
        if value is None:
            continue
        if key == "observed" and not isinstance(value, list):
            value = [k for k in OUTPUT_ORDER if k in set(value)] + sorted(set(value) - OUTPUT_KINDS)
        header[key] = value
    try:
        check_header(header)
    except Problem as p:
        raise ValueError(str(p)) from None
    return header


def event_dict(ev: Event) -> dict[str, Any]:
    """The JSON object of an event (inverse of reading it), in canonical key order."""
    obj: dict[str, Any] = {"ev": ev.ev} if ev.req is None else {"ev": ev.ev, "req": ev.req}
    obj.update(ev.fields)
    return _ordered(obj, ("ev", "req", *EVENT_FIELDS[ev.ev]))


def _ordered(obj: dict[str, Any], order: Iterable[str]) -> dict[str, Any]:
    """``obj`` with the keys in ``order`` first, then any others as they were."""
    out = {key: obj[key] for key in order if key in obj}
    out.update((key, value) for key, value in obj.items() if key not in out)
    return out


def dump_line(obj: dict[str, Any]) -> str:
    """One JSON line (no newline) for a header or event object, in canonical key order."""
    if "ev" in obj:
        order: tuple[str, ...] = ("ev", "req", *EVENT_FIELDS.get(obj["ev"], ()))
        return json.dumps(_ordered(obj, order))
    if "format" in obj:
        out = _ordered(obj, HEADER_KEYS)
        if isinstance(out.get("geometry"), dict):
            out["geometry"] = _ordered(out["geometry"], GEOMETRY_KEYS)
        return json.dumps(out)
    raise ValueError('neither a header (no "format" key) nor an event (no "ev" key)')


def write_trace(
    fp: TextIO, header: dict[str, Any], events: Iterable[dict[str, Any]], *, validate: bool = True
) -> None:
    """Write ``header`` then ``events``, one line each.

    With ``validate`` (the default) the lines are checked as ``parse_trace`` would before
    anything is written, so a written trace always reads back (``TraceFormatError`` with
    path "<write_trace>" otherwise).
    """
    lines = [dump_line(header), *(dump_line(e) for e in events)]
    if validate:
        parse_trace(lines, path="<write_trace>")
    fp.write("".join(line + "\n" for line in lines))
