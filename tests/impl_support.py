"""Shared by the implementation's tests: Worlds on temporary images whose recorded
traces must replay through the model with no divergence."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dioconf.impl.world import World
from dioconf.traces.format import dump_line, parse_trace
from dioconf.traces.replay import replay_trace


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


def replays(w: World) -> None:
    """The World's trace replays through the model with no divergence."""
    assert w.trace is not None
    lines = [dump_line(w.trace.header)] + [dump_line(e) for e in w.trace.events]
    result = replay_trace(parse_trace(lines, "impl"))
    assert result.ok, result.divergence


def world_factory(tmp_path: Path, default_fs: Any = None,
                  **defaults: Any) -> Iterator[Callable[..., World]]:  # fmt: skip
    """A factory of Worlds (``make(fs=default_fs, **kw)``); when the test ends every
    World's trace must replay, and every World is closed."""
    worlds: list[World] = []

    def make(fs: Any = default_fs, **kw: Any) -> World:
        w = World(fs, image=tmp_path / f"img{len(worlds)}", size=64 << 20, **{**defaults, **kw})
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        replays(w)
        w.close()
