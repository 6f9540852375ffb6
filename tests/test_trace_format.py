"""Tests of trace format v1: reading, validation errors, conversion and writing."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from dioconf.model.types import (
    BioEnd,
    Fault,
    Geometry,
    InvalidateResult,
    MapError,
    Mapping,
    Request,
    WritebackResult,
)
from dioconf.traces.format import (
    INPUT_KINDS,
    OUTPUT_KINDS,
    Event,
    TraceFormatError,
    begin_to_request,
    dump_line,
    event_dict,
    event_to_input,
    header_dict,
    parse_trace,
    read_trace,
    write_trace,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "trace-examples"

GEOMETRY = {
    "fs_block_size": 4096,
    "logical_block_size": 512,
    "page_size": 4096,
    "write_cache": True,
    "fua": False,
}


def header(engine: str = "iomap", **extra: Any) -> str:
    obj = {"format": "dioconf-trace", "version": 1, "engine": engine, "geometry": GEOMETRY}
    obj.update(extra)
    return json.dumps(obj)


def geometry_header(**changes: Any) -> str:
    return header(geometry={**GEOMETRY, **changes})


FILE = '{"ev": "file", "i_size": 65536}'
READ = (
    '{"ev": "begin", "req": 1, "op": "read", "pos": 0, "len": 8192, "done_before": 0, '
    '"iocb": [], "dio": [], "sync": true}'
)
WRITE = READ.replace('"read"', '"write"')
MAP = (
    '{"ev": "map", "req": 1, "offset": 0, "length": 65536, "type": "MAPPED", "flags": [], '
    '"addr": 1048576}'
)
BIO = '{"ev": "bio", "req": 1, "op": "read", "addr": 1048576, "len": 8192, "fua": false}'
BIO_END = '{"ev": "bio_end", "req": 1, "index": 0, "status": 0}'
COMPLETE = '{"ev": "complete", "req": 1, "ret": 8192}'


def begin(**changes: Any) -> str:
    obj = json.loads(READ)
    obj.update(changes)
    return json.dumps(obj)


def mapping(**changes: Any) -> str:
    obj = json.loads(MAP)
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v != "DROP"})


def write_file(tmp_path: Path, lines: list[str | bytes]) -> Path:
    path = tmp_path / "t.jsonl"
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- valid traces


def example_files() -> list[Path]:
    if not EXAMPLES.is_dir():
        pytest.skip(f"shared trace examples not found at {EXAMPLES}")
    files = sorted(EXAMPLES.glob("*.jsonl"))
    if not files:
        pytest.skip(f"no *.jsonl files in {EXAMPLES}")
    return files


def test_example_aligned_read_parses() -> None:
    path = EXAMPLES / "aligned-read-one-extent.jsonl"
    if not path.exists():
        pytest.skip(f"shared example {path} not found")
    trace = read_trace(path)
    assert trace.path == str(path)
    assert trace.header.engine == "iomap"
    assert trace.header.geometry == Geometry(4096, 512, 4096, write_cache=True, fua=False)
    assert trace.header.observed == {"bio", "flush", "queued", "complete"}
    assert trace.header.source == "hand"
    assert trace.header.fs is None
    assert [(e.line, e.ev, e.req) for e in trace.events] == [
        (2, "file", None),
        (3, "begin", 1),
        (4, "map", 1),
        (5, "bio", 1),
        (6, "bio_end", 1),
        (7, "complete", 1),
    ]
    assert trace.events[0].fields == {"i_size": 65536}
    assert begin_to_request(trace.events[1]) == Request("read", 8192, 8192, sync=True)
    assert event_to_input(trace.events[2]) == Mapping(0, 65536, "MAPPED", frozenset(), 4194304)
    assert trace.events[5].fields == {"ret": 8192, "pos_after": 16384}


def test_example_async_write_parses() -> None:
    path = EXAMPLES / "async-write-queued.jsonl"
    if not path.exists():
        pytest.skip(f"shared example {path} not found")
    trace = read_trace(path)
    assert [e.ev for e in trace.events] == [
        "file", "begin", "map", "bio", "queued", "bio_end", "complete",
    ]  # fmt: skip
    assert {e.req for e in trace.events[1:]} == {7}
    assert begin_to_request(trace.events[1]).sync is False
    assert trace.events[4].fields == {}


def test_every_example_parses_and_writes_back_identically() -> None:
    for path in example_files():
        trace = read_trace(path)
        out = io.StringIO()
        write_trace(out, trace.header.raw, [event_dict(e) for e in trace.events])
        assert out.getvalue() == path.read_text(encoding="utf-8"), path


def test_round_trip_of_a_rich_legacy_trace() -> None:
    geometry = Geometry(4096, 4096, 4096, write_cache=False, fua=True)
    head = header_dict("legacy", geometry, source="impl", fs="ext2", observed=["complete", "bio"])
    events = [
        {"ev": "file", "i_size": 0},
        {"ev": "begin", "req": 3, "op": "write", "pos": 4096, "len": 4096, "done_before": 0,
         "iocb": ["DSYNC"], "dio": ["LOCKING", "SKIP_HOLES"], "sync": False,
         "cached_pages": True},
        {"ev": "invalidate", "req": 3, "ret": 0},
        {"req": 3, "ev": "map", "error": -28, "create": True},
        {"ev": "map", "req": 3, "offset": 4096, "length": 4096, "type": "HOLE",
         "flags": ["NEW", "BOUNDARY"], "addr": None, "create": False},
        {"ev": "fault", "req": 3, "at": 0},
        {"ev": "bio", "req": 3, "op": "write", "addr": 0, "len": 4096, "fua": True,
         "zero": False, "atomic": False},
        {"ev": "bio_end", "req": 3, "index": 0, "status": -5},
        {"ev": "complete", "req": 3, "ret": -5, "pos_after": 4096, "i_size": 0,
         "ctx": "workqueue", "end_io": ["UNWRITTEN"]},
    ]  # fmt: skip
    out = io.StringIO()
    write_trace(out, head, events)
    text = out.getvalue()
    assert text.endswith("}\n") and text.count("\n") == 10
    trace = parse_trace(text.splitlines(keepends=True))
    assert trace.header.raw == head
    assert trace.header.observed == {"bio", "complete"}
    assert trace.header.geometry == geometry
    assert [e.line for e in trace.events] == list(range(2, 11))
    assert [event_dict(e) for e in trace.events] == events
    # writing what was read gives the same text again
    again = io.StringIO()
    write_trace(again, trace.header.raw, [event_dict(e) for e in trace.events])
    assert again.getvalue() == text
    assert parse_trace(again.getvalue()) == trace


def test_blank_lines_are_ignored_but_counted(tmp_path: Path) -> None:
    path = write_file(tmp_path, ["", header(), "  \t", FILE, "", "\r", READ, COMPLETE])
    trace = read_trace(path)
    assert [(e.line, e.ev) for e in trace.events] == [(4, "file"), (7, "begin"), (8, "complete")]


def test_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(f"{header()}\r\n{READ}\r\n{COMPLETE}\r\n".encode())
    assert [e.ev for e in read_trace(path).events] == ["begin", "complete"]


def test_bio_end_without_observed_bios_only_needs_a_non_negative_index() -> None:
    trace = parse_trace([header(observed=["complete"]), READ, BIO_END.replace("0,", "5,")])
    assert trace.events[1].fields["index"] == 5
    assert trace.header.observed == {"complete"}


def test_addr_may_be_null_or_set_for_inline_and_delalloc() -> None:
    lines = [header(), READ, mapping(type="INLINE", addr=None), mapping(type="DELALLOC")]
    assert len(parse_trace(lines).events) == 3


def test_event_to_input_for_each_input_kind() -> None:
    trace = parse_trace(
        [
            header(),
            WRITE,
            '{"ev": "invalidate", "req": 1, "ret": -16}',
            '{"ev": "fault", "req": 1, "at": 8192}',
            mapping(type="UNWRITTEN", flags=["NEW", "SHARED"], addr=0),
            '{"ev": "map", "req": 1, "error": -5}',
            BIO.replace('"read"', '"write"'),
            '{"ev": "bio_end", "req": 1, "index": 0, "status": -5}',
            READ.replace('"req": 1', '"req": 2'),
            '{"ev": "writeback", "req": 2, "ret": -5}',
        ]
    )
    got = [event_to_input(e) for e in trace.events if e.ev not in ("begin", "bio")]
    assert got == [
        InvalidateResult(-16),
        Fault(8192),
        Mapping(0, 65536, "UNWRITTEN", frozenset({"NEW", "SHARED"}), 0),
        MapError(-5),
        BioEnd(0, -5),
        WritebackResult(-5),
    ]
    with pytest.raises(ValueError, match="begin_to_request"):
        event_to_input(trace.events[0])
    with pytest.raises(ValueError, match='expected a "begin" event'):
        begin_to_request(trace.events[1])


def test_begin_to_request_carries_every_field() -> None:
    line = begin(pos=512, len=1024, done_before=4096, iocb=["NOWAIT", "DSYNC"],
                 dio=["PARTIAL"], sync=False, cached_pages=True)  # fmt: skip
    (ev,) = parse_trace([header(), line]).events
    assert begin_to_request(ev) == Request(
        op="read", pos=512, len=1024, done_before=4096, iocb=frozenset({"NOWAIT", "DSYNC"}),
        dio=frozenset({"PARTIAL"}), sync=False, cached_pages=True,
    )  # fmt: skip


def test_kinds() -> None:
    assert {"bio", "flush", "queued", "complete"} == OUTPUT_KINDS
    assert {"file", "begin", "invalidate", "writeback", "map", "fault", "bio_end"} == INPUT_KINDS


# --------------------------------------------------------------------------- writer


def test_header_dict_is_canonical() -> None:
    geometry = Geometry(4096, 512, 4096, write_cache=True, fua=True)
    head = header_dict("iomap", geometry, note="n", kernel="6.18", observed={"complete", "bio"},
                       source=None)  # fmt: skip
    assert dump_line(head) == (
        '{"format": "dioconf-trace", "version": 1, "engine": "iomap", "geometry": '
        '{"fs_block_size": 4096, "logical_block_size": 512, "page_size": 4096, '
        '"write_cache": true, "fua": true}, "kernel": "6.18", "observed": ["bio", "complete"], '
        '"note": "n"}'
    )
    with pytest.raises(ValueError, match="unknown header field 'colour'"):
        header_dict("iomap", geometry, colour="red")
    with pytest.raises(ValueError, match='"engine" must be "iomap" or "legacy"'):
        header_dict("direct", geometry)


def test_dump_line_orders_event_keys() -> None:
    obj = {"fua": False, "len": 512, "zero": True, "addr": 0, "op": "write", "req": 2, "ev": "bio"}
    assert dump_line(obj) == (
        '{"ev": "bio", "req": 2, "op": "write", "addr": 0, "len": 512, "fua": false, "zero": true}'
    )
    assert dump_line({"status": 0, "index": 1, "req": 0, "ev": "bio_end"}) == (
        '{"ev": "bio_end", "req": 0, "index": 1, "status": 0}'
    )
    with pytest.raises(ValueError):
        dump_line({"req": 1})


def test_write_trace_refuses_an_invalid_trace() -> None:
    out = io.StringIO()
    head = header_dict("iomap", Geometry(4096, 512, 4096))
    with pytest.raises(TraceFormatError) as info:
        write_trace(out, head, [{"ev": "complete", "req": 1, "ret": 0}])
    assert info.value.line == 2
    assert 'before its "begin"' in info.value.problem
    assert out.getvalue() == ""


# --------------------------------------------------------------------------- malformed files

BAD: list[tuple[str, list[str | bytes], int, str]] = [
    ("empty file", [], 0, "no header"),
    ("only blank lines", ["", "  "], 0, "no header"),
    ("bad JSON", [header(), READ, '{"ev": "map", "req": 1,'], 3, "invalid JSON"),
    ("trailing garbage", [header(), READ + " x"], 2, "invalid JSON: Extra data"),
    ("NaN", [header(), '{"ev": "file", "i_size": NaN}'], 2, "NaN is not allowed"),
    ("non-UTF-8", [header(), b'{"ev": "file", "i_size": 1, "x": "\xff"}'], 2, "not valid UTF-8"),
    ("non-object line", [header(), "[1, 2]"], 2, "must be a JSON object, got an array"),
    ("non-object header", ['"dioconf-trace"'], 1, "must be a JSON object, got a string"),
    ("duplicate key", [header(), '{"ev": "file", "i_size": 1, "i_size": 2}'], 2,
     'duplicate key "i_size"'),
    ("duplicate key in geometry", [header().replace('"fua": false', '"fua": false, "fua": true')],
     1, 'duplicate key "fua"'),
    ("header missing", [FILE, READ], 1, 'header missing: the first line must have "format"'),
    ("wrong format", [header(format="other")], 1, 'not a dioconf trace: "format" is "other"'),
    ("wrong version", [header(version=2), FILE], 1,
     "unsupported trace version 2 (this dioconf reads version 1)"),
    ("version as bool", [header(version=True)], 1,
     'header field "version" must be an integer, got true'),
    ("unknown header field", [header(colour="red")], 1, 'unknown header field "colour"'),
    ("bad engine", [header(engine="aio")], 1, 'must be "iomap" or "legacy", got "aio"'),
    ("bad source", [header(source="lab")], 1, 'header field "source" must be one of'),
    ("bad observed", [header(observed=["bio", "write"])], 1, 'unknown output kind "write"'),
    ("duplicate observed", [header(observed=["bio", "bio"])], 1, 'duplicate output kind "bio"'),
    ("note not a string", [header(note=3)], 1, 'header field "note" must be a string'),
    ("geometry not power of two", [geometry_header(fs_block_size=3000)], 1,
     "bad geometry: fs_block_size must be a positive power of two, got 3000"),
    ("logical block below 512", [geometry_header(logical_block_size=256)], 1,
     "logical_block_size must be >= 512, got 256"),
    ("logical block above fs block", [geometry_header(logical_block_size=8192)], 1,
     "logical_block_size 8192 exceeds fs_block_size 4096"),
    ("geometry bool as int", [geometry_header(page_size=True)], 1,
     'geometry field "page_size" must be an integer, got true'),
    ("geometry int as bool", [geometry_header(fua=1)], 1,
     'geometry field "fua" must be a boolean, got 1'),
    ("geometry missing field", [header(geometry={"fs_block_size": 4096})], 1,
     'missing geometry field "logical_block_size"'),
    ("second header", [header(), FILE, header()], 3, "a second header line"),
    ("missing ev", [header(), '{"req": 1}'], 2, 'missing "ev" field'),
    ("unknown ev", [header(), '{"ev": "bgin", "req": 1}'], 2, 'unknown event kind "bgin"'),
    ("missing req", [header(), '{"ev": "flush"}'], 2, 'missing field "req" in "flush" event'),
    ("negative req", [header(), READ.replace('"req": 1', '"req": -1')], 2,
     'field "req" must be a non-negative integer, got -1'),
    ("req on file", [header(), '{"ev": "file", "req": 1, "i_size": 0}'], 2,
     'unknown field "req" in "file" event (allowed: i_size)'),
    ("unknown field", [header(), READ.replace('"len"', '"lenght"')], 2,
     'unknown field "lenght" in "begin" event (allowed: op, pos, len, done_before, iocb, dio, '
     "sync, cached_pages, observed)"),
    ("missing field", [header(), READ.replace(', "dio": []', "")], 2,
     'missing required field "dio" in "begin" event'),
    ("float", [header(), begin(pos=1.5)], 2,
     'field "pos" must be a non-negative integer, got 1.5'),
    ("integral float", [header(), FILE.replace("65536", "65536.0")], 2,
     'field "i_size" must be a non-negative integer, got 65536.0'),
    ("bool as int", [header(), begin(len=True)], 2,
     'field "len" must be a non-negative integer, got true'),
    ("int as bool", [header(), begin(sync=1)], 2,
     'field "sync" must be a boolean (true or false), got 1'),
    ("negative len", [header(), begin(len=-4)], 2,
     'field "len" must be a non-negative integer, got -4'),
    ("bad op", [header(), begin(op="append")], 2, 'field "op" must be one of "read", "write"'),
    ("pos + len overflow", [header(), begin(pos=2**63 - 4096, len=8192)], 2,
     "exceeds LOFF_MAX"),
    ("i_size above LOFF_MAX", [header(), '{"ev": "file", "i_size": 9223372036854775808}'], 2,
     'field "i_size" must be at most 9223372036854775807'),
    ("unknown iocb flag", [header(), begin(iocb=["APPEND"])], 2,
     'flag "APPEND" in field "iocb" is not allowed'),
    ("duplicate flag", [header(), begin(iocb=["DSYNC", "DSYNC"])], 2,
     'duplicate flag "DSYNC" in field "iocb"'),
    ("iomap flag in legacy trace", [header("legacy"), begin(dio=["FORCE_WAIT"])], 2,
     'flag "FORCE_WAIT" in field "dio" is an iomap flag, not allowed for engine legacy'),
    ("legacy flag in iomap trace", [header(), begin(dio=["LOCKING"])], 2,
     'flag "LOCKING" in field "dio" is a legacy flag, not allowed for engine iomap'),
    ("legacy map flag in iomap trace", [header(), READ, mapping(flags=["BOUNDARY"])], 3,
     'flag "BOUNDARY" in field "flags" is a legacy flag'),
    ("iomap map flag in legacy trace", [header("legacy"), READ, mapping(flags=["SHARED"])], 3,
     'flag "SHARED" in field "flags" is an iomap flag'),
    ("done_before in legacy trace", [header("legacy"), begin(done_before=512)], 2,
     'field "done_before" must be 0 for the legacy engine'),
    ("create in iomap trace", [header(), READ, mapping(create=True)], 3,
     'field "create" of a "map" event is only allowed for engine legacy'),
    ("addr null for MAPPED", [header(), READ, mapping(addr=None)], 3,
     'field "addr" must be an integer for a MAPPED mapping, got null'),
    ("addr null for UNWRITTEN", [header(), READ, mapping(type="UNWRITTEN", addr=None)], 3,
     "for a UNWRITTEN mapping, got null"),
    ("addr set for HOLE", [header(), READ, mapping(type="HOLE", addr=0)], 3,
     'field "addr" must be null for a HOLE mapping, got 0'),
    ("map type unknown", [header(), READ, mapping(type="COW")], 3, 'field "type" must be one of'),
    ("map length zero", [header(), READ, mapping(length=0)], 3,
     'field "length" must be a positive integer, got 0'),
    ("map past 2**63", [header(), READ, mapping(offset=2**63 - 4096, length=8192)], 3,
     "exceeds 2**63"),
    ("map missing addr", [header(), READ, mapping(addr="DROP")], 3,
     'missing required field "addr" in "map" event (or give "error")'),
    ("map error plus extent", [header(), READ, mapping(error=-5)], 3,
     'a "map" event with "error" must not also have "offset"'),
    ("map error positive", [header(), READ, '{"ev": "map", "req": 1, "error": 5}'], 3,
     'field "error" must be a negative errno, got 5'),
    ("fault not page multiple", [header(), READ, '{"ev": "fault", "req": 1, "at": 512}'], 3,
     'field "at" must be a multiple of page_size 4096, got 512'),
    ("bio len zero", [header(), READ, BIO.replace('"len": 8192', '"len": 0')], 3,
     'field "len" must be a positive integer, got 0'),
    ("bio addr not a sector", [header(), READ, BIO.replace("1048576", "1048577")], 3,
     'field "addr" must be a multiple of 512'),
    ("bio_end status positive",
     [header(), READ, BIO, BIO_END.replace('"status": 0', '"status": 1')], 4,
     'field "status" must be 0 or a negative errno, got 1'),
    ("complete ret float", [header(), READ, '{"ev": "complete", "req": 1, "ret": 0.5}'], 3,
     'field "ret" must be an integer, got 0.5'),
    ("complete bad ctx", [header(), READ, '{"ev": "complete", "req": 1, "ret": 0, "ctx": "irq"}'],
     3, 'field "ctx" must be one of "submitter", "inline", "workqueue"'),
    ("complete bad end_io", [header(), READ, '{"ev": "complete", "req": 1, "ret": 0, '
                             '"end_io": ["DIRTY"]}'], 3, 'flag "DIRTY" in field "end_io"'),
    ("flush with a field", [header(), READ, '{"ev": "flush", "req": 1, "ret": 0}'], 3,
     'unknown field "ret" in "flush" event (allowed: none)'),
    ("event before begin", [header(), FILE, MAP], 3, '"map" event for req 1 before its "begin"'),
    ("begin of another req", [header(), READ, MAP.replace('"req": 1', '"req": 2')], 3,
     '"map" event for req 2 before its "begin"'),
    ("duplicate begin", [header(), READ, "", READ], 4,
     'duplicate "begin" for req 1 (first on line 2)'),
    ("event after complete", [header(), READ, COMPLETE, MAP], 4,
     '"map" event for req 1 after its "complete" (line 3)'),
    ("bio_end after complete", [header(), READ, BIO, COMPLETE, BIO_END], 5,
     '"bio_end" event for req 1 after its "complete" (line 4)'),
    ("two completes", [header(), READ, COMPLETE, COMPLETE], 4,
     'duplicate "complete" for req 1 (first on line 3)'),
    ("bio_end index never seen", [header(), READ, BIO, BIO_END.replace('"index": 0', '"index": 1')],
     4, '"bio_end" index 1 of req 1 refers to no "bio" seen so far'),
    ("bio_end before its bio", [header(), READ, BIO_END, BIO], 3,
     '"bio_end" index 0 of req 1 refers to no "bio"'),
    ("duplicate bio_end", [header(), READ, BIO, BIO_END, BIO_END], 5,
     'duplicate "bio_end" for index 0 of req 1 (first on line 4)'),
    ("invalidate for a read", [header(), READ, '{"ev": "invalidate", "req": 1, "ret": 0}'], 3,
     'an "invalidate" event is only valid for a write request (req 1 is a read)'),
    ("writeback for a write", [header(), WRITE, '{"ev": "writeback", "req": 1, "ret": 0}'], 3,
     'a "writeback" event is only valid for a read request (req 1 is a write)'),
    ("invalidate after map", [header(), WRITE, MAP, '{"ev": "invalidate", "req": 1, "ret": 0}'],
     4, '"invalidate" must come before any "map" or "bio" of req 1 (first on line 3)'),
    ("invalidate positive", [header(), WRITE, '{"ev": "invalidate", "req": 1, "ret": 1}'], 3,
     'field "ret" must be 0 or a negative errno, got 1'),
    ("unobserved output", [header(observed=["bio", "complete"]), READ,
                           '{"ev": "flush", "req": 1}'], 3,
     '"flush" event recorded but the header\'s observed list does not include it'),
    ("unobserved bio", [header(observed=[]), READ, BIO], 3,
     '"bio" event recorded but the header\'s observed list does not include it'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [pytest.param(lines, line, message, id=name) for name, lines, line, message in BAD],
)
def test_malformed_file_is_rejected(
    tmp_path: Path, lines: list[str | bytes], line: int, message: str
) -> None:
    path = write_file(tmp_path, lines)
    with pytest.raises(TraceFormatError) as info:
        read_trace(path)
    error = info.value
    assert (error.path, error.line) == (str(path), line)
    assert message in error.problem
    assert str(error) == f"{path}:{line}: {error.problem}"
    if all(isinstance(x, str) for x in lines):
        with pytest.raises(TraceFormatError) as again:
            parse_trace([str(x) for x in lines], path="mem")
        assert (again.value.path, again.value.line, again.value.problem) == (
            "mem", line, error.problem,
        )  # fmt: skip


def test_the_table_is_big_and_names_are_unique() -> None:
    assert len(BAD) >= 20
    assert len({name for name, *_ in BAD}) == len(BAD)


def test_unreadable_file_is_line_zero(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(TraceFormatError) as info:
        read_trace(missing)
    assert (info.value.path, info.value.line) == (str(missing), 0)
    assert info.value.problem.startswith("cannot read file:")
    with pytest.raises(TraceFormatError) as info:
        read_trace(tmp_path)  # a directory
    assert info.value.line == 0


def test_invalid_json_message_comes_from_the_json_parser(tmp_path: Path) -> None:
    path = write_file(tmp_path, [header(), '{"ev": "file" "i_size": 1}'])
    with pytest.raises(TraceFormatError) as info:
        read_trace(path)
    assert info.value.problem == "invalid JSON: Expecting ',' delimiter at column 15"


def test_error_is_an_exception_with_attributes() -> None:
    error = TraceFormatError("a.jsonl", 7, "boom")
    assert str(error) == "a.jsonl:7: boom"
    assert (error.path, error.line, error.problem) == ("a.jsonl", 7, "boom")
    assert isinstance(error, Exception)


def test_event_is_a_value() -> None:
    assert Event(2, "flush", 1, {}) == Event(2, "flush", 1, {})
    assert Event(2, "flush", 1, {}) != Event(3, "flush", 1, {})
