"""A whole implementation stack in one object: device, filesystem, scheduler, engine
and trace recorder, with system-call-like operations on top.

    w = World(XfsLikeFs)
    f = w.create()
    w.pwrite(f, 0, b"x" * 4096, flags={"DSYNC"})
    w.pread(f, 0, 4096).data
    w.crash()
    w.save_trace("out.jsonl")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import EIOCBQUEUED, Inode, Kiocb
from .iomap_dio import DioEnv, iomap_dio_rw
from .sched import Deterministic, Schedule, Threaded, UserBuffer, in_order
from .trace import TraceRecorder


@dataclass(slots=True)
class Result:
    ret: int  # what the request returned, or (async) what ->ki_complete received
    queued: bool = False  # the submitter got -EIOCBQUEUED
    data: bytes = b""  # what a read put into the user buffer (up to ret bytes)
    # an async request: ->ki_complete's result lands here when it completes (settle=False)
    completion: list[int] | None = None
    req: int = 0  # the request's number in the trace


LOFF_MAX = (1 << 63) - 1
_NONE: frozenset[str] = frozenset()


def _check_request(op: str, pos: int, length: int, done_before: int, fault_at: int | None,
                   page_size: int) -> None:  # fmt: skip
    """Requests the kernel would refuse before any direct-I/O code runs (the one place
    these are checked: the common case costs two type tests and a comparison)."""
    if type(pos) is not int or type(done_before) is not int or pos < 0 or done_before < 0:
        for name, value in (("pos", pos), ("done_before", done_before)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{op}: {name} must be a non-negative integer, got {value!r}")
    if pos + length > LOFF_MAX:
        raise ValueError(f"{op}: pos {pos} + length {length} overflows loff_t (2**63 - 1)")
    if fault_at is not None and (fault_at < 0 or fault_at % page_size):
        raise ValueError(
            f"{op}: fault_at must be a non-negative multiple of the page size {page_size}, "
            f"got {fault_at}"
        )


class World:
    def __init__(
        self,
        fs_factory: Callable[[Any], Any],
        *,
        device: Any = None,
        image: str | Path | None = None,
        size: int = 1 << 30,
        logical_block_size: int = 512,
        write_cache: bool = True,
        fua: bool = False,
        threaded: bool = False,
        schedule: Schedule = in_order,
        record: bool = True,
        page_size: int = 4096,
        engine: str = "iomap",
        page_cache: bool = False,
    ) -> None:
        if engine not in ("iomap", "legacy"):
            raise ValueError(f"engine must be 'iomap' or 'legacy', got {engine!r}")
        self.engine = engine
        if device is None:
            from .device import ImageDevice

            # an existing image keeps its recorded size and block size
            exists = image is not None and Path(image).exists()
            device = ImageDevice(image, None if exists else size,
                                 logical_block_size=None if exists else logical_block_size,
                                 write_cache=write_cache, fua=fua)  # fmt: skip
        self.device = device
        self.fs = fs_factory(device)
        self.sched = Threaded(device) if threaded else Deterministic(device, schedule)
        self.page_size = page_size
        geometry = {
            "fs_block_size": self.fs.block_size,
            "logical_block_size": device.logical_block_size,
            "page_size": page_size,
            "write_cache": device.write_cache,
            "fua": device.fua,
        }
        profile = getattr(self.fs, "profile", None)
        self.trace = (
            TraceRecorder(engine, geometry, fs=self.fs.name, profile=profile) if record else None
        )
        self.env = DioEnv(
            fs=self.fs, sched=self.sched, lbs=device.logical_block_size,
            write_cache=device.write_cache, fua=device.fua, page_size=page_size,
            trace=self.trace, fsync=lambda inode, pos, n: self.fs.fsync(inode),
        )  # fmt: skip
        self.req = 0
        self.pc = None
        if page_cache:
            from .pagecache import PageCache

            self.pc = PageCache(self.fs, device, page_size).bind(self.env, fsync=True)

    # -- files --------------------------------------------------------------------

    def create(self) -> Inode:
        return self.fs.create()

    def fsync(self, inode: Inode | None = None) -> int:
        if self.pc is not None and inode is not None:
            return self.pc.fsync(inode)
        return self.fs.fsync(inode)

    def zero_eof(self, inode: Inode, new_end: int) -> None:
        """Before i_size moves up to ``new_end`` (a write past EOF, truncate or fallocate
        growing the file): the rest of the EOF block is zeroed, as xfs_file_write_checks
        and xfs_setattr_size do with iomap_zero_range, so that whatever a failed write
        left past the old EOF never shows."""
        size, bs = inode.size, self.fs.block_size
        if new_end <= size or not size % bs:
            return
        self._zero_block_tail(inode, size, min(new_end, size - size % bs + bs))

    def _zero_block_tail(self, inode: Inode, start: int, end: int) -> None:
        """Zero ``[start, end)`` (inside one block) where the file holds data, written
        back at once, so that it is as durable as the i_size change it comes before."""
        if self.pc is not None:
            self.pc.zero_range(inode, start, end)
            self.pc.writeback(inode, start, end - start)
            return
        m = self.fs.extent_at(inode, start, end - start)
        if m.type != "MAPPED" or m.addr is None:
            return  # a hole or unwritten block reads as zeros already
        lbs = self.device.logical_block_size
        addr = m.addr + start - m.offset
        lo, hi = addr - addr % lbs, -(-(addr + end - start) // lbs) * lbs
        block = self.device.read(lo, hi - lo)
        block[addr - lo : addr - lo + end - start] = bytes(end - start)
        self.device.write(lo, block)

    def truncate(self, inode: Inode, size: int) -> None:
        """truncate(2): the page cache first (it zeroes the tail of a partial EOF page).
        Down to a size inside a block, the rest of that block is zeroed and written
        before the size changes (xfs_setattr_size: xfs_truncate_page, then
        filemap_write_and_wait_range when it zeroed), so that old data past the new EOF
        never comes back inside a later EOF."""
        bs = self.fs.block_size
        if size < inode.size and size % bs:
            self._zero_block_tail(inode, size, min(inode.size, size - size % bs + bs))
        self.zero_eof(inode, size)
        if self.pc is not None:
            self.pc.truncate(inode, size)
        else:
            self.fs.truncate(inode, size)

    def punch(self, inode: Inode, pos: int, length: int) -> None:
        """fallocate(PUNCH_HOLE | KEEP_SIZE) of whole blocks: the range is written back
        and evicted from the page cache, then the filesystem frees the blocks."""
        bs = self.fs.block_size
        if pos % bs or length % bs:
            raise ValueError(f"punch: [{pos}, {pos + length}) is not {bs}-byte block aligned")
        if self.pc is not None:
            self.pc.writeback(inode, pos, length)
            self.pc.evict(inode, pos, length)
        self.fs.punch(inode, pos, length)

    def fallocate(self, inode: Inode, pos: int, length: int, keep_size: bool = False) -> None:
        """fallocate(2) mode 0 or KEEP_SIZE: unwritten blocks where there are holes."""
        if not keep_size:
            self.zero_eof(inode, pos + length)
        self.fs.fallocate(inode, pos, length, keep_size)

    def reflink(self, src: Inode, dst: Inode) -> None:
        """FICLONE: both files written back, dst's pages evicted, then the clone."""
        if self.pc is not None:
            self.pc.writeback(src)
            self.pc.writeback(dst)
            self.pc.evict(dst, 0)
        self.fs.reflink(src, dst)

    def crash(self) -> None:
        """Power failure: bios in flight are lost, so is everything not durable."""
        if self.sched.threaded:
            self.sched.drain()  # worker threads finish what they hold
        else:
            self.sched.inflight.clear()
        if self.pc is not None:
            self.pc.crash()
        self.fs.crash()

    # -- system calls ---------------------------------------------------------------

    def _need_pc(self) -> Any:
        if self.pc is None:
            raise ValueError("this World has no page cache (World(..., page_cache=True))")
        return self.pc

    def buffered_write(self, inode: Inode, pos: int, data: bytes) -> int:
        pc = self._need_pc()
        self.zero_eof(inode, pos)
        return pc.buffered_write(inode, pos, data)

    def buffered_read(self, inode: Inode, pos: int, length: int) -> bytes:
        return self._need_pc().buffered_read(inode, pos, length)

    def file_write(self, inode: Inode, pos: int, data: bytes, *, flags: Iterable[str] = (),
                   fault_at: int | None = None, inaccessible: bool = False) -> int:  # fmt: skip
        """pwrite(2) on an O_DIRECT file descriptor: the filesystem's direct write,
        with its fallbacks to buffered I/O. A filesystem with ``direct_write`` (the
        btrfs-like one) decides itself; otherwise, as ext4_dio_write_iter: what direct
        I/O did not write (-ENOTBLK, or a short count unless the filesystem's
        ``short_write_fallback`` is False, as xfs's) goes through the page cache, and
        an error of that buffered write is the result (the direct bytes stay written).
        ``fault_at``: the user buffer cannot be pinned from there on; ``inaccessible``:
        nor faulted in (PROT_NONE), so a retry after fault-in and the buffered copy of
        the rest stop there too (generic_perform_write: -EFAULT when nothing copied)."""
        own = getattr(self.fs, "direct_write", None)
        if own is not None:
            return int(own(self, inode, pos, data, frozenset(flags), fault_at,
                           inaccessible=inaccessible))  # fmt: skip
        ret = self.pwrite(inode, pos, data, flags=flags, fault_at=fault_at).ret
        if ret >= 0 and not getattr(self.fs, "short_write_fallback", True):
            return ret  # xfs_file_dio_write: a short count is the result
        done = 0 if ret == -15 else ret  # ENOTBLK: nothing written directly
        if done < 0 or done == len(data):
            return done
        stop = fault_at - done if inaccessible and fault_at is not None else None
        n = self.buffered_fallback(inode, pos + done, data[done:], flags, fault_at=stop)
        return n if n < 0 else done + n  # ext4_dio_write_iter: "if (err < 0) return err"

    def buffered_fallback(self, inode: Inode, pos: int, data: bytes, flags: Iterable[str] = (),
                          fault_at: int | None = None) -> int:  # fmt: skip
        """The rest of a direct write through the page cache, written back and
        dropped so that the next direct read sees it (direct_write_fallback).
        ``fault_at`` (an offset in ``data``): the copy stops there, -EFAULT if at 0."""
        if "NOWAIT" in set(flags):
            return -11  # EAGAIN: buffered I/O would block
        if fault_at is not None:
            if fault_at <= 0:
                return -14  # EFAULT: not a byte could be copied
            data = data[:fault_at]
        pc = self._need_pc()
        n = pc.buffered_write(inode, pos, data)
        if n > 0:
            err = pc.writeback(inode, pos, n)
            if err < 0:
                return err
            pc.drop(inode, pos, n)
            if set(flags) & {"DSYNC", "SYNC"}:  # the buffered write's generic_write_sync
                err = self.fsync(inode)
                if err < 0:
                    return err
        return n

    # -- direct I/O -------------------------------------------------------------------

    def _rw(self, op: str, inode: Inode, pos: int, buf: bytearray, flags: Iterable[str],
            dio: Iterable[str], sync: bool, fault_at: int | None, done_before: int,
            settle: bool) -> Result:  # fmt: skip
        _check_request(op, pos, len(buf), done_before, fault_at, self.page_size)
        lbs = self.device.logical_block_size
        if op == "write" and pos > inode.size and not (pos | len(buf)) % lbs:
            # the filesystem's write checks, before the dio, for a write that passes the
            # alignment check (xfs_file_dio_write: -EINVAL comes first)
            self.zero_eof(inode, pos)
        self.req += 1
        ubuf = UserBuffer(buf, self.page_size)
        if fault_at is not None:
            ubuf.fault(fault_at)
        completed: list[int] = []
        iocb = Kiocb(pos, frozenset(flags) if flags else _NONE,
                     None if sync else completed.append)
        if self.engine == "legacy":
            if done_before:
                raise ValueError("__blockdev_direct_IO has no done_before")
            from .legacy_dio import blockdev_direct_io

            # the filesystem's own flags to __blockdev_direct_IO (e.g. ext2's DIO_SKIP_HOLES)
            flags_ = frozenset(dio) | getattr(self.fs, "dio_flags", frozenset())
            ret = blockdev_direct_io(self.env, inode, iocb, ubuf, op, flags_, self.req)
        else:
            ret = iomap_dio_rw(self.env, inode, iocb, ubuf, op,
                               frozenset(dio) if dio else _NONE, done_before, self.req)
        queued = ret == EIOCBQUEUED
        if queued and settle:
            if self.sched.threaded:
                self.sched.drain()
            else:
                self.sched.wait(lambda: bool(completed))
            ret = completed[0]
        return Result(ret, queued, b"", None if sync else completed, self.req)

    def pwrite(self, inode: Inode, pos: int, data: bytes, *, flags: Iterable[str] = (),
               dio: Iterable[str] = (), sync: bool = True, fault_at: int | None = None,
               done_before: int = 0, settle: bool = True) -> Result:  # fmt: skip
        """A direct write; ``settle`` waits for an async request to complete. A
        bytearray is used as the user buffer as it is (no copy)."""
        buf = data if isinstance(data, bytearray) else bytearray(data)
        return self._rw("write", inode, pos, buf, flags, dio, sync, fault_at, done_before,
                        settle)  # fmt: skip

    def pread(self, inode: Inode, pos: int, length: int, *, flags: Iterable[str] = (),
              dio: Iterable[str] = (), sync: bool = True, fault_at: int | None = None,
              done_before: int = 0, settle: bool = True,
              into: bytearray | None = None) -> Result:  # fmt: skip
        """A direct read; ``into`` is the user buffer to fill (then ``data`` stays empty)."""
        buf = bytearray(length) if into is None else into
        r = self._rw("read", inode, pos, buf, flags, dio, sync, fault_at, done_before, settle)
        if into is None:
            r.data = bytes(buf[: max(0, r.ret - done_before)])
        return r

    def save_trace(self, path: str | Path) -> Path:
        if self.trace is None:
            raise ValueError("this World does not record (record=False)")
        return self.trace.write(path)

    def close(self) -> None:
        if self.sched.threaded:
            self.sched.drain()
        close = getattr(self.device, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
