"""Stories the random profiles (dev seeds, nightly) and users found, pinned: each failed
once, on main, for the reason its comment gives, and must keep passing. A story is the
shrunk operation list as `dioconf run` printed it; the check is the harness's own
(model, oracle, implementation side by side), and the final check of every file."""

from __future__ import annotations

from typing import Any

import pytest
from dioconf.conformance.harness import Harness
from dioconf.conformance.ops import (
    BufferedWrite,
    CompleteBio,
    Crash,
    DirectRead,
    DirectWrite,
    Fallocate,
    FileWrite,
    Fsync,
    MmapDirty,
    Pick,
    Punch,
    Reflink,
    Truncate,
)

# issue 11: a direct write into a hole inside the in-core size, then a commit forced by
# another file's fsync: xfs_iomap_write_unwritten -> xfs_new_eof (ext4: i_disksize at
# the write's completion) moves the on-disk size to the write's end, a size the in-core
# size never had (checked on the real kernel: xfs and ext4 come back at 512)
ISSUE_11 = [BufferedWrite(file=0, pos=4096, length=512, wid=1),
            FileWrite(file=0, pos=0, length=512, wid=2, flags=()), Fsync(file=1), Crash()]
# the same on the legacy engine (no page cache in the harness: a direct write extends)
ISSUE_11_LEGACY = [DirectWrite(0, 4096, 512, 1), Truncate(0, 8192), Fsync(0),
                   DirectWrite(0, 0, 512, 2), Fsync(1), Crash()]

