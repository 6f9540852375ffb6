"""Field tables of trace format v1 (/work/shared/trace-format.md) and their checks.

Everything here is static: one JSON object at a time, no knowledge of other lines.
Checks raise ``Problem``; the reader adds the file name and line number.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from typing import Any

import attrs

from ..model.profiles import PROFILES
from ..model.types import (
    IOCB_FLAGS,
    IOMAP_DIO_FLAGS,
    IOMAP_MAP_FLAGS,
    LEGACY_DIO_FLAGS,
    LEGACY_MAP_FLAGS,
    LOFF_MAX,
    MAP_TYPES,
    OPS,
    Geometry,
)

FORMAT_NAME = "dioconf-trace"
FORMAT_VERSION = 1
ENGINES = ("iomap", "legacy")
SOURCES = ("kernel", "impl", "hand")
OUTPUT_KINDS = frozenset({"bio", "flush", "queued", "complete"})
INPUT_KINDS = frozenset({"file", "begin", "invalidate", "writeback", "map", "fault", "bio_end"})
# dioconf extension: a system call's result, checked against the filesystem's glue
CHECK_KINDS = frozenset({"syscall"})
# canonical order of the output kinds in a header's "observed" list
OUTPUT_ORDER = ("bio", "flush", "queued", "complete")
COMPLETION_CONTEXTS = ("submitter", "inline", "workqueue")
END_IO_FLAGS = frozenset({"UNWRITTEN", "COW"})
MAP_END = 1 << 63  # offset + length of a mapping may reach 2**63

# canonical key order of a header object and of its geometry
HEADER_KEYS = ("format", "version", "engine", "geometry")
HEADER_OPTIONAL = ("source", "fs", "kernel", "profile", "observed", "note")
HEADER_KEYS += HEADER_OPTIONAL
GEOMETRY_KEYS = ("fs_block_size", "logical_block_size", "page_size", "write_cache", "fua")
# the fields of the "map" event that describe an extent (absent when "error" is given)
MAP_EXTENT_FIELDS = ("offset", "length", "type", "flags", "addr")


class Problem(Exception):
    """One thing wrong with one line of a trace."""


def show(value: Any) -> str:
    """``value`` as JSON text, shortened for an error message."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> bool:
    """True for a JSON integer (Python's bool is an int but not a JSON integer)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _names(items: Any) -> str:
    return ", ".join(items) if items else "none"


# --------------------------------------------------------------------------- field checks

Check = Callable[[str, Any, str], None]  # (field name, value, engine)


def non_negative(maximum: int | None = None) -> Check:
    def check(name: str, value: Any, _engine: str) -> None:
        if not is_int(value) or value < 0:
            raise Problem(f'field "{name}" must be a non-negative integer, got {show(value)}')
        if maximum is not None and value > maximum:
            raise Problem(f'field "{name}" must be at most {maximum}, got {value}')

    return check


def positive(name: str, value: Any, _engine: str) -> None:
    if not is_int(value) or value <= 0:
        raise Problem(f'field "{name}" must be a positive integer, got {show(value)}')


def integer(name: str, value: Any, _engine: str) -> None:
    if not is_int(value):
        raise Problem(f'field "{name}" must be an integer, got {show(value)}')


def status(name: str, value: Any, _engine: str) -> None:
    if not is_int(value) or value > 0:
        raise Problem(f'field "{name}" must be 0 or a negative errno, got {show(value)}')


def errno(name: str, value: Any, _engine: str) -> None:
    if not is_int(value) or value >= 0:
        raise Problem(f'field "{name}" must be a negative errno, got {show(value)}')


def boolean(name: str, value: Any, _engine: str) -> None:
    if not isinstance(value, bool):
        raise Problem(f'field "{name}" must be a boolean (true or false), got {show(value)}')


def address_or_null(name: str, value: Any, engine: str) -> None:
    if value is not None and (not is_int(value) or value < 0):
        raise Problem(f'field "{name}" must be a non-negative integer or null, got {show(value)}')


def kind_list(name: str, value: Any, _engine: str) -> None:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise Problem(f'field "{name}" must be a list of output kinds, got {show(value)}')
    for i, kind in enumerate(value):
        if kind not in OUTPUT_KINDS:
            raise Problem(
                f'field "{name}": unknown output kind "{kind}" (known: {_names(OUTPUT_ORDER)})'
            )
        if kind in value[:i]:
            raise Problem(f'field "{name}": duplicate output kind "{kind}"')


def request_list(name: str, value: Any, _engine: str) -> None:
    if not isinstance(value, list) or not value or not all(is_int(r) and r >= 0 for r in value):
        raise Problem(
            f'field "{name}" must be a non-empty list of request numbers, got {show(value)}'
        )
    if len(set(value)) != len(value):
        raise Problem(f'field "{name}": a request listed twice in {show(value)}')


def one_of(*choices: str) -> Check:
    def check(name: str, value: Any, _engine: str) -> None:
        if value not in choices or not isinstance(value, str):
            allowed = ", ".join(json.dumps(c) for c in choices)
            raise Problem(f'field "{name}" must be one of {allowed}, got {show(value)}')

    return check


def flag_list(by_engine: MappingABC[str, frozenset[str]]) -> Check:
    """A list of distinct flag names, allowed per engine."""

    def check(name: str, value: Any, engine: str) -> None:
        if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
            raise Problem(f'field "{name}" must be a list of flag names, got {show(value)}')
        allowed = by_engine[engine]
        seen: set[str] = set()
        for flag in value:
            if flag in seen:
                raise Problem(f'duplicate flag "{flag}" in field "{name}"')
            seen.add(flag)
            if flag not in allowed:
                owners = [e for e, flags in by_engine.items() if e != engine and flag in flags]
                article = "an" if owners and owners[0][0] in "aeiou" else "a"
                what = f"{article} {owners[0]} flag, " if owners else ""
                raise Problem(
                    f'flag "{flag}" in field "{name}" is {what}not allowed for engine '
                    f"{engine} (allowed: {_names(sorted(allowed))})"
                )

    return check


def _same(flags: frozenset[str]) -> dict[str, frozenset[str]]:
    return dict.fromkeys(ENGINES, flags)


# --------------------------------------------------------------------------- event tables


@attrs.frozen
class FieldSpec:
    check: Check
    required: bool = False
    engines: tuple[str, ...] = ENGINES


# ev -> field -> spec; the insertion order is the canonical field order
EVENT_FIELDS: dict[str, dict[str, FieldSpec]] = {
    "file": {"i_size": FieldSpec(non_negative(LOFF_MAX), required=True)},
    "begin": {
        "op": FieldSpec(one_of(*OPS), required=True),
        "pos": FieldSpec(non_negative(), required=True),
        "len": FieldSpec(non_negative(), required=True),
        "done_before": FieldSpec(non_negative(), required=True),
        "iocb": FieldSpec(flag_list(_same(IOCB_FLAGS)), required=True),
        "dio": FieldSpec(
            flag_list({"iomap": IOMAP_DIO_FLAGS, "legacy": LEGACY_DIO_FLAGS}), required=True
        ),
        "sync": FieldSpec(boolean, required=True),
        "cached_pages": FieldSpec(boolean),
        # dioconf extension: the output kinds recorded for this request (narrows the
        # header's list; e.g. the kernel shows no result for __iomap_dio_rw early exits)
        "observed": FieldSpec(kind_list),
    },
    "invalidate": {"ret": FieldSpec(status, required=True)},
    "writeback": {"ret": FieldSpec(status, required=True)},
    "map": {
        "offset": FieldSpec(non_negative()),
        "length": FieldSpec(positive),
        "type": FieldSpec(one_of(*sorted(MAP_TYPES))),
        "flags": FieldSpec(flag_list({"iomap": IOMAP_MAP_FLAGS, "legacy": LEGACY_MAP_FLAGS})),
        "addr": FieldSpec(address_or_null),
        "error": FieldSpec(errno),
        "create": FieldSpec(boolean, engines=("legacy",)),
    },
    # errno (an addition to v1; absent means -14): what pinning fails with, -EFAULT or
    # e.g. -EINTR when a fatal signal is pending (get_user_pages)
    "fault": {"at": FieldSpec(non_negative(), required=True), "errno": FieldSpec(errno)},
    "bio": {
        "op": FieldSpec(one_of(*OPS), required=True),
        "addr": FieldSpec(non_negative(), required=True),
        "len": FieldSpec(positive, required=True),
        "fua": FieldSpec(boolean, required=True),
        "zero": FieldSpec(boolean),
        "atomic": FieldSpec(boolean),
    },
    "bio_end": {
        "index": FieldSpec(non_negative(), required=True),
        "status": FieldSpec(status, required=True),
    },
    "flush": {},
    "queued": {},
    "complete": {
        "ret": FieldSpec(integer, required=True),
        "pos_after": FieldSpec(non_negative(LOFF_MAX)),
        "i_size": FieldSpec(non_negative(LOFF_MAX)),
        "ctx": FieldSpec(one_of(*COMPLETION_CONTEXTS)),
        "end_io": FieldSpec(flag_list(_same(END_IO_FLAGS))),
    },
    # the read/write system call that made requests ``reqs`` (its last one is "req")
    # asked for ``len`` bytes and returned ``ret``
    "syscall": {
        "ret": FieldSpec(integer, required=True),
        "len": FieldSpec(non_negative(), required=True),
        "reqs": FieldSpec(request_list, required=True),
    },
}
assert set(EVENT_FIELDS) == INPUT_KINDS | OUTPUT_KINDS | CHECK_KINDS


def check_event_fields(ev: str, fields: dict[str, Any], engine: str, geometry: Geometry) -> None:
    """Check the fields (all keys but "ev" and "req") of one ``ev`` event."""
    table = EVENT_FIELDS[ev]
    for name in fields:
        spec = table.get(name)
        if spec is None:
            allowed = [n for n, s in table.items() if engine in s.engines]
            raise Problem(f'unknown field "{name}" in "{ev}" event (allowed: {_names(allowed)})')
        if engine not in spec.engines:
            raise Problem(
                f'field "{name}" of a "{ev}" event is only allowed for engine '
                f"{_names(spec.engines)}, this trace is for {engine}"
            )
    for name, spec in table.items():
        if spec.required and name not in fields:
            raise Problem(f'missing required field "{name}" in "{ev}" event')
    if ev == "map":
        _check_map_shape(fields)
    for name, value in fields.items():
        table[name].check(name, value, engine)
    if ev == "begin":
        if fields["pos"] + fields["len"] > LOFF_MAX:
            raise Problem(f"pos {fields['pos']} + len {fields['len']} exceeds LOFF_MAX (2**63 - 1)")
        if engine == "legacy" and fields["done_before"] != 0:
            raise Problem(
                'field "done_before" must be 0 for the legacy engine (it has no done_before), '
                f"got {fields['done_before']}"
            )
    elif ev == "map" and "error" not in fields:
        _check_map_extent(fields)
    elif ev == "fault" and fields["at"] % geometry.page_size:
        raise Problem(
            f'field "at" must be a multiple of page_size {geometry.page_size}, got {fields["at"]}'
        )
    elif ev == "bio" and fields["addr"] % 512:
        raise Problem(f'field "addr" must be a multiple of 512 (a sector), got {fields["addr"]}')


def _check_map_shape(fields: dict[str, Any]) -> None:
    if "error" in fields:
        extra = [n for n in MAP_EXTENT_FIELDS if n in fields]
        if extra:
            raise Problem(f'a "map" event with "error" must not also have "{extra[0]}"')
        return
    for name in MAP_EXTENT_FIELDS:
        if name not in fields:
            raise Problem(f'missing required field "{name}" in "map" event (or give "error")')


def _check_map_extent(fields: dict[str, Any]) -> None:
    kind, addr = fields["type"], fields["addr"]
    if kind == "HOLE" and addr is not None:
        raise Problem(f'field "addr" must be null for a HOLE mapping, got {show(addr)}')
    if kind in ("MAPPED", "UNWRITTEN") and addr is None:
        raise Problem(f'field "addr" must be an integer for a {kind} mapping, got null')
    if fields["offset"] + fields["length"] > MAP_END:
        raise Problem(
            f"offset {fields['offset']} + length {fields['length']} exceeds 2**63 (end of a file)"
        )


# --------------------------------------------------------------------------- header


def _header_string(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if key in raw and not isinstance(value, str):
        raise Problem(f'header field "{key}" must be a string, got {show(value)}')
    return value


def check_header(raw: dict[str, Any]) -> tuple[Geometry, frozenset[str]]:
    """Check a header object; return its geometry and observed output kinds."""
    if raw.get("format") != FORMAT_NAME:
        if "format" in raw:
            raise Problem(
                f'not a dioconf trace: "format" is {show(raw["format"])}, expected "{FORMAT_NAME}"'
            )
        what = f', found an "{raw["ev"]}" event' if isinstance(raw.get("ev"), str) else ""
        raise Problem(f'header missing: the first line must have "format": "{FORMAT_NAME}"{what}')
    version = raw.get("version")
    if not is_int(version):
        raise Problem(f'header field "version" must be an integer, got {show(version)}')
    if version != FORMAT_VERSION:
        raise Problem(
            f"unsupported trace version {version} (this dioconf reads version {FORMAT_VERSION})"
        )
    for key in raw:
        if key not in HEADER_KEYS:
            raise Problem(f'unknown header field "{key}" (allowed: {_names(HEADER_KEYS)})')
    for key in ("engine", "geometry"):
        if key not in raw:
            raise Problem(f'missing header field "{key}"')
    if raw["engine"] not in ENGINES or not isinstance(raw["engine"], str):
        raise Problem(
            f'header field "engine" must be "iomap" or "legacy", got {show(raw["engine"])}'
        )
    geometry = _check_geometry(raw["geometry"])
    if "source" in raw and (raw["source"] not in SOURCES or not isinstance(raw["source"], str)):
        raise Problem(
            f'header field "source" must be one of kernel, impl, hand, got {show(raw["source"])}'
        )
    for key in ("fs", "kernel", "note", "profile"):
        _header_string(raw, key)
    if "profile" in raw and raw["profile"] not in PROFILES:
        raise Problem(
            f'header field "profile" names an unknown profile {show(raw["profile"])} '
            f"(known: {_names(sorted(PROFILES))})"
        )
    observed = OUTPUT_KINDS
    if "observed" in raw:
        value = raw["observed"]
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise Problem(
                f'header field "observed" must be a list of output kinds, got {show(value)}'
            )
        for i, kind in enumerate(value):
            if kind not in OUTPUT_KINDS:
                raise Problem(
                    f'header field "observed": unknown output kind "{kind}" '
                    f"(allowed: {_names(OUTPUT_ORDER)})"
                )
            if kind in value[:i]:
                raise Problem(f'header field "observed": duplicate output kind "{kind}"')
        observed = frozenset(value)
    return geometry, observed


def _check_geometry(value: Any) -> Geometry:
    if not isinstance(value, dict):
        raise Problem(f'header field "geometry" must be an object, got {show(value)}')
    for key in value:
        if key not in GEOMETRY_KEYS:
            raise Problem(f'unknown geometry field "{key}" (allowed: {_names(GEOMETRY_KEYS)})')
    for key in GEOMETRY_KEYS:
        if key not in value:
            raise Problem(f'missing geometry field "{key}"')
        if key in ("write_cache", "fua"):
            if not isinstance(value[key], bool):
                raise Problem(f'geometry field "{key}" must be a boolean, got {show(value[key])}')
        elif not is_int(value[key]):
            raise Problem(f'geometry field "{key}" must be an integer, got {show(value[key])}')
    try:
        return Geometry(**value)
    except ValueError as e:
        raise Problem(f"bad geometry: {e}") from None
