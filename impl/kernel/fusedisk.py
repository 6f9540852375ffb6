"""A disk image served through FUSE, whose I/O fails where a test says: the backing
file of a loop device with injected errors (this machine has no device-mapper, fault
injection, nbd or ublk).

``FuseDisk(image, mnt)`` mounts a FUSE filesystem on ``mnt`` holding one file, ``disk``,
whose bytes are ``image``'s. A loop device attached to ``mnt/disk`` sends each block
request to the server thread as a FUSE READ or WRITE (the file is opened with
FOPEN_DIRECT_IO: no page cache between them), which answers from ``image`` or, for a
range ``fail()`` named, with an errno. The loop driver turns that errno into the block
request's status (``errno_to_blk_status``: EIO, ENODATA, ENOSPC... round-trip), which
``block_rq_complete`` shows and the bio completes with.

The FUSE protocol (include/uapi/linux/fuse.h) is spoken directly on ``/dev/fuse``: a
read-only directory with one regular file needs LOOKUP, GETATTR, OPEN, READ, WRITE,
FSYNC, FLUSH and RELEASE (after INIT); everything else is answered ENOSYS. If the
server thread fails, it closes ``/dev/fuse``: the connection is aborted and the loop
device's requests fail instead of waiting for a server that is gone. The server is a thread of
the calling process: the process's own O_DIRECT system calls release the GIL while they
wait for the loop device, so it can serve them.
"""

from __future__ import annotations

import ctypes
import errno as E
import os
import stat
import struct
import threading
from pathlib import Path

from attrs import frozen

# opcodes (enum fuse_opcode)
LOOKUP, FORGET, GETATTR = 1, 2, 3
OPEN, READ, WRITE, STATFS, RELEASE, FSYNC, FLUSH, INIT = 14, 15, 16, 17, 18, 20, 25, 26
INTERRUPT, DESTROY, BATCH_FORGET = 36, 38, 42
NO_REPLY = (FORGET, INTERRUPT, BATCH_FORGET)
# INIT flags; FOPEN_DIRECT_IO for OPEN
BIG_WRITES, MAX_PAGES = 1 << 5, 1 << 22
FOPEN_DIRECT_IO = 1 << 0
FUSE_DEV = Path("/dev/fuse")
ROOT, DISK = 1, 2  # node ids
NAME = "disk"
MAX_PAGES_N = 256  # 1 MiB requests
BUFSIZE = MAX_PAGES_N * 4096 + 4096

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # fuse_attr, 88 bytes
RW_IN = struct.Struct("<QQIIQII")  # fuse_read_in / fuse_write_in: fh offset size flags ...
INIT_OUT = struct.Struct("<IIIIHHIIHHIIH22x")  # fuse_init_out, 64 bytes
MS_NOSUID, MS_NODEV = 2, 4


@frozen
class Fault:
    """Bytes [start, end) of the disk fail with ``errno`` for ``op`` (read/write/any)."""

    start: int
    end: int
    errno: int
    op: str = "any"

    def hits(self, op: str, offset: int, size: int) -> bool:
        return self.op in ("any", op) and offset < self.end and self.start < offset + size


