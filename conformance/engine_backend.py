"""The seam between the engine-level suite (``conformance/harness.py``) and what it tests.

``conformance/backend.py`` is the file-level seam: whole system calls, checked against
the oracle. The engine-level suite checks more — every request's recorded trace against
the model's engine, bio by bio, with bio completions it orders itself — so it needs more
of a backend, all of it here and nothing else:

- **operations**, named by inode number: direct requests that may stay in flight
  (``direct``: its `Submitted` says so), the other system calls, ``crash``;
- **race control** (``caps.race_control``): the bios in flight (``inflight``, opaque
  handles with an ``index``), ``complete(bio, status)``, and a ``schedule`` callback the
  backend calls at each race point (``where``, the bios in flight) to be told which bio
  completes there, with which status — the suite draws the order, the shrinker
  minimises it;
- **page cache pins** (``caps.page_cache_pins``): ``mmap_dirty`` pins a page dirty,
  ``unpin_all`` lets a file's pins go;
- **crash** (``caps.crash``): power failure, everything not durable may be lost;
- **queries without side effects**: ``size``, ``read_view``, ``data_ranges``,
  ``block_map``, ``cached_pages`` (copies, never live objects), and the recorded trace
  (``header``, ``events_since``), which the suite streams into the model.

The Python implementation is the adapter (``impl/engine_backend.py``); a backend that
cannot order completions or record bios (the real kernel) is driven through the file
seam instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from attrs import frozen

from .backend import Capabilities

# a race point and the bios in flight -> (bio, status) pairs to complete there
Schedule = Callable[[str, list[Any]], list[tuple[Any, int]]]


@frozen
class CachedPage:
    """A copy of one cached page: its bytes and whether a pin keeps it (mmap)."""

    data: bytes
    pinned: bool


class Submitted(Protocol):
    """What a direct request did: ``ret`` (synchronous result, or -EIOCBQUEUED),
    ``queued`` (left in flight), ``req`` (its number in the trace) and ``completion``
    (a list the backend fills with the result when an async request completes)."""

    ret: int
    queued: bool
    req: int
    completion: list[int] | None


class EngineBackend(Protocol):
    """A system under test whose direct-I/O engine the suite watches bio by bio."""

    caps: Capabilities
    engine: str  # "iomap" or "legacy": the model engine its trace is replayed on

    # -- the recorded trace -------------------------------------------------------------
    @property
    def header(self) -> Mapping[str, Any]: ...
    def events_since(self, start: int) -> Sequence[Mapping[str, Any]]: ...

    # -- operations ---------------------------------------------------------------------
    def create(self) -> int: ...
    def direct(self, ino: int, pos: int, buf: bytearray, *, write: bool,
               flags: Iterable[str], dio: Iterable[str], sync: bool,
               fault_at: int | None, done_before: int) -> Submitted: ...  # fmt: skip
    def file_write(self, ino: int, pos: int, data: bytes, flags: Iterable[str]) -> int: ...
    def buffered_write(self, ino: int, pos: int, data: bytes) -> int: ...
    def buffered_read(self, ino: int, pos: int, length: int) -> bytes: ...
    def fallocate(self, ino: int, pos: int, length: int, keep_size: bool) -> None: ...
    def punch(self, ino: int, pos: int, length: int) -> None: ...
    def truncate(self, ino: int, size: int) -> None: ...
    def reflink(self, src: int, dst: int) -> None: ...
    def fsync(self, ino: int | None = None) -> int: ...
    def crash(self) -> None: ...
    def mmap_dirty(self, ino: int, pos: int) -> None: ...
    def unpin_all(self, ino: int) -> None: ...

    # -- race control -------------------------------------------------------------------
    def inflight(self) -> list[Any]: ...
    def complete(self, bio: Any, status: int) -> None: ...

    # -- queries ------------------------------------------------------------------------
    def size(self, ino: int) -> int: ...
    def read_view(self, ino: int, start: int, end: int) -> bytes: ...
    def data_ranges(self, ino: int, start: int, end: int) -> list[tuple[int, int]]: ...
    def block_map(self, ino: int) -> Mapping[int, int]: ...
    def cached_pages(self, ino: int) -> Mapping[int, CachedPage]: ...
    def has_cached_pages(self, ino: int) -> bool: ...

    # -- lifecycle ----------------------------------------------------------------------
    def save_trace(self, path: str | Path) -> Path: ...
    def close(self) -> None: ...
