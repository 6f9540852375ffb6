"""Built-in workloads for ``dioconf record``: one file each, one trace each.

Each scenario's docstring becomes the trace's note. Expected syscall results are what
a user of O_DIRECT is promised (byte counts, errno), not what the model predicts.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from attrs import frozen

from .workload import Workload

KIB, MIB = 1024, 1 << 20
F = "f"


@frozen
class Scenario:
    name: str
    run: Callable[[Workload], None]
    write_cache: bool | None = None  # loop device write cache for this scenario
    filesystems: tuple[str, ...] = ("ext4", "xfs", "btrfs")
    # False: a reproduction of a finding (its checks fail on Linux 6.18), run by name only
    default: bool = True
    fuse: bool = False  # the image served through FUSE: the workload can make I/O fail

    @property
    def note(self) -> str:
        return " ".join((self.run.__doc__ or self.name).split())


def aligned_rw(w: Workload) -> None:
    """Aligned O_DIRECT reads and overwrites of a file written through the page cache."""
    w.buffered_write(F, 0, 64 * KIB)
    w.pread(F, 4 * KIB, 8 * KIB, expect=8 * KIB)
    w.pwrite(F, 16 * KIB, 8 * KIB, expect=8 * KIB)
    w.pread(F, 0, 64 * KIB, expect=64 * KIB)


def short_read_eof(w: Workload) -> None:
    """Short reads at i_size: a read crossing EOF returns i_size - pos; reads at and
    after EOF return 0."""
    w.buffered_write(F, 0, 10000)
    w.pread(F, 0, 16 * KIB, expect=10000)
    w.pread(F, 8 * KIB, 8 * KIB, expect=10000 - 8 * KIB)
    w.pread(F, 12 * KIB, 4 * KIB, expect=0)
    w.pread(F, 1 * MIB, 4 * KIB, expect=0)


def holes(w: Workload) -> None:
    """Reads of a sparse file: holes read as zeros without I/O; data around them."""
    w.truncate(F, 1 * MIB)
    w.buffered_write(F, 256 * KIB, 8 * KIB)
    w.pread(F, 0, 64 * KIB, expect=64 * KIB)
    w.pread(F, 248 * KIB, 24 * KIB, expect=24 * KIB)
    w.expect_extent(F, 0, mapped=False)
    w.expect_extent(F, 256 * KIB, unwritten=False)


def unwritten(w: Workload) -> None:
    """fallocate'd (unwritten) extents: reads return zeros; writes convert them."""
    w.fallocate(F, 0, 256 * KIB)
    w.expect_extent(F, 4 * KIB, unwritten=True)
    w.pread(F, 0, 16 * KIB, expect=16 * KIB)
    w.pwrite(F, 4 * KIB, 8 * KIB, expect=8 * KIB)
    w.pread(F, 0, 16 * KIB, expect=16 * KIB)
    w.expect_extent(F, 4 * KIB, unwritten=False)  # converted at completion (end_io)
    w.expect_extent(F, 64 * KIB, unwritten=True)


def subblock_writes(w: Workload) -> None:
    """Sub-block (512-byte) writes into a new block, an unwritten block and a written
    block; the rest of each block must read back as zeros or old data."""
    w.pwrite(F, 0, 512, expect=512)
    w.fallocate(F, 64 * KIB, 64 * KIB)
    w.pwrite(F, 64 * KIB + 512, 1024, expect=1024)
    w.buffered_write(F, 128 * KIB, 8 * KIB)
    w.pwrite(F, 128 * KIB + 1024, 512, expect=512)
    w.pread(F, 64 * KIB, 4 * KIB, expect=4 * KIB)


def extending_writes(w: Workload) -> None:
    """Writes that extend i_size, aligned and ending inside a block."""
    w.buffered_write(F, 0, 8 * KIB)
    w.pwrite(F, 8 * KIB, 8 * KIB, expect=8 * KIB)
    w.pwrite(F, 16 * KIB, 1536, expect=1536)
    w.pread(F, 0, 32 * KIB, expect=16 * KIB + 1536)


def dsync_cache_on(w: Workload) -> None:
    """O_DSYNC and O_SYNC writes with the loop device's volatile write cache on: no FUA
    (the loop device has none), so completion must flush."""
    w.buffered_write(F, 0, 64 * KIB)
    w.pwrite(F, 0, 4 * KIB, flags=("DSYNC",), expect=4 * KIB)
    w.pwrite(F, 8 * KIB, 4 * KIB, flags=("SYNC",), expect=4 * KIB)
    w.pwrite(F, 60 * KIB, 8 * KIB, flags=("DSYNC",), expect=8 * KIB)


