"""The catalogue of the conformance suite, in one place: its reference filesystems
with their engines (the combos ``dioconf run`` covers), the engine models, and the run
profiles. The command line takes its choices from here; ``tests/test_catalogue.py``
checks it against the implementation's registry (``impl/examples.py``) and the model's
(``model/engines.py``). Plain data: importing it costs the command line nothing."""

from __future__ import annotations

ENGINE_NAMES: tuple[str, ...] = ("iomap", "legacy")
# (filesystem, engine) in the order runs and reports list them
COMBOS: tuple[tuple[str, str], ...] = (
    ("overwrite", "iomap"),
    ("xfs-like", "iomap"),
    ("reflink", "iomap"),
    ("btrfs-like", "iomap"),
    ("getblock", "legacy"),
)
FS_NAMES: tuple[str, ...] = tuple(name for name, _ in COMBOS)
# examples per filesystem and engine, steps per example, derandomized
PROFILES: dict[str, tuple[int, int, bool]] = {
    "ci": (150, 30, True),
    "dev": (200, 40, False),
    "nightly": (2000, 60, False),
}
