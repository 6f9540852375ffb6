"""The catalogue of the conformance suite: its reference filesystems with their engines
(the combos ``dioconf run`` covers) and its Hypothesis profiles."""

from __future__ import annotations

COMBOS: tuple[tuple[str, str], ...] = (
    ("overwrite", "iomap"),
    ("xfs-like", "iomap"),
    ("reflink", "iomap"),
    ("btrfs-like", "iomap"),
    ("getblock", "legacy"),
)
# examples per filesystem and engine, steps per example, derandomized
PROFILES: dict[str, tuple[int, int, bool]] = {
    "ci": (150, 30, True),
    "dev": (200, 40, False),
    "nightly": (2000, 60, False),
}
