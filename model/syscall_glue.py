"""What a read or write system call returns, from the results of the iomap_dio_rw calls
it made: the filesystem glue around the engine, as Linux 6.18's ext4 and xfs have it,
and btrfs's from the seed (btrfs-direct-io.c).

ext4's and xfs's rules come from the host (named per rule); all are checked against
every recorded system call (``syscall`` lines, README). A buffered fallback is assumed
to do all it was given (up to EOF for a read): where the answer depends on something
else the model does not decide, ``syscall_result`` says so by returning None.
"""

from __future__ import annotations

from collections.abc import Sequence

from attrs import frozen

from .errno import EAGAIN, EFAULT, ENOTBLK

GLUE_FILESYSTEMS = ("ext4", "xfs", "btrfs")


@frozen
class SyscallResult:
    ret: int | None  # None: not decided by the direct I/O alone
    rule: str


def syscall_result(
    fs: str, op: str, length: int, nowait: bool, results: Sequence[int],
    pos: int = 0, i_size: int = 0, fault_at: int | None = None,
) -> SyscallResult:  # fmt: skip
    """``results``: what each iomap_dio_rw call of the system call returned, in order
    (an xfs retry after -EAGAIN is a second call; btrfs's retries carry done_before, so
    the last is cumulative); ``length``: the bytes asked for from ``pos``; ``i_size``:
    the file's size when the call returns (a btrfs read's buffered rest stops there);
    ``fault_at``: the user buffer cannot be read from that offset on (a fault the
    requests met), so a buffered write of the rest stops there too."""
    if fs not in GLUE_FILESYSTEMS:
        raise ValueError(f"no system call glue for {fs!r} (known: {', '.join(GLUE_FILESYSTEMS)})")
    if not results:
        raise ValueError("a system call without a direct I/O request has no glue here")
    last = results[-1]
    if fs == "btrfs":
        return _btrfs(op, length, nowait, results, pos, i_size, fault_at)
    fallback = op == "write" and (last == ENOTBLK or (fs == "ext4" and 0 <= last < length))
    if fallback and nowait:
        return SyscallResult(None, f"{fs}: a NOWAIT buffered fallback may answer -EAGAIN")
    if fallback and fault_at is not None:
        return _faulting_rest(fs, max(last, 0), fault_at)
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


def _faulting_rest(fs: str, done: int, fault_at: int) -> SyscallResult:
    """The buffered write of the rest of a direct write, from buffer offset ``done``,
    with the buffer unreadable from ``fault_at``: generic_perform_write copies up to the
    fault and returns what it wrote, or -EFAULT when that is nothing (its
    fault_in_iov_iter_readable fails); ext4_dio_write_iter and btrfs_direct_write return
    that error as the call's, whatever the direct part wrote ("if (err < 0) return err";
    "ret = written_buffered; goto out"), else the sum."""
    if fault_at <= done:
        return SyscallResult(EFAULT, f"{fs}: the buffered rest faults at once: its -EFAULT "
                             "is the result, the direct bytes are not counted")  # fmt: skip
    return SyscallResult(fault_at, f"{fs}: the buffered rest stops at the buffer's fault")


def _btrfs(op: str, length: int, nowait: bool, results: Sequence[int], pos: int,
           i_size: int, fault_at: int | None = None) -> SyscallResult:  # fmt: skip
    # -EFAULT with bytes left and no progress since the last try becomes -ENOTBLK
    # (btrfs_direct_write) or the bytes read so far (btrfs_direct_read): the rest goes
    # through the page cache
    last = results[-1]
    short = last in (ENOTBLK, EFAULT) or 0 <= last < length
    if op == "write":
        if not short:
            return SyscallResult(last, "btrfs_direct_write: iomap's (cumulative) result")
        if nowait:
            # btrfs_direct_write L913-921: no buffered fallback for NOWAIT
            return SyscallResult(EAGAIN, "btrfs_direct_write: NOWAIT, no buffered fallback")
        if fault_at is not None:
            done = next((x for x in reversed(results) if x > 0), 0)
            return _faulting_rest("btrfs", done, fault_at)
        return SyscallResult(length, "btrfs_direct_write: a buffered write finishes it")
    # "if (ret > 0) read = ret": the last positive result, cumulative (done_before)
    done = next((x for x in reversed(results) if x > 0), 0)
    if last < 0 and not short:
        return SyscallResult(last, "btrfs_direct_read: iomap's error")
    if not short or pos + done >= i_size:
        return SyscallResult(done, "btrfs_direct_read: iomap's (cumulative) result")
    if nowait:  # filemap_read with IOCB_NOWAIT may stop short or answer -EAGAIN
        return SyscallResult(None, "btrfs_file_read_iter: a NOWAIT buffered read")
    # btrfs_file_read_iter: filemap_read() of the rest, up to EOF
    return SyscallResult(min(length, i_size - pos),
                         "btrfs_file_read_iter: a buffered read finishes it, up to EOF")
