"""Helpers shared by the contract checks (`conformance.contract`): how a mapping and
flags print, and the error a broken rule raises."""

from __future__ import annotations

from ..impl.api import ContractError, Iomap


def flags_text(flags: frozenset[str] | set[str]) -> str:
    return "|".join(sorted(flags)) or "0"


def fmt_iomap(m: Iomap) -> str:
    """An Iomap in one short line: ``MAPPED [4096, 8192) addr=65536 flags=NEW``."""
    addr = "" if m.addr is None else f" addr={m.addr}"
    flags = f" flags={flags_text(m.flags)}" if m.flags else ""
    return f"{m.type} [{m.offset}, {m.offset + m.length}){addr}{flags}"


def violation(rule: str, call: str, got: str, why: str) -> ContractError:
    """The error for ``rule`` broken by ``call`` (which returned ``got``)."""
    return ContractError(f"contract violation [{rule}]: {call} {got}: {why}")
