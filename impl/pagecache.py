"""A minimal page cache, so that direct I/O meets buffered I/O as it does in Linux.

Pages hold file data; buffered writes dirty them; writeback sends them through the
filesystem's mapping (``->iomap_begin`` with WRITE allocates, ``->end_io`` converts) to
the device. `PageCache.bind` plugs the `DioEnv` hooks: ``invalidate``
(kiocb_invalidate_pages: NOWAIT with a page in range -> -EAGAIN, else write back, wait
and drop; a pinned page -> -EBUSY, which the engine turns into -ENOTBLK),
``write_and_wait`` (kiocb_write_and_wait) and ``invalidate_after``. ``writethrough_write``
is the buffered RWF_WRITETHROUGH of the RFC "iomap: Support buffered RWF_WRITETHROUGH via
async dio backend": each folio's block-aligned range goes through ``iomap_dio_rw`` with
BUF_WRITETHROUGH on an async kiocb whose completion ends the folio's writeback. Errors
are kept as mapping_set_error keeps them: an AS_EIO flag (reported and cleared by
filemap_write_and_wait_range: ``writeback(wait=True)`` and the hooks) and an errseq
error reported once to ``fsync``/``fsync_error``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .api import (
    EAGAIN,
    EBUSY,
    EINVAL,
    EIO,
    EIOCBQUEUED,
    F_SHARED,
    MAPPED,
    UNWRITTEN,
    DioError,
    Inode,
    Iomap,
    Kiocb,
)
from .iomap_dio import DioEnv, iomap_dio_rw
from .sched import UserBuffer

KIOCB_FLAGS = frozenset({"DSYNC", "SYNC", "HIPRI", "ATOMIC"})  # what kiocb_clone keeps


@dataclass(eq=False)
class Page:
    """One cached page (a folio of one page)."""

    index: int
    data: bytearray
    dirty: bool = False
    under_writeback: bool = False
    mapped: bool = False  # mmap'ed
    pinned: bool = False  # pinned (GUP): it cannot be invalidated

    @property
    def state(self) -> str:  # "writeback" wins over "dirty" (a folio can be both)
        return "writeback" if self.under_writeback else "dirty" if self.dirty else "clean"


@dataclass
class _Mapping:
    inode: Inode
    pages: dict[int, Page] = field(default_factory=dict)
    as_err: int = 0  # AS_EIO / AS_ENOSPC: filemap_check_errors reports and clears it
    wb_err: int = 0  # errseq: reported once to fsync
    dio_count: int = 0  # writethrough dios in flight (inode_dio_begin/end)


class PageCache:
    def __init__(self, fs: Any, device: Any, page_size: int = 4096, sched: Any = None) -> None:
        if page_size % fs.block_size:
            raise ValueError(f"page size {page_size}: not a multiple of {fs.block_size}")
        self.fs, self.device, self.page_size = fs, device, page_size
        self.sched = sched  # to wait for writeback; bind() and writethrough_write set it
        self.lock = threading.RLock()
        self.maps: dict[int, _Mapping] = {}

    def bind(self, env: DioEnv, *, fsync: bool = False) -> PageCache:
        """Plug the hooks into ``env`` (and, with ``fsync``, make generic_write_sync
        write back and report errors as vfs_fsync_range does)."""
        env.invalidate = self.invalidate
        env.write_and_wait = self.write_and_wait
        env.invalidate_after = self.invalidate_after
        if fsync:
            env.fsync = lambda inode, pos, n: self.fsync(inode)
        if self.sched is None:
            self.sched = env.sched
        return self

    # -- bookkeeping ----------------------------------------------------------------

    def _map_of(self, inode: Inode) -> _Mapping:
        m = self.maps.get(inode.ino)
        if m is None or m.inode is not inode:
            m = self.maps[inode.ino] = _Mapping(inode)
        return m

    def _sync_count(self, m: _Mapping) -> None:  # nrpages
        m.inode.cached_pages = len(m.pages)

    def pages(self, inode: Inode) -> dict[int, Page]:
        """The cached pages of ``inode`` by index (read-only use)."""
        return self._map_of(inode).pages

    def page(self, inode: Inode, pos: int) -> Page | None:
        return self._map_of(inode).pages.get(pos // self.page_size)

    def _range(self, m: _Mapping, pos: int, length: int | None) -> list[Page]:
        ps = self.page_size
        if length is not None and length <= 0:
            return []
        first, last = pos // ps, (pos + length - 1) // ps if length is not None else 1 << 62
        return [p for i, p in sorted(m.pages.items()) if first <= i <= last]

    def _wait(self, done: Callable[[], bool]) -> None:
        if not done():
            if self.sched is None:
                raise RuntimeError("waiting for I/O, but the page cache has no scheduler")
            self.sched.wait(done)

    def _wait_stable(self, page: Page) -> None:
        self._wait(lambda: not page.under_writeback)

    def _dio_wait(self, m: _Mapping) -> None:
        """inode_dio_wait before moving i_size: dios complete with the i_size they saw."""
        self._wait(lambda: m.dio_count == 0)

    def _set_error(self, m: _Mapping, err: int) -> None:  # mapping_set_error
        with self.lock:
            m.as_err = m.wb_err = err

    # -- filling pages ----------------------------------------------------------------

    def _iomap(self, inode: Inode, pos: int, length: int, flags: frozenset[str]) -> Iomap:
        m: Iomap = self.fs.iomap_begin(inode, pos, length, flags)
        if not (m.offset <= pos < m.end):
            raise DioError(EIO, f"iomap_begin({pos}) returned [{m.offset}, {m.end})")
        end = getattr(self.fs, "iomap_end", None)
        n = min(m.end, pos + length) - pos
        if end is not None and (r := end(inode, pos, n, n, flags, m)) < 0:
            raise DioError(r, "iomap_end")
        return m

    def _read_page(self, inode: Inode, index: int) -> bytearray:
        """The page's contents from the filesystem: mapped blocks from the device,
        holes, unwritten blocks and everything past i_size as zeros."""
        ps, bs = self.page_size, self.fs.block_size
        start = index * ps
        data = bytearray(ps)
        end = min(start + ps, -(-inode.size // bs) * bs)
        p = start
        while p < end:
            m = self._iomap(inode, p, end - p, frozenset())
            n = min(m.end, end) - p
            if m.type == MAPPED:
                assert m.addr is not None
                data[p - start : p - start + n] = self.device.read(m.addr + p - m.offset, n)
            p += n  # HOLE, UNWRITTEN, DELALLOC: zeros
        if inode.size < start + ps:
            data[max(0, inode.size - start) :] = bytes(start + ps - max(start, inode.size))
        return data

    def _get(self, m: _Mapping, index: int, fill: bool = True) -> Page:
        page = m.pages.get(index)
        if page is None:
            data = self._read_page(m.inode, index) if fill else bytearray(self.page_size)
            with self.lock:
                page = m.pages[index] = Page(index, data)
                self._sync_count(m)
        return page

    # -- buffered I/O -----------------------------------------------------------------

    def buffered_write(self, inode: Inode, pos: int, data: bytes) -> int:
        """Copy ``data`` into the pages (reading partial pages in first), mark them
        dirty and extend i_size; returns the bytes written."""
        m = self._map_of(inode)
        ps, done = self.page_size, 0
        while done < len(data):
            p = pos + done
            index, off = divmod(p, ps)
            n = min(ps - off, len(data) - done)
            if p + n > inode.size:
                self._dio_wait(m)
            page = self._get(m, index, fill=n < ps)
            self._wait_stable(page)
            page.data[off : off + n] = data[done : done + n]
            page.dirty = True
            done += n
            inode.size = max(inode.size, p + n)
        return done

    def zero_range(self, inode: Inode, start: int, end: int) -> None:
        """iomap_zero_range through the cache: the pages of ``[start, end)`` get zeros
        there and become dirty (i_size does not move)."""
        m = self._map_of(inode)
        ps, p = self.page_size, start
        while p < end:
            index, off = divmod(p, ps)
            n = min(ps - off, end - p)
            page = self._get(m, index)
            self._wait_stable(page)
            page.data[off : off + n] = bytes(n)
            page.dirty = True
            p += n

    def buffered_read(self, inode: Inode, pos: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``pos``, stopping at i_size; misses are read in."""
        m = self._map_of(inode)
        end = min(pos + length, inode.size)
        ps, out = self.page_size, bytearray()
        p = pos
        while p < end:
            index, off = divmod(p, ps)
            n = min(ps - off, end - p)
            out += self._get(m, index).data[off : off + n]
            p += n
        return bytes(out)

    def mmap_dirty(self, inode: Inode, pos: int, data: bytes | None = None) -> Page:
        """A page written through a shared mapping and pinned (GUP): dirty, and
        invalidation of it fails with -EBUSY until `unpin`. ``data`` (optional) is
        stored at ``pos`` within the page; it cannot extend the file."""
        if pos >= inode.size:
            raise ValueError(f"mmap of {pos} past i_size {inode.size} (SIGBUS)")
        m = self._map_of(inode)
        index, off = divmod(pos, self.page_size)
        page = self._get(m, index)
        self._wait_stable(page)
        if data and pos + len(data) > min(inode.size, (index + 1) * self.page_size):
            raise ValueError("mmap data must stay within the page and i_size")
        page.data[off : off + len(data or b"")] = data or b""
        page.dirty = page.mapped = page.pinned = True
        return page

    def unpin(self, inode: Inode, pos: int) -> None:
        """munmap and unpin the page at ``pos`` (it stays cached, dirty or not)."""
        page = self.page(inode, pos)
        if page is not None:
            page.mapped = page.pinned = False

    def drop(self, inode: Inode, pos: int = 0, length: int | None = None) -> int:
        """fadvise(DONTNEED): evict clean unmapped pages not under writeback; how many."""
        m = self._map_of(inode)
        with self.lock:
            gone = [p for p in self._range(m, pos, length)
                    if not (p.dirty or p.under_writeback or p.mapped or p.pinned)]  # fmt: skip
            for p in gone:
                del m.pages[p.index]
            self._sync_count(m)
        return len(gone)

    def evict(self, inode: Inode, pos: int, length: int | None = None) -> None:
        """truncate_pagecache_range: every page of the range leaves the cache, dirty,
        mapped or pinned alike (the caller wrote back what had to be kept)."""
        m = self._map_of(inode)
        self._dio_wait(m)
        with self.lock:
            for page in self._range(m, pos, length):
                del m.pages[page.index]
            self._sync_count(m)

    def truncate(self, inode: Inode, size: int) -> None:
        """truncate(2): pages past ``size`` go; when shrinking, the tail of the new EOF
        page is zeroed and dirtied (iomap_truncate_page), then the filesystem truncates."""
        m = self._map_of(inode)
        ps = self.page_size
        self._dio_wait(m)  # also waits out every page under writeback
        if size < inode.size and size % ps:
            page = self._get(m, size // ps)
            page.data[size % ps :] = bytes(ps - size % ps)
            page.dirty = True
        with self.lock:
            for page in self._range(m, size, None):
                if page.index * ps >= size:
                    del m.pages[page.index]
            self._sync_count(m)
        self.fs.truncate(inode, size)

    # -- writeback --------------------------------------------------------------------

    def _write_page(self, m: _Mapping, page: Page) -> int:
        """Write one dirty page through the filesystem's mapping; 0 or -errno."""
        inode, ps, bs = m.inode, self.page_size, self.fs.block_size
        start = page.index * ps
        end = min(start + ps, -(-inode.size // bs) * bs)
        p, end_io = start, getattr(self.fs, "end_io", None)
        try:
            while p < end:
                mp = self._iomap(inode, p, end - p, frozenset({"WRITE"}))
                if mp.type not in (MAPPED, UNWRITTEN) or mp.addr is None:
                    raise DioError(EIO, f"writeback got a {mp.type} mapping")
                n = min(mp.end, end) - p
                chunk = bytes(page.data[p - start : p - start + n])
                self.device.write(mp.addr + p - mp.offset, chunk)
                # WRITEBACK: a buffered ioend completing (xfs_end_ioend), not a dio's end_io
                flags = {"WRITE", "WRITEBACK"} | ({"UNWRITTEN"} if mp.type == UNWRITTEN else set())
                flags |= {"COW"} if F_SHARED in mp.flags else set()
                size = min(n, inode.size - p)  # clipped to i_size: writeback never extends
                if end_io is not None and (r := end_io(inode, p, size, 0, frozenset(flags))):
                    raise DioError(r, "end_io")
                p += n
        except DioError as exc:
            self._set_error(m, exc.errno)
            return exc.errno
        page.dirty = False
        return 0

    def _write_and_wait(self, inode: Inode, pos: int, length: int | None, wait: bool,
                        check: bool) -> int:  # fmt: skip
        m = self._map_of(inode)
        err = 0
        for page in self._range(m, pos, length):
            if page.dirty:
                self._wait_stable(page)
                if page.dirty:
                    err = self._write_page(m, page) or err
        if wait:
            for page in self._range(m, pos, length):
                self._wait_stable(page)
            if check:  # filemap_check_errors
                with self.lock:
                    err, m.as_err = err or m.as_err, 0
        return err

    def writeback(self, inode: Inode, pos: int = 0, length: int | None = None,
                  wait: bool = True) -> int:  # fmt: skip
        """Write the dirty pages of the range back (they become clean); with ``wait``,
        also wait for pages under writeback and report (and clear) the mapping's error,
        as filemap_write_and_wait_range does. Returns 0 or -errno."""
        return self._write_and_wait(inode, pos, length, wait, check=wait)

    def fsync_error(self, inode: Inode) -> int:
        """The writeback error recorded since the last report, then cleared."""
        m = self._map_of(inode)
        with self.lock:
            err, m.wb_err = m.wb_err, 0
        return err

    def fsync(self, inode: Inode) -> int:
        """vfs_fsync: write back and wait, report the errseq error, then let the
        filesystem flush the device and commit its metadata."""
        err = self._write_and_wait(inode, 0, None, True, check=False)
        err = self.fsync_error(inode) or err
        return err or self.fs.fsync(inode) or 0  # xfs_file_fsync returns early on error

    def crash(self) -> None:
        """Memory is lost: every page goes (call with the World's crash)."""
        with self.lock:
            for m in self.maps.values():
                m.pages.clear()
                m.as_err = m.wb_err = m.dio_count = 0
                self._sync_count(m)

    # -- DioEnv hooks -------------------------------------------------------------------

    def invalidate(self, inode: Inode, pos: int, length: int, nowait: bool) -> int:
        """kiocb_invalidate_pages."""
        m = self._map_of(inode)
        if nowait and self._range(m, pos, length):
            return EAGAIN  # filemap_range_has_page
        if not nowait and (err := self._write_and_wait(inode, pos, length, True, check=True)):
            return err
        return self._invalidate2(m, pos, length)

    def _invalidate2(self, m: _Mapping, pos: int, length: int) -> int:
        """invalidate_inode_pages2_range: drop what can go, -EBUSY if a page could not."""
        ret = 0
        with self.lock:
            for page in self._range(m, pos, length):
                if page.pinned or page.dirty or page.under_writeback:
                    ret = EBUSY
                else:
                    del m.pages[page.index]
            self._sync_count(m)
        return ret

    def write_and_wait(self, inode: Inode, pos: int, length: int, nowait: bool) -> int:
        """kiocb_write_and_wait."""
        m = self._map_of(inode)
        if nowait:
            busy = any(p.dirty or p.under_writeback for p in self._range(m, pos, length))
            return EAGAIN if busy else 0  # filemap_range_needs_writeback
        return self._write_and_wait(inode, pos, length, True, check=True)

    def invalidate_after(self, inode: Inode, pos: int, length: int) -> None:
        """kiocb_invalidate_post_direct_write: errors are ignored."""
        self._invalidate2(self._map_of(inode), pos, length)

    # -- RWF_WRITETHROUGH -----------------------------------------------------------------

    def writethrough_write(
        self, env: DioEnv, inode: Inode, pos: int, data: bytes, req: int | Callable[[], int],
        flags: Iterable[str] = (),
    ) -> int:  # fmt: skip
        """iomap_file_writethrough_write: bytes written, or the error if none were.
        ``req`` numbers the dios, one per folio: a callable is called for each, an int
        is counted up. DSYNC/SYNC run fsync afterwards (generic_write_sync)."""
        iocb_flags = frozenset(flags)
        if "NOWAIT" in iocb_flags or "DONTCACHE" in iocb_flags:
            return EINVAL
        if self.sched is None:
            self.sched = env.sched
        m = self._map_of(inode)
        ps, bs = self.page_size, self.fs.block_size
        total, status, nreq = 0, 0, 0
        while total < len(data):
            p = pos + total
            index, off = divmod(p, ps)
            n = min(ps - off, len(data) - total)
            if p + n > inode.size:
                self._dio_wait(m)
            page = self._get(m, index, fill=n < ps)  # before allocating: no stale reads
            self._wait_stable(page)  # folio_prepare_writethrough
            a_start, a_end = p // bs * bs, -(-(p + n) // bs) * bs
            if status := self._allocate(inode, a_start, a_end):
                break
            page.data[off : off + n] = data[total : total + n]
            inode.size = max(inode.size, p + n)
            full = a_start == index * ps and a_end == (index + 1) * ps
            page.dirty = page.dirty and not full  # iomap_clear_range_dirty, approximately
            page.under_writeback = True
            number = req() if callable(req) else req + nreq
            nreq += 1
            ret = self._send(env, m, page, a_start, a_end, iocb_flags, number)
            if ret < 0:
                status = ret
                break
            total += n
        if total and iocb_flags & {"DSYNC", "SYNC"}:
            r = self.fsync(inode)
            if r < 0:
                return r
        return total if total else status

    def _allocate(self, inode: Inode, start: int, end: int) -> int:
        """The writethrough's own ->iomap_begin(IOMAP_WRITE | IOMAP_WRITETHROUGH)."""
        while start < end:
            try:
                mp = self._iomap(inode, start, end - start, frozenset({"WRITE", "WRITETHROUGH"}))
            except DioError as exc:
                return exc.errno
            if mp.type not in (MAPPED, UNWRITTEN):
                return EIO  # WARN_ON in the RFC
            start = min(mp.end, end)
        return 0

    def _send(self, env: DioEnv, m: _Mapping, page: Page, start: int, end: int,
              flags: frozenset[str], req: int) -> int:  # fmt: skip
        """Issue one folio's dio; 0 when queued or done, -errno when it failed."""
        inode = m.inode
        base = page.index * self.page_size
        i_size = inode.size  # what the copy made it; end_io must not move it further

        def endio(ret: int) -> None:  # iomap_writethrough_endio
            with self.lock:
                if ret < 0:
                    self._set_error(m, ret)
                # our ->end_io sees the aligned range and moves i_size to its end; the
                # RFC's filesystem end_io keeps the original range (wt_ctx->orig_*)
                if inode.size == end and end > i_size:
                    inode.size = i_size
                    sync_size = getattr(self.fs, "sync_size", None)
                    if sync_size is not None:
                        sync_size(inode)
                page.under_writeback = False
                m.dio_count -= 1
            env.sched.notify()

        iocb = Kiocb(start, flags & KIOCB_FLAGS, endio)
        buf = UserBuffer(bytearray(page.data[start - base : end - base]), self.page_size)
        with self.lock:
            m.dio_count += 1
        ret = iomap_dio_rw(env, inode, iocb, buf, "write", frozenset({"BUF_WRITETHROUGH"}),
                           0, req)  # fmt: skip
        if ret == EIOCBQUEUED:
            return 0
        endio(ret)
        return ret if ret < 0 else 0