def dsync_cache_off(w: Workload) -> None:
    """O_DSYNC writes with the loop device's write cache off: iomap may write through
    with FUA; the block layer drops REQ_FUA for a device without a volatile cache."""
    w.buffered_write(F, 0, 64 * KIB)
    w.pwrite(F, 0, 4 * KIB, flags=("DSYNC",), expect=4 * KIB)
    w.pwrite(F, 8 * KIB, 4 * KIB, flags=("SYNC",), expect=4 * KIB)


def nowait(w: Workload) -> None:
    """RWF_NOWAIT: while the page cache holds the range (after a buffered write) a
    NOWAIT write cannot invalidate it without waiting and fails with EAGAIN; once the
    cache is dropped an overwrite of allocated blocks may go ahead (NOWAIT only promises
    not to block: xfs sometimes still answers EAGAIN), and a write that needs
    allocation fails with EAGAIN."""
    w.buffered_write(F, 0, 64 * KIB)
    w.pwrite(F, 0, 4 * KIB, flags=("NOWAIT",), expect="EAGAIN")
    w.drop_caches(F)
    w.pwrite(F, 0, 4 * KIB, flags=("NOWAIT",), expect=(4 * KIB, "EAGAIN"))
    w.pwrite(F, 1 * MIB, 4 * KIB, flags=("NOWAIT",), expect="EAGAIN")
    w.pread(F, 0, 4 * KIB, flags=("NOWAIT",), expect=4 * KIB)


def misaligned(w: Workload) -> None:
    """Requests not aligned to the logical block size: ext4 and xfs fail them with
    EINVAL (xfs before iomap, ext4 in iomap_dio_bio_iter); btrfs falls back to buffered
    I/O (check_direct_IO) and they succeed."""
    w.buffered_write(F, 0, 64 * KIB)
    btrfs = w.m.fs == "btrfs"
    w.pread(F, 100, 4 * KIB, expect=4 * KIB if btrfs else "EINVAL")
    w.pwrite(F, 4 * KIB, 1000, expect=1000 if btrfs else "EINVAL")


def large_io(w: Workload) -> None:
    """A 4 MiB write and read: several bios (at most 256 pages each from 4 KiB pages)."""
    w.pwrite(F, 0, 4 * MIB, expect=4 * MIB)
    w.pread(F, 0, 4 * MIB, expect=4 * MIB)


def reflink_cow(w: Workload) -> None:
    """A reflinked (shared) file: an O_DIRECT overwrite must copy on write (SHARED)."""
    w.buffered_write("src", 0, 64 * KIB)
    w.reflink("src", F)
    w.expect_extent(F, 8 * KIB, shared=True)
    w.pwrite(F, 8 * KIB, 8 * KIB, expect=8 * KIB)
    w.pread(F, 0, 32 * KIB, expect=32 * KIB)
    w.expect_extent(F, 8 * KIB, shared=False)  # remapped at completion
    w.expect_extent(F, 32 * KIB, shared=True)


def faulting_buffers(w: Workload) -> None:
    """Reads into user buffers whose pages were never touched. ext4 and xfs fault them
    in while pinning; btrfs reads with a no-fault iterator, so iomap stops with -EFAULT:
    over data btrfs_dio_iomap_end turns that into -ENOTBLK (buffered fallback), over a
    hole the -EFAULT comes back and btrfs faults the pages in and retries."""
    w.buffered_write(F, 0, 64 * KIB)
    w.drop_caches(F)
    w.truncate(F, 1 * MIB)
    w.prefault = False
    w.pread(F, 0, 16 * KIB, expect=16 * KIB)
    w.pread(F, 512 * KIB, 16 * KIB, expect=16 * KIB)
    w.prefault = True


def swallowed_fault(w: Workload) -> None:
    """Extending writes from a buffer whose third page cannot be pinned (PROT_NONE). The
    first two pages go out and iomap_dio_bio_iter drops the -EFAULT after that progress.
    At a block boundary the next iteration pins nothing and returns -EFAULT: the write
    fails. Off a block boundary (the write starts at 512) it zeroes the tail of the
    block at EOF first, and that return (0) replaces the -EFAULT: no tracepoint shows
    the fault, and the write returns 8 KiB."""
    w.pwrite(F, 0, 16 * KIB, expect="EFAULT", bad_page=8 * KIB)
    w.pwrite("g", 512, 16 * KIB, expect=8 * KIB, bad_page=8 * KIB)


