"""What a crash may bring back, rule by rule, per filesystem family, with the kernel
function each rule comes from. The oracle (``oracle_state.py``) allows the union of the
families (the suite's reference filesystems and a user's own are not told apart), so a
rule listed for one family only is still allowed for all; the table says where each
comes from, and is what the real-kernel crash states (issue 15) will check per family.

Families: ``xfs`` (xfs-like, reflink), ``ext4`` (overwrite), ``btrfs`` (btrfs-like),
``ext2`` (getblock, the legacy engine: no journal).
"""

from __future__ import annotations

from attrs import frozen


@frozen
class CrashRule:
    name: str
    families: tuple[str, ...]
    says: str
    kernel: str  # the function(s) the rule follows


ALL = ("xfs", "ext4", "btrfs", "ext2")

CRASH_RULES: tuple[CrashRule, ...] = (
    CrashRule("data-since-sync", ALL,
              "each sector holds its value at the last fsync or any value written since "
              "(a volatile write cache keeps any subset of the writes; bios are "
              "sector-atomic)",
              "blk-flush (REQ_PREFLUSH / REQ_FUA), submit_bio"),
    CrashRule("fsync-durable", ALL,
              "after fsync(2) returned 0, the file's data and metadata are what it held",
              "xfs_file_fsync, ext4_sync_file, btrfs_sync_file, generic_file_fsync (ext2)"),
    CrashRule("dsync-durable", ALL,
              "an acknowledged O_DSYNC/O_SYNC direct write, and an i_size covering it",
              "iomap_dio_complete -> generic_write_sync (or FUA under WRITE_THROUGH); "
              "dio_complete -> generic_write_sync (legacy)"),
    CrashRule("failed-write-any-sector", ALL,
              "a write that failed or was in flight: any of its sectors may have landed, "
              "also past a truncated EOF that the crash brings back",
              "iomap_dio_bio_end_io (bios complete independently), xfs_setattr_size"),
    CrashRule("size-in-core", ALL,
              "any i_size the file had in core since its last fsync",
              "btrfs_inode_safe_disk_i_size_write (disk_i_size = i_size with NO_HOLES); "
              "ext2 mark_inode_dirty (the inode is written back at any time); "
              "xfs_setattr_size / ext4_setattr (truncate, logged)"),
    CrashRule("size-at-dio-end", ("xfs", "ext4"),
              "a completed direct write moves the on-disk size to its end clamped to the "
              "in-core size, a size the in-core one may never have had",
              "xfs_dio_write_end_io -> xfs_iomap_write_unwritten(update_isize) -> "
              "xfs_new_eof, xfs_setfilesize; ext4_dio_write_end_io -> "
              "ext4_handle_inode_extension (i_disksize)"),
    CrashRule("size-at-writeback", ("xfs", "ext4"),
              "writeback of a dirty page (a buffered write's, an mmap write's, the old EOF "
              "page a write past EOF zeroed) moves the on-disk size to the page's end "
              "clamped to the in-core size",
              "xfs_end_ioend -> xfs_setfilesize; ext4 mpage_map_and_submit_extent "
              "(i_disksize after the I/O is submitted)"),
    CrashRule("truncate-tail-zeroed", ("xfs", "ext4", "ext2"),
              "truncate down inside a block zeroes the rest of that block on disk before "
              "the size commits: a crash that undoes the truncate may show the zeros",
              "xfs_setattr_size -> xfs_truncate_page + filemap_write_and_wait_range; "
              "ext4_block_truncate_page; block_truncate_page (ext2)"),
    CrashRule("orphan-cleanup", ("ext4",),
              "blocks a direct write allocated past EOF, committed before it completed, "
              "are freed at mount: they never show inside a later EOF",
              "ext4_dio_write_iter -> ext4_orphan_add; ext4_orphan_cleanup"),
    CrashRule("no-stale-data", ALL,
              "no crash state shows data that was never written to the file and is not "
              "zero (unwritten extents, NEW blocks zeroed, busy extents not reused before "
              "their free commits)",
              "iomap_dio_bio_iter need_zeroout; xfs busy extents (xfs_extent_busy_*); "
              "ext4_truncate_failed_write"),
)
