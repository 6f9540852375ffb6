"""The Python implementation as a conformance backend (impl/file_backend.py): every
operation of the FileBackend protocol on each iomap reference filesystem, the adapter's
own semantics (unaligned punch, remount, side-effect-free queries), and a short seeded
run of the file-level checker that may meet the seed's named findings and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dioconf.conformance.catalogue import COMBOS
from dioconf.conformance.fast import run_fast
from dioconf.conformance.findings import FINDINGS
from dioconf.impl import file_backend
from dioconf.impl.file_backend import ImplBackend
from dioconf.model.pattern import pattern

IOMAP_FS = tuple(fs for fs, engine in COMBOS if engine == "iomap")
# the seed's own behaviours the implementation reproduces on purpose (model/seed_quirks.py)
SEED_FINDINGS = frozenset(
    {"head-pad-after-dropped-fault", "legacy-zero-page-after-fault", "nowait-eagain-landed"}
)
KERNEL_FS = {"overwrite": "ext4", "xfs-like": "xfs", "reflink": "xfs", "btrfs-like": "btrfs"}


def allowed(fs: str) -> frozenset[str]:
    """The seed's findings, and those of the kernel filesystem ``fs`` stands for."""
    own = {name for name, doc in FINDINGS.items() if KERNEL_FS[fs] in doc.filesystems}
    return SEED_FINDINGS | own


EAGAIN, EFAULT, EOPNOTSUPP, ENOENT = -11, -14, -95, -2


@pytest.fixture(params=IOMAP_FS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ImplBackend]:
    b = ImplBackend.for_fs(request.param, image=tmp_path / "image", size=64 << 20)
    try:
        yield b
    finally:
        b.close()


@pytest.mark.parametrize(
    ("wid", "pos", "length"),
    [(1, 0, 0), (1, 0, 16), (7, 5, 3), (99_999, 4095, 8193), ((1 << 32) - 1, 1 << 40, 100),
     (123_456, 251_904, 7680), (2, 15, 1), (3, 16, 65_536 + 7)],
)  # fmt: skip
def test_the_adapter_makes_the_suites_data(wid: int, pos: int, length: int) -> None:
    """impl/ may not import the model: the adapter makes the data itself, in the format
    of model/pattern.py, byte for byte."""
    assert file_backend.pattern(wid, pos, length) == pattern(wid, pos, length)
    for bad in ((0, pos, length), (1 << 32, pos, length), (wid, -1, length)):
        with pytest.raises(ValueError):
            file_backend.pattern(*bad)


def test_the_iomap_filesystems_of_the_catalogue() -> None:
    assert IOMAP_FS == ("overwrite", "xfs-like", "reflink", "btrfs-like") == tuple(KERNEL_FS)
    with pytest.raises(ValueError, match="legacy engine"):
        ImplBackend.for_fs("getblock")
    with pytest.raises(ValueError, match="unknown filesystem"):
        ImplBackend.for_fs("ext9")


