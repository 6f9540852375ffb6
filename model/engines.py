"""The engine models by name: the registry (``engine.py`` defines what an engine is,
and imports none of them)."""

from __future__ import annotations

from . import iomap, legacy
from .engine import Engine

ENGINES: dict[str, Engine] = {"iomap": iomap.ENGINE, "legacy": legacy.ENGINE}


def get_engine(name: str) -> Engine:
    """The engine model called ``name`` ("iomap" or "legacy")."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; expected 'iomap' or 'legacy'") from None
