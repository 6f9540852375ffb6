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
# The run profiles, one meaning for every tool: ``ci`` is derandomized and bounded
# (what CI runs), ``dev`` draws fresh random seeds at a size a developer waits for,
# ``nightly`` is long. Each tool's sizes, side by side:
# - PYTEST_EXAMPLES: max_examples of the project's own property tests (tests/conftest.py)
# - PROFILES: dioconf run (examples per filesystem and engine, steps per example)
# - KERNEL_PROFILES / FAST_PROFILES: dioconf run --kernel, through Hypothesis / --fast
PYTEST_EXAMPLES: dict[str, int] = {"ci": 60, "dev": 200, "nightly": 5000}
# examples per filesystem and engine, steps per example, derandomized
PROFILES: dict[str, tuple[int, int, bool]] = {
    "ci": (150, 30, True),
    "dev": (200, 40, False),
    "nightly": (2000, 60, False),
}

# -- the real kernel (dioconf run --kernel) --------------------------------------------
KERNEL_FS: tuple[str, ...] = ("ext4", "xfs", "btrfs")
# geometry name: mkfs options (the first is each filesystem's default); btrfs: files
# NOCOW (the iomap path) or COW (data checksums: direct writes fall back to buffered)
KERNEL_GEOMETRIES: dict[str, dict[str, tuple[str, ...]]] = {
    "ext4": {"4k": ("-b", "4096"), "1k": ("-b", "1024")},
    "xfs": {"4k": ("-b", "size=4096"), "16k": ("-b", "size=16384"),
            "64k": ("-b", "size=65536")},  # blocks larger than the page: since 6.12
    "btrfs": {"nocow": (), "cow": ()},
}  # fmt: skip
SECTOR_SIZES: tuple[int, ...] = (512, 4096)  # the loop device's logical block size
# the mkfs option telling it the device's sector size (mkfs runs on the image file)
SECTOR_OPTION: dict[str, tuple[str, ...]] = {"xfs": ("-s", "size={}"), "ext4": (),
                                             "btrfs": ()}  # fmt: skip
# --fast: runs x operations per run, per filesystem and geometry; seeds as PROFILES
FAST_PROFILES: dict[str, tuple[int, int, bool]] = {
    "ci": (20, 500, True),
    "dev": (50, 1000, False),
    "nightly": (400, 2000, False),
}
# through Hypothesis: examples x operations per example
KERNEL_PROFILES: dict[str, tuple[int, int, bool]] = {
    "ci": (1000, 100, True),
    "dev": (600, 150, False),
    "nightly": (5000, 200, False),
}
# through Hypothesis: examples (spread over the run) whose requests are also traced and
# replayed through the model (a trace session costs ~0.3 s: not every example; --fast
# traces every run)
KERNEL_TRACED_EXAMPLES: dict[str, int] = {"ci": 10, "dev": 25, "nightly": 100}
# findings known to be allowed by default nowhere: a run reports every finding unless
# the command line allows it (--allow-finding NAME)


def kernel_mkfs_options(fs: str, geometry: str, sector_size: int) -> tuple[str, ...]:
    """mkfs options for ``fs`` in ``geometry`` on a device of ``sector_size``."""
    try:
        opts = KERNEL_GEOMETRIES[fs][geometry]
    except KeyError:
        known = ", ".join(f"{f}:{g}" for f, gs in KERNEL_GEOMETRIES.items() for g in gs)
        raise ValueError(f"unknown geometry {fs}:{geometry}; known: {known}") from None
    if sector_size != 512:
        opts += tuple(o.format(sector_size) for o in SECTOR_OPTION[fs])
    return opts