def eof_zeroing(w: Workload) -> None:
    """Sub-block writes at the end of a file whose last block is written (MAPPED, not
    NEW), i_size 4.5 KiB: a write ending exactly at i_size and one ending past it must
    zero the rest of their block (EOF tail zeroing); the second starts inside i_size
    and ends past it, so xfs's first, OVERWRITE_ONLY try exits early with EAGAIN. A
    write starting inside a hole's block past EOF gets a NEW block: its head is zeroed
    too. The file must read back with zeros wherever nothing was written."""
    w.buffered_write(F, 0, 8 * KIB)
    w.truncate(F, 4 * KIB + 512)
    w.drop_caches(F)
    w.pwrite(F, 4 * KIB, 512, expect=512)
    w.pwrite(F, 4 * KIB, 1024, expect=1024)
    w.pwrite(F, 16 * KIB + 512, 512, expect=512)
    w.pread(F, 0, 20 * KIB, expect=16 * KIB + 1024)


def partial_faults(w: Workload) -> None:
    """O_DIRECT through user buffers whose later pages were never touched. ext4 and xfs
    fault them in while pinning; btrfs pins with a no-fault iterator: its bios stop at
    the first untouched page, after progress. Over data btrfs_dio_iomap_end turns the
    shortfall into -ENOTBLK; in a hole the zero fill faults and iomap returns the
    bytes done (IOMAP_DIO_PARTIAL). btrfs then faults the pages in and goes on with
    done_before = the bytes already done: every call must return its full length."""
    w.buffered_write(F, 0, 64 * KIB)
    w.truncate(F, 1 * MIB)
    w.drop_caches(F)
    w.pread(F, 0, 16 * KIB, touched=8 * KIB, expect=16 * KIB)
    w.pread(F, 56 * KIB, 16 * KIB, touched=8 * KIB, expect=16 * KIB)
    w.pwrite(F, 128 * KIB, 16 * KIB, touched=8 * KIB, expect=16 * KIB)
    w.pwrite(F, 8 * KIB, 16 * KIB, touched=4 * KIB, expect=16 * KIB)
    w.pread(F, 0, 160 * KIB, expect=160 * KIB)
    # asynchronous and NOWAIT: a PARTIAL request does not wait for its bios (btrfs
    # returns the short count, it cannot block to fault the pages in)
    w.aio([("read", F, 0, 16 * KIB, ("NOWAIT",), (8 * KIB, 16 * KIB, "EAGAIN"), 8 * KIB)])
    w.aio([("read", F, 56 * KIB, 16 * KIB, (), 16 * KIB, 8 * KIB)])


def bio_errors(w: Workload) -> None:
    """Reads whose bios fail: the image is served through FUSE, which answers EIO for
    the device range of the file's first extent and ENODATA for its second (the loop
    driver hands the errno on as the block request's status). A read of both extents
    fails with the error of the bio that completed first (iomap_dio_set_error: first
    error wins), synchronous or not; a 16 MiB read whose first 1 MiB fails stops
    submitting bios once it sees the error (its buffer maps a file that must be read
    in while pinning). Nothing is left failing afterwards."""
    assert w.m.disk is not None
    w.buffered_write(F, 0, 64 * KIB)
    w.drop_caches(F)
    w.buffered_write("spacer", 0, 1 * MIB)  # keeps the two extents of f apart
    w.drop_caches("spacer")
    w.buffered_write(F, 64 * KIB, 64 * KIB)
    w.drop_caches(F)
    first, second = _device_ranges(w, F, 0, 64 * KIB), _device_ranges(w, F, 64 * KIB, 64 * KIB)
    for start, length in first:
        w.m.disk.fail(start, length, errno.EIO, "read")
    for start, length in second:
        w.m.disk.fail(start, length, errno.ENODATA, "read")
    w.pread(F, 0, 128 * KIB, expect=("EIO", "ENODATA"))
    w.aio([("read", F, 0, 128 * KIB, (), ("EIO", "ENODATA"))])
    w.aio([("read", F, 64 * KIB, 64 * KIB, (), "ENODATA")])
    w.m.disk.clear()
    w.pwrite("big", 0, 16 * MIB, expect=16 * MIB)
    w.buffered_write("buf", 0, 16 * MIB)
    for start, length in _device_ranges(w, "big", 0, 1 * MIB):
        w.m.disk.fail(start, length, errno.EIO, "read")
    # the buffer maps a file not in the page cache: pinning sleeps on its reads, the
    # block plug is flushed and the first bio fails while later ones are being built
    w.pread("big", 0, 16 * MIB, expect="EIO", buffer_from="buf")
    w.m.disk.clear()


