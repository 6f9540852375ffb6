"""An in-memory file backend for testing the file-level checker: files as bytearrays,
every operation as the user's contract says, and mutants that break it one way each."""

from __future__ import annotations

from dioconf.conformance.backend import Capabilities
from dioconf.model.pattern import pattern

EFAULT, EINVAL = -14, -22


class MemFs:
    """A correct backend (``caps`` like a 4 KiB-block filesystem with 512-byte sectors)."""

    def __init__(self) -> None:
        self.caps = Capabilities(block_size=4096, logical_block_size=512, reflink=True,
                                 remount=True, zero_range=True, mmap=True,
                                 aio=True, uring=True)  # fmt: skip
        self.name = "memfs"
        self.data: dict[str, bytearray] = {}
        self.ino = 0
        self.garbage = b""  # what freed space holds (mutant: stale data)

    def create(self, name: str) -> int:
        self.data[name] = bytearray()
        self.ino += 1
        return self.ino

    def _put(self, name: str, pos: int, data: bytes) -> None:
        f = self.data[name]
        if len(f) < pos:
            f.extend(bytes(pos - len(f)))
        f[pos : pos + len(data)] = data

    def direct_write(self, name: str, pos: int, length: int, wid: int,
                     flags: frozenset[str], fault_at: int | None) -> int:  # fmt: skip
        n = length if fault_at is None else fault_at
        if n == 0:
            return EFAULT
        self._put(name, pos, pattern(wid, pos, n))
        return n

    def _read(self, name: str, pos: int, length: int) -> tuple[int, bytes]:
        out = bytes(self.data[name][pos : pos + length])
        return len(out), out

    def direct_read(self, name: str, pos: int, length: int,
                    flags: frozenset[str]) -> tuple[int, bytes]:  # fmt: skip
        return self._read(name, pos, length)

    def direct_batch(self, reqs: list[tuple[str, str, int, int, int, frozenset[str]]],
                     via: str = "aio") -> list[tuple[int, bytes]]:  # fmt: skip
        if via not in ("aio", "uring"):
            raise ValueError(f"direct_batch via {via!r}")
        out = []  # (io_uring like AIO: one request after the other)
        for kind, name, pos, length, wid, flags in reqs:
            if kind == "pwrite":
                out.append((self.direct_write(name, pos, length, wid, flags, None), b""))
            else:
                out.append(self._read(name, pos, length))
        return out

    def buffered_write(self, name: str, pos: int, length: int, wid: int) -> int:
        self._put(name, pos, pattern(wid, pos, length))
        return length

    def buffered_read(self, name: str, pos: int, length: int) -> tuple[int, bytes]:
        return self._read(name, pos, length)

    def fsync(self, name: str, data_only: bool) -> int:
        return 0

    def truncate(self, name: str, size: int) -> int:
        f = self.data[name]
        del f[size:]
        f.extend(bytes(size - len(f)))
        return 0

    def fallocate(self, name: str, pos: int, length: int, keep_size: bool) -> int:
        if not keep_size and pos + length > len(self.data[name]):
            self.truncate(name, pos + length)
        return 0

    def punch(self, name: str, pos: int, length: int) -> int:
        f = self.data[name]
        end = min(pos + length, len(f))
        if pos < end:
            f[pos:end] = bytes(end - pos)
        return 0

    def zero_range(self, name: str, pos: int, length: int, keep_size: bool) -> int:
        self.punch(name, pos, length)
        return self.fallocate(name, pos, length, keep_size)

    def mmap_write(self, name: str, pos: int, length: int, wid: int) -> int:
        n = max(0, min(length, len(self.data[name]) - pos))
        if n:
            self._put(name, pos, pattern(wid, pos, n))
        return n

    def reflink(self, src: str, spos: int, dst: str, dpos: int, length: int) -> int:
        if spos + length > len(self.data[src]):
            return EINVAL
        self._put(dst, dpos, bytes(self.data[src][spos : spos + length]))
        return 0

    def drop_cache(self, name: str) -> int:
        return 0

    def remount(self) -> int:
        return 0

    def remove(self, name: str) -> int:
        del self.data[name]
        return 0

    def size(self, name: str) -> int:
        return len(self.data[name])

    def read_view(self, name: str, pos: int, length: int) -> bytes:
        return self._read(name, pos, length)[1]

    def files(self) -> list[str]:
        return list(self.data)


class HeadPadFs(MemFs):
    """The iomap finding: a write faulting after progress zeroes the start of the block
    the fault is in, and reports its progress."""

    def direct_write(self, name: str, pos: int, length: int, wid: int,
                     flags: frozenset[str], fault_at: int | None) -> int:  # fmt: skip
        n = super().direct_write(name, pos, length, wid, flags, fault_at)
        end = pos + n
        if fault_at and n > 0 and end % 4096:
            self._put(name, end - end % 4096, bytes(end % 4096))
        return n


class GrowOnFailureFs(MemFs):
    """A write that fails with EFAULT still moves the size to its start."""

    def direct_write(self, name: str, pos: int, length: int, wid: int,
                     flags: frozenset[str], fault_at: int | None) -> int:  # fmt: skip
        n = super().direct_write(name, pos, length, wid, flags, fault_at)
        if n < 0 and pos > len(self.data[name]):
            self.truncate(name, pos)
        return n


class StaleFs(MemFs):
    """Growing a file by truncate exposes what freed space held (another run's data)."""

    def truncate(self, name: str, size: int) -> int:
        f = self.data[name]
        old = len(f)
        super().truncate(name, size)
        if size > old:
            junk = pattern(99_999, old, size - old)  # a write id no run of ours uses here
            f[old:size] = junk
        return 0


class ShortWriteFs(MemFs):
    """Writes of more than 16 KiB stop after 16 KiB, with no fault to explain it."""

    def direct_write(self, name: str, pos: int, length: int, wid: int,
                     flags: frozenset[str], fault_at: int | None) -> int:  # fmt: skip
        if fault_at is None and length > 16384:
            return super().direct_write(name, pos, 16384, wid, flags, None)
        return super().direct_write(name, pos, length, wid, flags, fault_at)


class LazyZeroFs(MemFs):
    """FALLOC_FL_ZERO_RANGE moves the size but leaves the old bytes in place."""

    def zero_range(self, name: str, pos: int, length: int, keep_size: bool) -> int:
        return self.fallocate(name, pos, length, keep_size)


class LostMmapFs(MemFs):
    """Writes through a mapping never reach the file."""

    def mmap_write(self, name: str, pos: int, length: int, wid: int) -> int:
        return max(0, min(length, len(self.data[name]) - pos))


class OnceStaleFs(StaleFs):
    """Exposes junk only the first time a truncate grows a file: a failure that does not
    come back when replayed (as stale data depends on what the allocator hands out)."""

    def __init__(self) -> None:
        super().__init__()
        self.spent = False

    def truncate(self, name: str, size: int) -> int:
        if self.spent:
            return MemFs.truncate(self, name, size)
        grows = size > len(self.data[name])
        StaleFs.truncate(self, name, size)
        self.spent = grows
        return 0