class FuseDisk:
    def __init__(self, image: Path, mnt: Path) -> None:
        self.image = image
        self.mnt = mnt
        self.size = image.stat().st_size
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.served: list[tuple[str, int, int, int]] = []  # (op, offset, size, errno)
        self.flushes = 0  # FSYNC requests: the loop device's cache flushes
        self._fd = -1
        self._img = -1
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what stopped the server, if not unmount

    @property
    def path(self) -> Path:
        return self.mnt / NAME

    # -- faults ----------------------------------------------------------------------

    def fail(self, start: int, length: int, errno: int, op: str = "any") -> None:
        if op not in ("read", "write", "any") or length <= 0 or errno <= 0:
            raise ValueError(f"fail({start}, {length}, {errno}, {op!r}): bad fault")
        with self._lock:
            self._faults.append(Fault(start, start + length, errno, op))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def _fault(self, op: str, offset: int, size: int) -> int:
        with self._lock:
            return next((f.errno for f in self._faults if f.hits(op, offset, size)), 0)

    # -- mount and serve ---------------------------------------------------------------

    def start(self) -> None:
        """Open /dev/fuse, mount, serve from a thread. On failure nothing is left."""
        self._fd = os.open(FUSE_DEV, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._img = os.open(self.image, os.O_RDWR | os.O_CLOEXEC)
            opts = (f"fd={self._fd},rootmode=40000,user_id=0,group_id=0,allow_other,"
                    f"max_read={MAX_PAGES_N * 4096}")  # fmt: skip
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.mount(b"dioconf-disk", os.fsencode(self.mnt), b"fuse",
                          ctypes.c_ulong(MS_NOSUID | MS_NODEV), opts.encode()):  # fmt: skip
                err = ctypes.get_errno()
                raise OSError(err, f"mounting FUSE on {self.mnt}: {os.strerror(err)}")
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._serve, name="fusedisk", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """After the mount is gone (``umount`` makes the server's read fail ENODEV)."""
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError("the FUSE disk server did not stop")
            self._thread = None
        self._close()

    def _close(self) -> None:
        with self._lock:
            fds, self._fd, self._img = (self._fd, self._img), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def _serve(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # whatever it is: say it, and let go of the device
            self.error = exc
        if self.error is not None:
            # the server is gone: closing /dev/fuse aborts the connection, so that the
            # loop device's requests fail (EIO) instead of waiting for it forever
            with self._lock:
                fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)

    def _loop(self) -> None:
        while True:
            try:
                msg = os.read(self._fd, BUFSIZE)
            except OSError as exc:
                if exc.errno == E.ENODEV:  # unmounted: the connection is gone
                    return
                if exc.errno in (E.EINTR, E.EAGAIN, E.ENOENT):  # ENOENT: interrupted
                    continue
                raise
            unique = IN_HEADER.unpack_from(msg)[2]
            try:
                self._handle(msg)
            except OSError as exc:
                if exc.errno == E.ENODEV:
                    return
                if exc.errno != E.ENOENT:  # (ENOENT: the request was interrupted)
                    # the image's I/O failed: this request fails with it, not the server
                    self._reply(unique, error=exc.errno or E.EIO)

    def _reply(self, unique: int, payload: bytes = b"", error: int = 0) -> None:
        os.write(self._fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique)
                 + payload)  # fmt: skip

    def _attr(self, node: int) -> bytes:
        if node == ROOT:
            return ATTR.pack(ROOT, 0, 0, 0, 0, 0, 0, 0, 0, stat.S_IFDIR | 0o755, 2, 0, 0, 0,
                             4096, 0)  # fmt: skip
        return ATTR.pack(DISK, self.size, (self.size + 511) // 512, 0, 0, 0, 0, 0, 0,
                         stat.S_IFREG | 0o600, 1, 0, 0, 0, 4096, 0)  # fmt: skip

    def _handle(self, msg: bytes) -> None:
        _, opcode, unique, node, *_ = IN_HEADER.unpack_from(msg)
        body = memoryview(msg)[IN_HEADER.size :]
        if opcode in NO_REPLY:
            return
        if opcode == INIT:
            _major, minor, readahead, flags = struct.unpack_from("<IIII", body)
            want = flags & (BIG_WRITES | MAX_PAGES)
            self._reply(unique, INIT_OUT.pack(7, min(minor, 31), readahead, want, 16, 12,
                                              MAX_PAGES_N * 4096, 1, MAX_PAGES_N, 0, 0, 0,
                                              0))  # fmt: skip
        elif opcode == LOOKUP:
            name = bytes(body).split(b"\0", 1)[0]
            if node != ROOT or name != NAME.encode():
                self._reply(unique, error=E.ENOENT)
            else:  # fuse_entry_out: nodeid generation entry_valid attr_valid (+nsec) attr
                entry = struct.pack("<QQQQII", DISK, 1, 3600, 3600, 0, 0)
                self._reply(unique, entry + self._attr(DISK))
        elif opcode == GETATTR:
            self._reply(unique, struct.pack("<QII", 3600, 0, 0) + self._attr(node))
        elif opcode == OPEN:
            ok = node == DISK
            self._reply(unique, struct.pack("<QIi", 1, FOPEN_DIRECT_IO, 0) if ok else b"",
                        0 if ok else E.EISDIR)  # fmt: skip
        elif opcode in (READ, WRITE):
            self._io(opcode, unique, body)
        elif opcode == FSYNC:
            self.flushes += 1
            os.fdatasync(self._img)
            self._reply(unique)
        elif opcode in (FLUSH, RELEASE, DESTROY):
            self._reply(unique)
        else:
            self._reply(unique, error=E.ENOSYS)

    def _io(self, opcode: int, unique: int, body: memoryview) -> None:
        _, offset, size, *_ = RW_IN.unpack_from(body)
        op = "read" if opcode == READ else "write"
        err = self._fault(op, offset, size)
        self.served.append((op, offset, size, err))
        if err:
            self._reply(unique, error=err)
        elif opcode == READ:
            self._reply(unique, os.pread(self._img, size, offset))
        else:
            data = body[RW_IN.size : RW_IN.size + size]
            done = os.pwrite(self._img, data, offset)
            self._reply(unique, struct.pack("<II", done, 0))
