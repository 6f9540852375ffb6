"""Ranges the suite reads back from a backend's view (``EngineBackend.read_view``)."""

from __future__ import annotations


def merge_ranges(ranges: list[tuple[int, int]], grain: int) -> list[tuple[int, int]]:
    """Ranges rounded out to ``grain`` and merged."""
    out: list[tuple[int, int]] = []
    for s, e in sorted((s - s % grain, -(-e // grain) * grain) for s, e in ranges if e > s):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