def writeback_error(w: Workload) -> None:
    """A direct read first writes back the dirty page cache over its range
    (kiocb_write_and_wait); when that writeback fails (the FUSE disk answers EIO to
    writes there) the read fails with the error, before any mapping, and fsync
    reports it too. The range is then written again, directly."""
    _failed_writeback(w)
    w.pwrite(F, 0, 16 * KIB, expect=16 * KIB)
    w.pread(F, 0, 16 * KIB, expect=16 * KIB)


def _failed_writeback(w: Workload) -> None:
    assert w.m.disk is not None
    w.fallocate(F, 0, 64 * KIB)  # unwritten: where writeback will go is known
    for start, length in _device_ranges(w, F, 0, 64 * KIB):
        w.m.disk.fail(start, length, errno.EIO, "write")
    w.buffered_write(F, 0, 16 * KIB, sync=False)
    w.pread(F, 0, 16 * KIB, expect="EIO")
    w.fsync(F, expect="EIO")
    w.m.disk.clear()


def rewrite_after_writeback_error(w: Workload) -> None:
    """Finding (ext4): after a writeback into an unwritten extent failed, the same range
    is written again through the page cache and fsync succeeds, yet the extent stays
    unwritten: the data reads back as zeros (here through O_DIRECT; a buffered read
    after the cache is dropped too). xfs converts it."""
    _failed_writeback(w)
    w.buffered_write(F, 0, 16 * KIB)
    w.pread(F, 0, 16 * KIB, expect=16 * KIB)


def _device_ranges(w: Workload, name: str, pos: int, length: int) -> list[tuple[int, int]]:
    """Where the file's bytes [pos, pos + length) lie on the device (FIEMAP)."""
    out = []
    for e in w.fiemap(name):
        lo, hi = max(pos, e["logical"]), min(pos + length, e["logical"] + e["length"])
        if lo < hi:
            out.append((e["physical"] + lo - e["logical"], hi - lo))
    if sum(n for _, n in out) != length:
        raise RuntimeError(f"{name} [{pos}, {pos + length}) is not all mapped: {out}")
    return out


def async_rw(w: Workload) -> None:
    """Asynchronous (Linux native AIO) overwrites and reads in flight together: the
    submitter may get -EIOCBQUEUED and the last bio completes the request."""
    w.buffered_write(F, 0, 256 * KIB)
    w.drop_caches(F)
    w.aio(
        [("write", F, i * 32 * KIB, 16 * KIB, (), 16 * KIB) for i in range(4)]
        + [("read", F, 160 * KIB + i * 16 * KIB, 16 * KIB, (), 16 * KIB) for i in range(4)]
    )


def async_extending(w: Workload) -> None:
    """Asynchronous writes that extend the file, one after the other."""
    w.buffered_write(F, 0, 64 * KIB)
    w.drop_caches(F)
    for i in range(3):
        w.aio([("write", F, 64 * KIB + i * 16 * KIB, 16 * KIB, (), 16 * KIB)])


def async_dsync(w: Workload) -> None:
    """Asynchronous O_DSYNC overwrites: completion must sync, in process context."""
    w.buffered_write(F, 0, 128 * KIB)
    w.drop_caches(F)
    w.aio([("write", F, i * 32 * KIB, 8 * KIB, ("DSYNC",), 8 * KIB) for i in range(3)])


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("aligned-rw", aligned_rw),
        Scenario("short-read-eof", short_read_eof),
        Scenario("holes", holes),
        Scenario("unwritten", unwritten),
        Scenario("subblock-writes", subblock_writes),
        Scenario("extending-writes", extending_writes),
        Scenario("dsync-cache-on", dsync_cache_on, write_cache=True),
        Scenario("dsync-cache-off", dsync_cache_off, write_cache=False),
        Scenario("nowait", nowait),
        Scenario("misaligned", misaligned),
        Scenario("large-io", large_io),
        Scenario("reflink-cow", reflink_cow, filesystems=("xfs", "btrfs")),
        Scenario("faulting-buffers", faulting_buffers),
        Scenario("eof-zeroing", eof_zeroing),
        Scenario("partial-faults", partial_faults),
        Scenario("bio-errors", bio_errors, filesystems=("ext4", "xfs"), fuse=True),
        Scenario("writeback-error", writeback_error, filesystems=("ext4", "xfs"), fuse=True),
        Scenario("rewrite-after-writeback-error", rewrite_after_writeback_error,
                 filesystems=("ext4", "xfs"), default=False, fuse=True),
        Scenario("swallowed-fault", swallowed_fault, filesystems=("ext4", "xfs"), default=False),
        Scenario("async-rw", async_rw),
        Scenario("async-extending", async_extending),
        Scenario("async-dsync", async_dsync),
    )
}