def test_every_method_of_the_protocol(backend: ImplBackend) -> None:
    b, bs = backend, backend.caps.block_size
    caps = b.caps
    assert (caps.block_size, caps.logical_block_size, caps.page_size) == (4096, 512, 4096)
    assert caps.fault_buffers and caps.nowait and caps.remount and not caps.reflink
    assert b.name == f"impl {b.fs_name}"
    ino_a, ino_b = b.create("a"), b.create("b")
    assert ino_a != ino_b and sorted(b.files()) == ["a", "b"]
    with pytest.raises(FileExistsError):
        b.create("a")

    assert b.direct_write("a", 0, 3 * bs, 1, frozenset(), None) == 3 * bs
    assert b.direct_read("a", bs, bs, frozenset()) == (bs, pattern(1, bs, bs))
    b.create("c")  # a faulting write: what landed before the fault, or -EFAULT
    ret = b.direct_write("c", 0, 2 * bs, 2, frozenset({"DSYNC"}), bs)
    assert ret in (bs, EFAULT) and b.size("c") in (0, bs)
    assert b.read_view("c", 0, 2 * bs) == pattern(2, 0, b.size("c"))
    assert b.direct_write("a", bs, bs, 4, frozenset({"NOWAIT"}), None) in (bs, EAGAIN)
    assert b.buffered_write("b", 100, 1000, 3) == 1000
    assert b.buffered_read("b", 0, 4096) == (1100, bytes(100) + pattern(3, 100, 1000))
    assert b.fsync("b", data_only=True) == 0 and b.fsync("a", data_only=False) == 0
    assert b.remove("c") == 0 and sorted(b.files()) == ["a", "b"]
    assert b.direct_write("a", bs, bs, 1, frozenset(), None) == bs  # undo the NOWAIT one
    assert b.truncate("a", 2 * bs + 512) == 0 and b.size("a") == 2 * bs + 512
    assert b.fallocate("b", 2 * bs, bs, keep_size=True) == 0 and b.size("b") == 1100
    assert b.fallocate("b", 2 * bs, bs, keep_size=False) == 0 and b.size("b") == 3 * bs
    assert b.punch("a", 512, bs) == 0  # unaligned: two partial blocks zeroed
    assert b.read_view("a", 0, bs + 1024) == pattern(1, 0, 512) + bytes(bs) + pattern(
        1, bs + 512, 512
    )
    assert b.reflink("a", 0, "b", 0, bs) == EOPNOTSUPP
    assert b.drop_cache("b") == 0
    assert b.remount() == 0
    assert b.read_view("b", 0, 1100) == bytes(100) + pattern(3, 100, 1000)
    assert b.read_view("a", 2 * bs, bs) == pattern(1, 2 * bs, 512)  # short at EOF
    assert b.remove("a") == 0 and b.remove("a") == ENOENT
    assert list(b.files()) == ["b"]
    assert b.syscalls > 0


def test_punch_of_an_unaligned_range_zeroes_partial_blocks_up_to_eof(backend: ImplBackend) -> None:
    b, bs = backend, backend.caps.block_size
    b.create("f")
    assert b.direct_write("f", 0, 4 * bs, 7, frozenset(), None) == 4 * bs
    assert b.truncate("f", 3 * bs + 1024) == 0
    assert b.punch("f", bs + 512, 3 * bs) == 0  # [bs+512, 4bs+512): past EOF at 3bs+1024
    assert b.size("f") == 3 * bs + 1024  # KEEP_SIZE
    want = pattern(7, 0, bs + 512) + bytes(2 * bs + 512)
    assert b.read_view("f", 0, 4 * bs) == want
    assert b.buffered_read("f", 0, 4 * bs) == (len(want), want)
    assert b.remount() == 0 and b.read_view("f", 0, 4 * bs) == want


def test_queries_change_nothing(backend: ImplBackend) -> None:
    b = backend
    b.create("f")
    assert b.buffered_write("f", 0, 8192, 5) == 8192  # two dirty pages
    assert b.direct_write("f", 16384, 4096, 6, frozenset(), None) == 4096
    pc = b.world.pc
    assert pc is not None
    inode = b._inodes["f"]
    before = {i: (p.dirty, bytes(p.data)) for i, p in pc.pages(inode).items()}
    assert b.read_view("f", 0, 1 << 20) == pattern(5, 0, 8192) + bytes(8192) + pattern(
        6, 16384, 4096
    )
    assert b.size("f") == 20480 and list(b.files()) == ["f"]
    assert {i: (p.dirty, bytes(p.data)) for i, p in pc.pages(inode).items()} == before


def test_remount_writes_back_and_starts_with_an_empty_cache(backend: ImplBackend) -> None:
    b = backend
    b.create("f")
    assert b.buffered_write("f", 1000, 5000, 9) == 5000
    assert b.remount() == 0
    pc = b.world.pc
    assert pc is not None and not pc.pages(b._inodes["f"])
    assert b.size("f") == 6000
    assert b.direct_read("f", 0, 8192, frozenset()) == (6000, bytes(1000) + pattern(9, 1000, 5000))


@pytest.mark.parametrize("fs", IOMAP_FS)
def test_a_short_seeded_run_meets_only_the_seed_findings(fs: str, tmp_path: Path) -> None:
    with ImplBackend.for_fs(fs, image=tmp_path / "image") as b:
        rep = run_fast(b, seed=1, runs=3, ops=100, allow=allowed(fs))
    assert rep.runs == 3
    report = "\n".join(
        f"{f.failure.name} at op {f.failure.index}: {f.failure.message}\n" + "\n".join(f.story)
        for f in rep.failures
    )
    assert rep.failures == [], f"{fs}: {len(rep.failures)} failure(s)\n{report}"
    assert rep.steps == 300 and set(rep.allowed) <= allowed(fs)
