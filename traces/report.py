"""What a replay reports: the divergence (file, line, request, what the trace says,
what the model predicts, the seed rule) and a file's result, and how events, outputs
and engine actions are described in them."""

from __future__ import annotations

from typing import Any

from attrs import frozen

from ..model.types import (
    Action,
    Bio,
    BioRun,
    Blocked,
    Complete,
    Emit,
    Finished,
    Flush,
    NeedCut,
    NeedInvalidate,
    NeedMap,
    NeedWriteback,
    Output,
    Queued,
)
from .format import Event


@frozen
class Divergence:
    path: str
    line: int
    req: int | None
    trace_says: str
    model_predicts: str
    rule: str  # the seed rule deciding what differs
    field: str = ""  # the output field that differs ("" when the kind of event differs)
    derived: str = ""  # how the model derived the output (when ``rule`` is the field's)

    def report(self, indent: str = "") -> list[str]:
        """The human-readable report: where, what the trace says, what the model
        predicts, the field that differs and the seed rule that decides it."""
        lines = [
            f"{indent}DIVERGE {self.path}:{self.line} request {self.req}",
            f"{indent}    trace says:     {self.trace_says}",
            f"{indent}    model predicts: {self.model_predicts}",
        ]
        if self.field:
            lines.append(f"{indent}    differs in:     {self.field}")
        lines.append(f"{indent}    seed rule:      {self.rule}")
        if self.derived:
            lines.append(f"{indent}    output rule:    {self.derived}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "req": self.req,
            "trace_says": self.trace_says,
            "model_predicts": self.model_predicts,
            "rule": self.rule,
            "field": self.field,
            "derived": self.derived,
        }


@frozen
class FileResult:
    path: str
    divergence: Divergence | None
    requests: int
    events: int

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": "PASS" if self.ok else "DIVERGE",
            "requests": self.requests,
            "events": self.events,
            "divergence": self.divergence.to_dict() if self.divergence else None,
        }


class _Diverged(Exception):
    def __init__(self, line: int, req: int | None, says: str, predicts: str, rule: str,
                 field: str = "", derived: str = "") -> None:  # fmt: skip
        super().__init__(says)
        self.line, self.req, self.says, self.predicts, self.rule = line, req, says, predicts, rule
        self.field, self.derived = field, derived

    def divergence(self, path: str) -> Divergence:
        return Divergence(path, self.line, self.req, self.says, self.predicts, self.rule,
                          self.field, self.derived)  # fmt: skip


def output_kind(o: Output) -> str:
    if isinstance(o, Bio | BioRun):
        return "bio"
    if isinstance(o, Flush):
        return "flush"
    if isinstance(o, Queued):
        return "queued"
    return "complete"


def describe_output(o: Output) -> str:
    if isinstance(o, Bio):
        extra = " zero" if o.zero else ""
        extra += " atomic" if o.atomic else ""
        return f"bio #{o.index} {o.op} addr={o.addr} len={o.len} fua={str(o.fua).lower()}{extra}"
    if isinstance(o, BioRun):
        last = o.first + o.count - 1
        fua = str(o.fua).lower()
        return f"bios #{o.first}..#{last} {o.op} addr={o.addr} len={o.len} each fua={fua}"
    if isinstance(o, Complete):
        end_io = f" end_io={sorted(o.end_io_flags)}" if o.end_io_flags else ""
        return f"complete ret={o.ret} pos_after={o.pos_after} i_size={o.i_size} ctx={o.ctx}{end_io}"
    return output_kind(o)


def describe_event(e: Event) -> str:
    fields = " ".join(f"{k}={_fmt(v)}" for k, v in e.fields.items())
    return f"{e.ev} {fields}".strip()


def describe_action(a: Action) -> str:
    if isinstance(a, NeedMap):
        create = "" if a.create is None else f" create={str(a.create).lower()}"
        return f"asks for a mapping at pos={a.pos} (length {a.length}){create}"
    if isinstance(a, NeedCut):
        return describe_output(a.proposal)
    if isinstance(a, Blocked):
        return f"waits for bios {a.outstanding.describe()} to complete"
    if isinstance(a, Finished):
        return "request already complete"
    if isinstance(a, NeedInvalidate):
        return "asks for the page-cache invalidation result"
    if isinstance(a, NeedWriteback):
        return "asks for the writeback result"
    assert isinstance(a, Emit)
    return describe_output(a.output)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


def _rule_of(a: Action) -> str:
    if isinstance(a, Emit):
        return a.output.rule
    if isinstance(a, NeedCut):
        return a.proposal.rule
    return getattr(a, "rule", "")


def _mismatch(o: Output, e: Event) -> bool:
    """True when the recorded output ``e`` differs from the model's ``o``."""
    return mismatch_field(o, e) is not None


def mismatch_field(o: Output, e: Event) -> str | None:
    """The first field of the recorded output ``e`` that differs from the model's ``o``
    (None: they agree)."""
    f = e.fields
    if isinstance(o, Bio):
        for key, value in (("op", o.op), ("addr", o.addr), ("len", o.len), ("fua", o.fua)):
            if f[key] != value:
                return key
        for key, value in (("zero", o.zero), ("atomic", o.atomic)):
            if key in f and f[key] != value:
                return key
        return None
    if isinstance(o, Complete):
        if f["ret"] != o.ret:
            return "ret"
        for key, value in (("pos_after", o.pos_after), ("i_size", o.i_size), ("ctx", o.ctx)):
            if key in f and f[key] != value:
                return key
        if "end_io" in f and frozenset(f["end_io"]) != o.end_io_flags:
            return "end_io"
    return None
