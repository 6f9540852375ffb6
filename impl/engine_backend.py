"""The Python implementation as the engine-level suite's backend
(``conformance/engine_backend.py``): one ``World`` — engine, reference filesystem (or a
user's callbacks), page cache and image device, recording a v1 trace — with its bio
completions ordered by the suite's ``schedule``.

Files are named by inode number. Queries copy (``cached_pages``) or read without side
effects (``impl/view.py``); nothing here hands out the World's live objects except the
opaque bio handles of ``inflight``, which only go back to ``complete``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..conformance.backend import Capabilities
from ..conformance.engine_backend import CachedPage, Schedule
from .api import Inode
from .view import block_map, data_ranges, read_view
from .world import Result, World


class WorldBackend:
    """One World, driven by the engine-level suite."""

    def __init__(self, fs_factory: Callable[[Any], Any], *, engine: str = "iomap",
                 image: str | Path | None = None, size: int = 1 << 30,
                 logical_block_size: int = 512, write_cache: bool = True, fua: bool = False,
                 schedule: Schedule) -> None:  # fmt: skip
        self.engine = engine
        self.world = World(fs_factory, image=image, size=size,
                           logical_block_size=logical_block_size,
                           write_cache=write_cache, fua=fua, engine=engine,
                           page_cache=engine == "iomap", schedule=schedule)  # fmt: skip
        w = self.world
        self.caps = Capabilities(
            block_size=w.fs.block_size, logical_block_size=w.device.logical_block_size,
            page_size=w.page_size, fault_buffers=True, nowait=True,
            reflink=callable(getattr(w.fs, "reflink", None)),
            mmap=w.pc is not None, race_control=True, page_cache_pins=w.pc is not None,
            crash=True,
        )  # fmt: skip
        self._inodes: dict[int, Inode] = {}

    def _inode(self, ino: int) -> Inode:
        try:
            return self._inodes[ino]
        except KeyError:
            raise ValueError(f"no file with inode number {ino}") from None

    def _pc(self) -> Any:
        if self.world.pc is None:
            raise ValueError(f"the {self.engine} engine's World has no page cache")
        return self.world.pc

    # -- the recorded trace -------------------------------------------------------------

    @property
    def header(self) -> Mapping[str, Any]:
        assert self.world.trace is not None  # (built recording)
        return self.world.trace.header

    def events_since(self, start: int) -> Sequence[Mapping[str, Any]]:
        assert self.world.trace is not None
        return self.world.trace.events[start:]

    # -- operations ---------------------------------------------------------------------

    def create(self) -> int:
        inode = self.world.create()
        self._inodes[inode.ino] = inode
        return int(inode.ino)

    def direct(self, ino: int, pos: int, buf: bytearray, *, write: bool,
               flags: Iterable[str], dio: Iterable[str], sync: bool,
               fault_at: int | None, done_before: int) -> Result:  # fmt: skip
        f = self._inode(ino)
        kw = {"flags": flags, "dio": dio, "sync": sync, "fault_at": fault_at,
              "done_before": done_before, "settle": False}  # fmt: skip
        if write:
            return self.world.pwrite(f, pos, buf, **kw)  # type: ignore[arg-type]
        return self.world.pread(f, pos, len(buf), into=buf, **kw)  # type: ignore[arg-type]

    def file_write(self, ino: int, pos: int, data: bytes, flags: Iterable[str]) -> int:
        return self.world.file_write(self._inode(ino), pos, data, flags=flags)

    def buffered_write(self, ino: int, pos: int, data: bytes) -> int:
        return self.world.buffered_write(self._inode(ino), pos, data)

    def buffered_read(self, ino: int, pos: int, length: int) -> bytes:
        return self.world.buffered_read(self._inode(ino), pos, length)

    def fallocate(self, ino: int, pos: int, length: int, keep_size: bool) -> None:
        self.world.fallocate(self._inode(ino), pos, length, keep_size)

    def punch(self, ino: int, pos: int, length: int) -> None:
        self.world.punch(self._inode(ino), pos, length)

    def truncate(self, ino: int, size: int) -> None:
        self.world.truncate(self._inode(ino), size)

    def reflink(self, src: int, dst: int) -> None:
        self.world.reflink(self._inode(src), self._inode(dst))

    def fsync(self, ino: int | None = None) -> int:
        return self.world.fsync(None if ino is None else self._inode(ino))

    def crash(self) -> None:
        self.world.crash()

    def mmap_dirty(self, ino: int, pos: int) -> None:
        self._pc().mmap_dirty(self._inode(ino), pos)  # contents unchanged: dirty, pinned

    def unpin_all(self, ino: int) -> None:
        f, pc = self._inode(ino), self._pc()
        for index in list(pc.pages(f)):
            pc.unpin(f, index * self.world.page_size)

    # -- race control -------------------------------------------------------------------

    def inflight(self) -> list[Any]:
        return list(self.world.sched.inflight)

    def complete(self, bio: Any, status: int) -> None:
        self.world.sched.complete(bio, status)

    # -- queries ------------------------------------------------------------------------

    def size(self, ino: int) -> int:
        return int(self._inode(ino).size)

    def read_view(self, ino: int, start: int, end: int) -> bytes:
        return read_view(self.world, self._inode(ino), start, end)

    def data_ranges(self, ino: int, start: int, end: int) -> list[tuple[int, int]]:
        return data_ranges(self.world, self._inode(ino), start, end)

    def block_map(self, ino: int) -> Mapping[int, int]:
        return MappingProxyType(block_map(self.world, self._inode(ino)))  # (read-only)

    def cached_pages(self, ino: int) -> Mapping[int, CachedPage]:
        if self.world.pc is None:
            return {}
        pages = self.world.pc.pages(self._inode(ino))
        return {i: CachedPage(bytes(p.data), bool(p.pinned)) for i, p in pages.items()}

    def has_cached_pages(self, ino: int) -> bool:
        return self.world.pc is not None and self._inode(ino).cached_pages > 0

    # -- lifecycle ----------------------------------------------------------------------

    def save_trace(self, path: str | Path) -> Path:
        return self.world.save_trace(path)

    def close(self) -> None:
        self.world.close()
