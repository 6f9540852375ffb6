"""What a read or write system call returns, from the results of the iomap_dio_rw calls
it made: the filesystem glue around the engine, as Linux 6.18's ext4 and xfs have it.

The seeds hold only the engine (and btrfs's glue, which traces show as requests with
``done_before``); these rules come from the host's ext4 and xfs (named per rule) and
are checked against every recorded system call (``syscall`` lines, README). Where the
answer depends on something outside the model (a buffered write's own result, which
may fail), ``syscall_result`` says so by returning None.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

from .errno import ENOTBLK

GLUE_FILESYSTEMS = ("ext4", "xfs")


@frozen
class SyscallResult:
    ret: int | None  # None: not decided by the direct I/O alone
    rule: str


def syscall_result(
    fs: str, op: str, length: int, nowait: bool, results: Sequence[int]
) -> SyscallResult:
    """``results``: what each iomap_dio_rw call of the system call returned, in order
    (an xfs retry after -EAGAIN is a second call); ``length``: the bytes asked for."""
    if fs not in GLUE_FILESYSTEMS:
        raise ValueError(f"no system call glue for {fs!r} (known: {', '.join(GLUE_FILESYSTEMS)})")
    if not results:
        raise ValueError("a system call without a direct I/O request has no glue here")
    last = results[-1]
    fallback = op == "write" and (last == ENOTBLK or (fs == "ext4" and 0 <= last < length))
    if fallback and nowait:
        return SyscallResult(None, f"{fs}: a NOWAIT buffered fallback may answer -EAGAIN")
    if fallback and last == ENOTBLK:
        # ext4_dio_write_iter (ret = 0, then ext4_buffered_write_iter) and
        # xfs_file_write_iter (-ENOTBLK: xfs_file_buffered_write): all through the cache
        return SyscallResult(length, f"{fs}: -ENOTBLK from iomap_dio_rw, buffered write of it all")
    if fallback:
        # ext4_dio_write_iter: a short direct write is finished by a buffered write, and
        # the sum is returned (an error of that buffered write replaces it: a finding)
        return SyscallResult(length, "ext4_dio_write_iter: a buffered write finishes it")
    # xfs_file_dio_read/write, ext4_dio_read_iter/write_iter: iomap_dio_rw's result
    return SyscallResult(last, f"{fs}: iomap_dio_rw's result, returned as it is")
