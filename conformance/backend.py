"""The seam between the conformance suite and what it tests.

A *backend* performs file operations on some system under test — the real kernel on a
loop-mounted image (``impl/kernel/backend.py``) or the Python implementation
(``impl/file_backend.py``) — and answers queries about the files. The suite owns this
interface: it decides operations, feeds them to the oracle and checks the answers, and
never touches a backend's internals.

Conventions: a file is named by a short string and created on first use; results are
the syscall's, as an integer: bytes done (>= 0) or a negative errno. Data written by
write ``wid`` at ``pos`` is ``model.pattern.pattern(wid, pos, length)`` — the backend
makes the bytes itself. Queries (``size``, ``read_view``, ``files``) change nothing the
user can see; in the kernel a read view may fill the page cache, never dirty it.

A backend declares what it can do in ``Capabilities``; the suite draws only operations a
backend supports (an operation it lacks is never drawn, rather than drawn and skipped).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import attrs
from attrs import field, frozen

# the flags a direct request may carry (preadv2/pwritev2 RWF_*)
RWF_FLAGS = frozenset({"DSYNC", "SYNC", "NOWAIT"})


def _power_of_two(_: object, a: attrs.Attribute[int], value: int) -> None:
    if value < 512 or value & (value - 1):
        raise ValueError(f"{a.name} must be a power of two >= 512, got {value}")


@frozen
class Capabilities:
    """What a backend can do; the suite's drawing rules read these, nothing else."""

    block_size: int = field(validator=_power_of_two)  # the filesystem block
    logical_block_size: int = field(validator=_power_of_two)  # direct-I/O alignment
    page_size: int = field(default=4096, validator=_power_of_two)
    fault_buffers: bool = True  # user buffers with inaccessible pages (EFAULT)
    nowait: bool = True  # RWF_NOWAIT
    reflink: bool = False  # FICLONERANGE
    zero_range: bool = False  # fallocate(FALLOC_FL_ZERO_RANGE)
    mmap: bool = False  # writes through a shared mapping (dirty pages, no syscall)
    aio: bool = False  # direct requests in flight together (Linux AIO)
    uring: bool = False  # direct requests in flight together (io_uring)
    remount: bool = False  # unmount and mount again (the page cache starts empty)
    race_control: bool = False  # the suite orders bio completions itself
    page_cache_pins: bool = False  # the suite pins and unpins cached pages itself
    crash: bool = False  # the suite can crash the backend and look at what survived

    @property
    def alignment(self) -> int:
        return self.logical_block_size


class FileBackend(Protocol):
    """A system under test, driven one operation at a time."""

    name: str  # for reports: "kernel xfs 4k", "impl xfs-like"
    caps: Capabilities

    # -- operations: each returns bytes done or 0, or a negative errno -----------------
    def create(self, name: str) -> int:
        """Create the empty file ``name``; its inode number (the oracle's key)."""
        ...

    def direct_write(self, name: str, pos: int, length: int, wid: int,
                     flags: frozenset[str], fault_at: int | None) -> int:  # fmt: skip
        """O_DIRECT pwritev2 of write ``wid``'s data. ``fault_at``: the buffer's page
        at that offset (a multiple of the page size) and all after it are inaccessible."""
        ...

    def direct_read(self, name: str, pos: int, length: int,
                    flags: frozenset[str]) -> tuple[int, bytes]:  # fmt: skip
        """O_DIRECT preadv2: the result and the bytes read (``result`` of them)."""
        ...

    def direct_batch(self, reqs: list[tuple[str, str, int, int, int, frozenset[str]]],
                     via: str = "aio") -> list[tuple[int, bytes]]:  # fmt: skip
        """``(kind, name, pos, length, wid, flags)`` requests (``pwrite``/``pread``)
        submitted together and reaped: each one's result and, for a read, its bytes.
        ``via``: ``aio`` (Linux AIO, ``caps.aio``) or ``uring`` (io_uring,
        ``caps.uring``)."""
        ...

    def buffered_write(self, name: str, pos: int, length: int, wid: int) -> int: ...
    def buffered_read(self, name: str, pos: int, length: int) -> tuple[int, bytes]: ...
    def fsync(self, name: str, data_only: bool) -> int: ...
    def truncate(self, name: str, size: int) -> int: ...
    def fallocate(self, name: str, pos: int, length: int, keep_size: bool) -> int: ...
    def punch(self, name: str, pos: int, length: int) -> int: ...
    def zero_range(self, name: str, pos: int, length: int, keep_size: bool) -> int: ...
    def mmap_write(self, name: str, pos: int, length: int, wid: int) -> int:
        """Write through a shared mapping of the file, up to EOF (mapping past EOF
        would fault): the bytes written (pages dirtied, no msync)."""
        ...
    def reflink(self, src: str, spos: int, dst: str, dpos: int, length: int) -> int: ...
    def drop_cache(self, name: str) -> int: ...
    def remount(self) -> int: ...
    def remove(self, name: str) -> int:
        """Unlink the file (a run's files go when the run ends)."""
        ...

    # -- queries: no effect a user could see ---------------------------------------------
    def size(self, name: str) -> int: ...
    def read_view(self, name: str, pos: int, length: int) -> bytes:
        """The file's bytes ``[pos, pos + length)`` as a reader sees them now (shorter
        at EOF)."""
        ...

    def files(self) -> Iterable[str]: ...
