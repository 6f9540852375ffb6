"""Recording what the implementation did as a v1 trace (``source: "impl"``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..traces.format import write_trace
from .api import Bio, Inode, Iomap, Kiocb

IOCB = ("DSYNC", "SYNC", "NOWAIT", "ATOMIC", "HIPRI")


class TraceRecorder:
    """Collects events in the order they take effect; thread-safe."""

    def __init__(self, engine: str, geometry: dict[str, Any], *, fs: str | None = None,
                 profile: str | None = None,
                 note: str = "recorded by the dioconf implementation") -> None:  # fmt: skip
        self.header: dict[str, Any] = {
            "format": "dioconf-trace", "version": 1, "engine": engine, "geometry": geometry,
            "source": "impl", **({"fs": fs} if fs else {}),
            **({"profile": profile} if profile else {}), "note": note,
        }  # fmt: skip
        self.events: list[dict[str, Any]] = []
        self.begins: dict[int, dict[str, Any]] = {}  # req -> its begin event
        self.lock = threading.RLock()

    def _add(self, ev: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(ev)

    def begin(self, req: int, op: str, iocb: Kiocb, length: int, done_before: int,
              dio: frozenset[str], inode: Inode) -> None:  # fmt: skip
        with self.lock:
            self._add({"ev": "file", "i_size": inode.size})
            ev = {"ev": "begin", "req": req, "op": op, "pos": iocb.pos, "len": length,
                  "done_before": done_before,
                  "iocb": [f for f in IOCB if f in iocb.flags],
                  "dio": sorted(dio), "sync": iocb.is_sync}  # fmt: skip
            self.begins[req] = ev
            self._add(ev)

    def cached_pages(self, req: int, cached: bool) -> None:
        """begin.cached_pages means: the file has cached pages when the request
        completes (what iomap_dio_done reads), so it is set then."""
        with self.lock:
            ev = self.begins.get(req)
            if ev is not None:
                if cached:
                    ev["cached_pages"] = True
                else:
                    ev.pop("cached_pages", None)

    def input(self, req: int, ev: str, **fields: Any) -> None:
        self._add({"ev": ev, "req": req, **fields})

    def fault(self, req: int, at: int) -> None:
        self._add({"ev": "fault", "req": req, "at": at})

    def map(self, req: int, m: Iomap) -> None:
        self._add({"ev": "map", "req": req, "offset": m.offset, "length": m.length,
                   "type": m.type, "flags": sorted(m.flags), "addr": m.addr})  # fmt: skip

    def map_error(self, req: int, errno: int) -> None:
        self._add({"ev": "map", "req": req, "error": errno})

    def bio(self, req: int, bio: Bio) -> None:
        ev = {"ev": "bio", "req": req, "op": bio.op, "addr": bio.addr, "len": bio.length,
              "fua": bio.fua, "zero": bio.zero}  # fmt: skip
        if bio.atomic:
            ev["atomic"] = True
        self._add(ev)

    def bio_end(self, req: int, index: int, status: int) -> None:
        self._add({"ev": "bio_end", "req": req, "index": index, "status": status})

    def flush(self, req: int) -> None:
        self._add({"ev": "flush", "req": req})

    def queued(self, req: int) -> None:
        self._add({"ev": "queued", "req": req})

    def complete(self, req: int, ret: int, pos_after: int, i_size: int, ctx: str,
                 end_io: frozenset[str] = frozenset()) -> None:  # fmt: skip
        ev = {"ev": "complete", "req": req, "ret": ret, "pos_after": pos_after,
              "i_size": i_size, "ctx": ctx}  # fmt: skip
        if end_io:
            ev["end_io"] = sorted(end_io)
        self._add(ev)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock, open(path, "w", encoding="utf-8") as fp:
            write_trace(fp, self.header, self.events)
        return path
