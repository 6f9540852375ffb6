"""The legacy direct-I/O engine, ``__blockdev_direct_IO`` of fs/direct-io.c, doing real I/O.

Written from the kernel source (../shared/seeds/legacy-direct-io.c), independently of
``dioconf.model`` (the two are compared). The filesystem answers ``get_block(inode,
fs_block, b_size, create) -> BufferHead``. The walk goes in dio blocks (fs blocks, or
logical blocks for a request only aligned to those), pins user pages 64 at a time, defers
page sections in ``cur_page``, packs them into bios, zeroes the unwritten part of new fs
blocks from ZERO_PAGE, and completes in the submitter (sync: completed bios on a LIFO
list) or from the last bio (async). Methods carry the names of the seed's functions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from .api import (
    EFAULT,
    EINVAL,
    EIOCBQUEUED,
    ENOTBLK,
    Bio,
    ContractError,
    DioError,
    Inode,
    Kiocb,
)
from .fs.getblock import BufferHead
from .iomap_dio import DioEnv
from .legacy_complete import LegacyCompletion
from .sched import UserBuffer

DIO_PAGES = 64  # user pages pinned per dio_refill_pages()
BIO_MAX_VECS = 256  # bio_max_segs()
ZERO_PAGE = -1  # page identity of ZERO_PAGE(0); user pages are 0, 1, ... of the buffer
U32 = (1 << 32) - 1  # `unsigned` fields of struct dio_submit
ZERO = memoryview(bytes(1 << 20))


@dataclass
class _BioAsm:
    """sdio->bio under assembly: first dio block, its (page, offset, len) vecs."""

    block: int
    max_vecs: int
    vecs: list[tuple[int, int, int]] = field(default_factory=list)
    size: int = 0


class LegacyDio(LegacyCompletion):
    """struct dio + struct dio_submit of one request."""

    def __init__(self, env: DioEnv, inode: Inode, iocb: Kiocb, buf: UserBuffer, op: str,
                 flags: frozenset[str], req: int) -> None:  # fmt: skip
        self.env, self.inode, self.iocb, self.buf, self.req = env, inode, iocb, buf, req
        self.write = op == "write"
        self.flags = flags
        self.tr = env.trace
        self.ps = env.page_size
        self.count = len(buf)
        self.pos = iocb.pos
        self.i_blkbits = env.fs.block_size.bit_length() - 1
        self.i_size = inode.size
        self.lock = threading.Lock()  # dio->bio_lock
        # struct dio
        self.page_errors = self.io_error = self.result = self.nbios = 0
        self.is_async = self.defer_completion = False
        self.refcount = 1
        self.bio_list: list[Bio] = []  # completed bios, newest last (popped LIFO)
        # struct dio_submit
        self.blkbits = self.blkfactor = self.pages_in_io = 0
        self.block_in_file = self.final_block_in_request = self.blocks_available = 0
        self.start_zero_done = self.boundary = False
        self.reap_counter = self.logical_offset_in_bio = 0
        self.final_block_in_bio = self.next_block_for_io = -1
        self.bio: _BioAsm | None = None
        self.cur_page: int | None = None
        self.cur_page_offset = self.cur_page_len = self.cur_page_block = 0
        self.cur_page_fs_offset = 0
        self.iter_pos = self.pages_base = self.head = self.tail = self.from_ = self.to = 0
        self.map_bh = BufferHead(False)
        self.reaped = False  # reaped since the last trace line (see get_more_blocks)

    # ------------------------------------------------------------------ entry

    def run(self) -> int:
        tr, env, inode = self.tr, self.env, self.inode
        count, pos = self.count, self.pos
        end = pos + count
        if not self.write and not count:
            return self._early(0)  # a 0-byte read
        if not self.write and pos >= self.i_size:
            return self._early(0)  # a read at/after i_size
        blkbits = self.i_blkbits
        align = pos | count  # the user buffer is page aligned: iov_iter_alignment = count
        if align & ((1 << blkbits) - 1):
            blkbits = env.lbs.bit_length() - 1
            if align & ((1 << blkbits) - 1):
                return self._early(EINVAL)
        if "LOCKING" in self.flags and not self.write:
            nowait = "NOWAIT" in self.iocb.flags
            ret = 0 if env.write_and_wait is None else env.write_and_wait(inode, pos, count, nowait)
            if ret:
                if tr:
                    tr.input(self.req, "writeback", ret=ret)
                return self._early(ret)
        # extending writes wait, even for an async kiocb (no stale blocks exposed)
        self.is_async = not self.iocb.is_sync and not (self.write and end > inode.size)
        if self.is_async and self.write and self.iocb.dsync:
            self.defer_completion = True  # aio O_(D)SYNC writes complete on the workqueue
        self.blkbits = blkbits
        self.blkfactor = self.i_blkbits - blkbits
        self.block_in_file = pos >> blkbits
        self.final_block_in_request = end >> blkbits
        self.pages_in_io = (2 if self.blkfactor else 0) + -(-count // self.ps)

        retval = self.do_direct_io()
        if retval:
            self.head = self.tail  # dio_cleanup
        if retval == ENOTBLK:
            retval = 0  # the rest is left to buffered I/O
        self.dio_zero_block(end=True)
        if self.cur_page is not None:
            ret2 = self.dio_send_cur_page()
            if retval == 0:
                retval = ret2
            self.cur_page = None
        if self.bio is not None:
            self.dio_bio_submit()
        self.head = self.tail
        if self.is_async and retval == 0 and self.result and (
                not self.write or self.result == count):  # fmt: skip
            retval = EIOCBQUEUED
        else:
            self.dio_await_completion()
        env.sched.point("before_drop")
        with self.lock:  # drop_refcount
            self.refcount -= 1
            remaining = self.refcount
            if remaining and tr:
                tr.queued(self.req)  # under the lock: before any completion it races
        if remaining == 0:
            return self.dio_complete(retval, asynchronous=False, invalidate=True, ctx="submitter")
        if retval != EIOCBQUEUED:
            raise RuntimeError("kernel BUG: bios in flight but the request is not queued")
        return EIOCBQUEUED

    def _early(self, ret: int) -> int:
        if self.tr:
            self.tr.complete(self.req, ret, self.pos, self.inode.size, "submitter")
        return ret

    # ------------------------------------------------------------------ user pages

    def dio_refill_pages(self) -> int:
        ps = self.ps
        want = min(self.count - self.iter_pos, DIO_PAGES * ps)
        n = self.buf.pinnable(self.iter_pos, want)
        if n <= 0 and want > 0:
            if self.blocks_available and self.write:
                # a fault with mapped blocks left: write them from ZERO_PAGE (no stale data)
                if self.page_errors == 0:
                    self.page_errors = EFAULT
                self.pages_base, self.head, self.tail, self.from_, self.to = ZERO_PAGE, 0, 1, 0, ps
                return 0
            return EFAULT
        self.pages_base = self.iter_pos // ps
        self.iter_pos += n
        self.head, self.tail, self.from_ = 0, -(-n // ps), 0
        self.to = ((n - 1) & (ps - 1)) + 1
        return 0

    def dio_get_page(self) -> tuple[int, int]:
        if self.tail - self.head == 0:
            ret = self.dio_refill_pages()
            if ret:
                return 0, ret
            if self.tail - self.head == 0:
                raise RuntimeError("kernel BUG: dio_get_page pinned no page")
        page = ZERO_PAGE if self.pages_base == ZERO_PAGE else self.pages_base + self.head
        return page, 0

    # ------------------------------------------------------------------ the walk

    def do_direct_io(self) -> int:
        bb = self.blkbits
        while self.block_in_file < self.final_block_in_request:
            page, ret = self.dio_get_page()
            if ret:
                return ret
            from_ = 0 if self.head else self.from_
            to = self.to if self.head == self.tail - 1 else self.ps
            self.head += 1
            while from_ < to:
                if self.blocks_available == 0:
                    ret = self.get_more_blocks()
                    if ret:
                        return ret
                    bh = self.map_bh
                    if bh.mapped:
                        self.blocks_available = (bh.size >> bb) & U32
                        self.next_block_for_io = bh.blocknr << self.blkfactor
                        if self.blkfactor:
                            rem = self.block_in_file & ((1 << self.blkfactor) - 1)
                            if not bh.new:  # a new block's start is zeroed, not skipped
                                self.next_block_for_io += rem
                            self.blocks_available = (self.blocks_available - rem) & U32
                if not self.map_bh.mapped:  # do_holes
                    if self.write:
                        return ENOTBLK
                    if self.block_in_file >= -(-self.inode.size >> bb):  # ALIGN(i_size)
                        return 0  # a hole at EOF
                    at = page * self.ps + from_  # zero_user: a read's page is a user page
                    self.buf.view[at : at + (1 << bb)] = ZERO[: 1 << bb]
                    blocks = 1
                else:
                    if self.blkfactor and not self.start_zero_done:
                        self.dio_zero_block(end=False)
                    blocks = min(self.blocks_available, (to - from_) >> bb,
                                 self.final_block_in_request - self.block_in_file)  # fmt: skip
                    if blocks == 0:
                        raise RuntimeError("kernel BUG: this_chunk_bytes == 0")
                    if blocks == self.blocks_available:
                        self.boundary = self.map_bh.boundary
                    ret = self.submit_page_section(page, from_, blocks << bb,
                                                   self.next_block_for_io)  # fmt: skip
                    if ret:
                        return ret
                    self.next_block_for_io += blocks
                    self.blocks_available -= blocks
                self.block_in_file += blocks
                from_ += blocks << bb
                self.result += blocks << bb
                if self.block_in_file == self.final_block_in_request:
                    break
        return 0

    def get_more_blocks(self) -> int:
        if self.page_errors:
            return self.page_errors  # the mapped blocks are used up: report the fault
        fs_start = self.block_in_file >> self.blkfactor
        fs_end = (self.final_block_in_request - 1) >> self.blkfactor
        b_size = (fs_end - fs_start + 1) << self.i_blkbits
        create = self.write
        if "SKIP_HOLES" in self.flags:
            i_size = self.inode.size
            if i_size and fs_start <= (i_size - 1) >> self.i_blkbits:
                create = False  # only overwrites inside i_size
        self.map_bh = BufferHead(False, size=b_size)  # map_bh->b_state = 0
        # A replay puts a bio_end right after the line before it, so before any reap done
        # since that line: after a reap, completions wait for the next line.
        if not self.reaped:
            self.env.sched.point("before_map")
        try:
            bh = self.env.fs.get_block(self.inode, fs_start, b_size, create)
        except DioError as exc:
            if self.tr:
                self.tr.map_error(self.req, exc.errno)
            return exc.errno
        rem = self.block_in_file & ((1 << self.blkfactor) - 1)
        why = bh.problem(self.blkbits, rem, self.write)
        if why:
            raise ContractError(f"get_block(fs_block={fs_start}) answered {bh}: {why}")
        if self.tr:
            flags = [name for name, on in (("BOUNDARY", bh.boundary), ("DEFER_COMPLETION",
                     bh.defer_completion), ("NEW", bh.new)) if on]  # fmt: skip
            addr = bh.blocknr << self.i_blkbits if bh.mapped else None
            self.tr.input(self.req, "map", offset=fs_start << self.i_blkbits, length=bh.size,
                          type="MAPPED" if bh.mapped else "HOLE", flags=flags, addr=addr,
                          create=create)  # fmt: skip
        self.map_bh = bh
        if bh.defer_completion:
            self.defer_completion = True
        return 0

    def dio_zero_block(self, end: bool) -> None:
        self.start_zero_done = True
        if not self.blkfactor or not self.map_bh.new:
            return
        per = 1 << self.blkfactor
        blocks = self.block_in_file & (per - 1)
        if not blocks:
            return
        if end:
            blocks = per - blocks
        if self.submit_page_section(ZERO_PAGE, 0, blocks << self.blkbits, self.next_block_for_io):
            return
        self.next_block_for_io += blocks

    # ------------------------------------------------------------------ bios

    def submit_page_section(self, page: int, offset: int, length: int, blocknr: int) -> int:
        boundary = self.boundary  # dio_send_cur_page may clear it
        next_block = self.cur_page_block + (self.cur_page_len >> self.blkbits)
        if (self.cur_page == page and self.cur_page_offset + self.cur_page_len == offset
                and next_block == blocknr):  # fmt: skip
            self.cur_page_len += length  # grow the deferred section
        else:
            if self.cur_page is not None:
                ret = self.dio_send_cur_page()
                self.cur_page = None
                if ret:
                    return ret
            self.cur_page, self.cur_page_offset, self.cur_page_len = page, offset, length
            self.cur_page_block = blocknr
            self.cur_page_fs_offset = self.block_in_file << self.blkbits
        ret = 0
        if boundary:  # schedule the I/O now
            ret = self.dio_send_cur_page()
            if self.bio is not None:
                self.dio_bio_submit()
            self.cur_page = None
        return ret

    def dio_send_cur_page(self) -> int:
        if self.bio is not None:
            next_offset = self.logical_offset_in_bio + self.bio.size
            if self.final_block_in_bio != self.cur_page_block or (
                    self.cur_page_fs_offset != next_offset):  # fmt: skip
                self.dio_bio_submit()  # not contiguous on disk or in the file
        if self.bio is None:
            ret = self.dio_new_bio(self.cur_page_block)
            if ret:
                return ret
        if not self.dio_bio_add_page():
            self.dio_bio_submit()
            ret = self.dio_new_bio(self.cur_page_block)
            if ret == 0 and not self.dio_bio_add_page():
                raise RuntimeError("kernel BUG: a page does not fit a new bio")
            return ret
        return 0

    def dio_bio_reap(self) -> int:
        ret = 0
        reap = self.reap_counter >= 64
        self.reap_counter += 1
        if reap:
            self.reaped = True
            with self.lock:
                failing = any(b.status for b in self.bio_list)
            if failing:  # it fails, and no bio line may follow: the bios in flight
                self.env.sched.wait(lambda: self.refcount <= 1)  # complete first
            while True:
                with self.lock:
                    if not self.bio_list:
                        break
                    bio = self.bio_list.pop()
                ret2 = self.dio_bio_complete(bio)
                if ret == 0:
                    ret = ret2
            self.reap_counter = 0
        return ret

    def dio_new_bio(self, start_block: int) -> int:
        ret = self.dio_bio_reap()
        if ret:
            return ret
        nr = min(self.pages_in_io & U32, BIO_MAX_VECS)
        if nr <= 0:
            raise RuntimeError("kernel BUG: dio_new_bio with nr_pages <= 0")
        self.bio = _BioAsm(start_block, nr)
        self.logical_offset_in_bio = self.cur_page_fs_offset
        self.boundary = False
        return 0

    def dio_bio_add_page(self) -> bool:
        bio = self.bio
        assert bio is not None and self.cur_page is not None
        if len(bio.vecs) >= bio.max_vecs:
            return False  # one vec per section: the bio is full
        bio.vecs.append((self.cur_page, self.cur_page_offset, self.cur_page_len))
        bio.size += self.cur_page_len
        if self.cur_page_len + self.cur_page_offset == self.ps:
            self.pages_in_io -= 1
        self.final_block_in_bio = self.cur_page_block + (self.cur_page_len >> self.blkbits)
        return True

    def dio_bio_submit(self) -> None:
        asm = self.bio
        assert asm is not None
        with self.lock:
            self.refcount += 1
            index = self.nbios
            self.nbios += 1
        zero = all(page == ZERO_PAGE for page, _, _ in asm.vecs)
        end_io = self.dio_bio_end_aio if self.is_async else self.dio_bio_end_io
        op = "write" if self.write else "read"
        bio = Bio(index, op, asm.block << self.blkbits, self._bio_data(asm), zero=zero,
                  end_io=end_io)  # fmt: skip
        if self.tr:
            self.tr.bio(self.req, bio)
        self.reaped = False
        self.bio = None
        self.boundary = False
        self.logical_offset_in_bio = 0
        self.env.sched.submit(bio)

    def _bio_data(self, asm: _BioAsm) -> memoryview:
        """The bio's memory: its vecs gathered (a write), or the run of the user buffer
        they cover (a read: its sections follow each other in the file and the buffer)."""
        ps = self.ps
        views = [ZERO[:n] if p == ZERO_PAGE else self.buf.view[p * ps + o : p * ps + o + n]
                 for p, o, n in asm.vecs]  # fmt: skip
        if len(views) == 1:
            return views[0]
        if self.write:
            return memoryview(b"".join(views))
        first = asm.vecs[0][0] * ps + asm.vecs[0][1]
        return self.buf.view[first : first + asm.size]


def blockdev_direct_io(env: DioEnv, inode: Inode, iocb: Kiocb, buf: UserBuffer, op: str,
                       dio_flags: Iterable[str] = frozenset(), req: int = 1) -> int:  # fmt: skip
    """Run one request. Returns the result, or EIOCBQUEUED for an async request still in
    flight (its result then goes to ``iocb.complete``). ``dio_flags``: LOCKING,
    SKIP_HOLES (the filesystem's flags to __blockdev_direct_IO)."""
    flags = frozenset(dio_flags)
    unknown = flags - {"LOCKING", "SKIP_HOLES"}
    if unknown:
        raise ContractError(f"__blockdev_direct_IO has no dio flags {sorted(unknown)}")
    if "ATOMIC" in iocb.flags:
        raise ContractError("IOCB_ATOMIC: a get_block filesystem takes no atomic writes")
    if env.trace:
        env.trace.begin(req, op, iocb, len(buf), 0, flags, inode)
        if buf.fault_at is not None:
            env.trace.fault(req, buf.fault_at)
    return LegacyDio(env, inode, iocb, buf, op, flags, req).run()
