"""Example workloads of the implementation, one trace each, for ``traces/impl/``.

``write_examples(out)`` runs every example on every reference filesystem it applies to
and writes ``out/<fs>-<example>.jsonl``; ``dioconf replay`` must accept them all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .api import EIO
from .fs.cow import BtrfsLikeFs, ReflinkFs
from .fs.getblock import GetBlockFs
from .fs.simple import OverwriteFs, XfsLikeFs
from .world import World

KIB, MIB = 1024, 1 << 20
FILESYSTEMS = {
    fs.name: fs for fs in (OverwriteFs, XfsLikeFs, ReflinkFs, BtrfsLikeFs, GetBlockFs)
}
ENGINES = {"getblock": "legacy"}  # the filesystems of the legacy engine
IOMAP = tuple(name for name in FILESYSTEMS if name not in ENGINES)


def data(n: int, seed: int = 1) -> bytes:
    return bytes((i * 13 + seed) % 251 for i in range(n))


def aligned_io(w: World) -> None:
    f = w.create()
    w.pwrite(f, 0, data(64 * KIB))
    w.pread(f, 0, 64 * KIB)
    w.pwrite(f, 16 * KIB, data(8 * KIB, 2))
    w.pread(f, 8 * KIB, 16 * KIB)


def short_reads(w: World) -> None:
    f = w.create()
    w.pwrite(f, 0, data(16 * KIB))
    w.fs.truncate(f, 10000)
    w.pread(f, 0, 16 * KIB)
    w.pread(f, 12 * KIB, 4 * KIB)


def sub_block(w: World) -> None:
    f = w.create()
    w.pwrite(f, 512, data(1024))
    w.pwrite(f, 64 * KIB + 512, data(512, 3))
    w.fs.fallocate(f, 128 * KIB, 64 * KIB)
    w.pwrite(f, 128 * KIB + 1024, data(512, 4))
    w.pread(f, 0, 4 * KIB)


def dsync_and_crash(w: World) -> None:
    f = w.create()
    w.pwrite(f, 0, data(16 * KIB), flags={"DSYNC"})
    w.pwrite(f, 16 * KIB, data(16 * KIB, 5), flags={"SYNC"})
    w.pwrite(f, 32 * KIB, data(8 * KIB, 6))
    w.crash()
    w.pread(f, 0, 64 * KIB)


def async_requests(w: World) -> None:
    f = w.create()
    w.pwrite(f, 0, data(64 * KIB))
    w.pwrite(f, 0, data(8 * KIB, 7), sync=False)
    w.pread(f, 8 * KIB, 8 * KIB, sync=False)
    w.pwrite(f, 64 * KIB, data(8 * KIB, 8), sync=False)  # extending


def racing_error(w: World) -> None:
    """bio 0 fails before the next extent is mapped (deterministic schedule)."""
    f = w.create()
    w.pwrite(f, 0, data(4 * KIB))
    w.pwrite(f, 12 * KIB, data(4 * KIB))
    w.sched.schedule = lambda where, bios: (
        [(b, EIO) for b in bios if b.index == 0] if where == "before_map" else []
    )
    w.pwrite(f, 0, data(16 * KIB, 9))
    w.sched.schedule = lambda where, bios: [(bios[0], 0)] if where == "wait" and bios else []


def faults(w: World) -> None:
    f = w.create()
    w.pwrite(f, 0, data(32 * KIB))
    w.pwrite(f, 0, data(16 * KIB, 10), dio={"PARTIAL"}, fault_at=8 * KIB, done_before=4096)
    w.pread(f, 0, 16 * KIB, dio={"PARTIAL"}, fault_at=0)
    w.pread(f, 0, 16 * KIB, fault_at=4 * KIB)


def large(w: World) -> None:
    f = w.create()
    w.pwrite(f, 0, data(3 * MIB))
    w.pread(f, 0, 3 * MIB)


def reflink(w: World) -> None:
    src, dst = w.create(), w.create()
    w.pwrite(src, 0, data(32 * KIB))
    w.fs.reflink(src, dst)
    w.pwrite(dst, 8 * KIB, data(8 * KIB, 11), flags={"DSYNC"})
    w.pread(dst, 0, 32 * KIB)


def legacy_io(w: World) -> None:
    """__blockdev_direct_IO on a get_block filesystem (DIO_SKIP_HOLES): aligned and
    512-aligned I/O, a sub-block write into a new block, holes, async requests."""
    f = w.create()
    w.pwrite(f, 0, data(16 * KIB))
    w.pwrite(f, 16 * KIB + 512, data(512, 2))  # extends: new block, zeroed edges
    w.pread(f, 0, 20 * KIB)
    w.fs.truncate(f, 64 * KIB)  # a hole after the data, inside i_size
    w.pread(f, 16 * KIB, 16 * KIB)
    w.pwrite(f, 32 * KIB, data(4 * KIB, 3))  # into the hole: SKIP_HOLES -> 0, buffered
    w.pread(f, 0, 8 * KIB, sync=False)
    w.pread(f, 4 * KIB, 8 * KIB, fault_at=4 * KIB)


Example = Callable[[World], None]
EXAMPLES: dict[str, tuple[Example, tuple[str, ...]]] = {
    "aligned-io": (aligned_io, IOMAP),
    "short-reads": (short_reads, IOMAP),
    "sub-block": (sub_block, ("overwrite", "xfs-like", "reflink")),
    "dsync-and-crash": (dsync_and_crash, IOMAP),
    "async": (async_requests, IOMAP),
    "racing-error": (racing_error, ("overwrite", "xfs-like", "reflink")),
    "faults": (faults, IOMAP),
    "large": (large, ("overwrite", "xfs-like")),
    "reflink": (reflink, ("reflink", "btrfs-like")),
    "legacy-io": (legacy_io, ("getblock",)),
}


def write_examples(out: str | Path, workdir: str | Path) -> list[Path]:
    """Run every example and write its trace; returns the paths."""
    paths = []
    for name, (example, fss) in EXAMPLES.items():
        for fs in fss:
            image = Path(workdir) / f"{fs}-{name}.img"
            engine = ENGINES.get(fs, "iomap")
            with World(FILESYSTEMS[fs], image=image, size=64 * MIB, engine=engine) as w:
                assert w.trace is not None
                w.trace.header["note"] = f"impl example {name} on {fs}: {example.__doc__ or ''}"
                example(w)
                paths.append(w.save_trace(Path(out) / f"{fs}-{name}.jsonl"))
            for leftover in Path(workdir).glob(f"{fs}-{name}.img*"):
                leftover.unlink()
    return paths