STORIES: dict[str, tuple[dict[str, Any], list[Any]]] = {
    **{f"issue-11-{fs}": ({"fs": fs}, ISSUE_11)
       for fs in ("overwrite", "xfs-like", "reflink", "btrfs-like")},
    "issue-11-getblock": ({"fs": "getblock", "engine": "legacy"}, ISSUE_11_LEGACY),
    # dev seed 17: a failed write's crash candidates merged with the neighbouring bytes'
    # (the truncate's zeroing mixed W1 and zeros inside one sector): boundaries kept
    "dev17-failed-write-keeps-boundaries": ({"fs": "xfs-like", "write_cache": False}, [
        Fsync(0), BufferedWrite(1, 0, 1024, 1), Fsync(1), Truncate(1, 513),
        DirectRead(1, 512, 512), Punch(1, 0, 4096),
        FileWrite(1, 0, 1024, 2, flags=("DSYNC", "NOWAIT")), Crash()]),
    # dev seed 10: writeback of a page an mmap dirtied moves the on-disk size to the
    # page's end (xfs_setfilesize at ioend), inside the in-core size
    "dev10-mmap-writeback-moves-disk-size": ({"fs": "reflink"}, [
        BufferedWrite(0, 16384, 512, 2), MmapDirty(0, 0), DirectWrite(0, 0, 4096, 3),
        Fsync(1), Crash()]),
    # dev seed 13: a direct write refused for alignment (-EINVAL) zeroed the EOF gap
    # first, tearing a sector the old size still covers
    "dev13-einval-write-zeroes-nothing": (
        {"fs": "getblock", "engine": "legacy", "write_cache": False}, [
            DirectWrite(0, 0, 1024, 1, flags=("DSYNC",)), Truncate(0, 1),
            DirectWrite(0, 513, 512, 2, flags=("DSYNC",)), Crash()]),
    # ci, once requests could run while one is in flight: a refused write's ->end_io
    # cancelled the COW staging of the write in flight (btrfs-like, reflink)
    "inflight-cow-staging-kept": ({"fs": "btrfs-like"}, [
        DirectWrite(0, 4096, 4096, 1, flags=("DSYNC",)),
        DirectWrite(0, 4096, 4096, 2, sync=False), DirectWrite(0, 0, 512, 3),
        Fallocate(0, 8192, 8192)]),
    "inflight-cow-staging-kept-reflink": ({"fs": "reflink"}, [
        DirectWrite(0, 0, 8192, 1), DirectWrite(0, 0, 8192, 2, sync=False),
        DirectWrite(1, 0, 512, 3), CompleteBio(0), Crash()]),
    # nightly: blocks a direct write allocated past EOF (ext4: written, the inode an
    # orphan) were committed by another file's fsync while the write was in flight; after
    # the crash nothing freed them (ext4_orphan_cleanup does) and a fallocate exposed them
    "nightly-orphan-blocks-freed-at-mount": ({"fs": "overwrite"}, [
        DirectWrite(1, 512, 12288, 2, dio=("PARTIAL",), sync=False, fault_at=4096),
        Fsync(0), Crash(), Fallocate(1, 0, 8192)]),
    "dev9-orphan-cleanup-committed": ({"fs": "reflink"}, [
        DirectWrite(0, 512, 8192, 2, dio=("PARTIAL",), sync=False, fault_at=4096),
        Fsync(0), Crash(), Crash(), Truncate(0, 65536)]),
    # dev seed 15: a block the last commit gives to another file (a reflink's source,
    # remapped away in core only) was overwritten in place; the crash brought the
    # commit back, and the other file showed this write's data: copy on write until
    # the commit no longer shares it
    "dev15-uncommitted-unshare-copies-on-write": ({"fs": "reflink", "write_cache": False}, [
        DirectWrite(0, 0, 8192, 1, dio=("PARTIAL",), fault_at=4096), Fsync(0), Reflink(0, 1),
        Truncate(0, 3585),
        DirectWrite(1, 3584, 8192, 2, dio=("PARTIAL",), fault_at=4096, plan=(Pick(0, -5),)),
        Crash()]),
    "nightly-orphan-blocks-freed-at-mount-reflink": ({"fs": "reflink"}, [
        DirectWrite(0, 3584, 12288, 2, dio=("PARTIAL",), sync=False, fault_at=4096),
        Fsync(0), Crash(), DirectWrite(0, 16384, 512, 3, flags=("DSYNC",))]),
    # nightly: truncate down inside a block left the old data past the new EOF on disk;
    # a later extension and crash showed it (xfs_setattr_size zeroes and writes it first)
    "nightly-truncate-zeroes-the-eof-block": ({"fs": "xfs-like"}, [
        DirectWrite(1, 0, 1024, 1, flags=("DSYNC",)), Truncate(1, 512), Fsync(0), Crash(),
        BufferedWrite(1, 0, 4096, 2), DirectWrite(1, 4096, 8192, 3), Fsync(0), Crash()]),
    # nightly, dev seed 2: a page-cache writeback's ->end_io cancelled the COW staging of
    # a direct write in flight (btrfs-like)
    "nightly-writeback-keeps-cow-staging": ({"fs": "btrfs-like"}, [
        Fallocate(0, 0, 4096), MmapDirty(0, 0), DirectWrite(0, 4096, 4096, 1, sync=False),
        Fsync(0), Fallocate(0, 12288, 8192)]),
    "dev2-buffered-fallback-keeps-cow-staging": ({"fs": "btrfs-like"}, [
        BufferedWrite(0, 0, 512, 1), DirectWrite(0, 4096, 8192, 2, sync=False),
        FileWrite(0, 0, 512, 3), Reflink(0, 1)]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STORIES))
def test_story_passes(name: str) -> None:
    config, ops = STORIES[name]
    with Harness(**config) as h:
        h.run(ops)
        h.check_all()


def test_the_issue_story_sees_the_size_the_kernel_shows() -> None:
    """The crash candidates of the issue's story include 512 (the write's end), which
    the implementation chooses (xfs_new_eof), besides the in-core sizes."""
    with Harness(fs="xfs-like") as h:
        h.run(ISSUE_11[:3])
        sizes = h.oracle.file(h.files[0].ino).sizes_since_sync
        assert 512 in sizes and 4608 in sizes
        h.run(ISSUE_11[3:])
        assert h.files[0].size == 512


# ci (test_check, derandomized): the ext4-like reference filesystem mapped one block of an
# OVERWRITE_ONLY write over two extents; the contract (iomap-operations.rst: "The entire
# file range must map to a single written or unwritten extent") wants -EAGAIN
def test_overwrite_only_write_over_two_extents_is_refused() -> None:
    from dioconf.conformance.check import checked
    from dioconf.impl.examples import FILESYSTEMS

    ops = [Truncate(0, 512), Fallocate(0, 0, 8192),
           DirectWrite(0, 512, 4096, 2, dio=("OVERWRITE_ONLY",), sync=False)]  # fmt: skip
    with Harness("overwrite", fs_factory=checked(FILESYSTEMS["overwrite"])) as h:
        h.run(ops)
        h.check_all()
