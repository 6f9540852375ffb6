"""What the last commit made durable, as the contract checker sees it (a mixin of
`conformance.contract.Checked`, which has the filesystem as ``_fs``).

The checker takes the suite's operations that commit -- ``fsync`` (of any file: a
journal commits every file's metadata) and ``crash`` (what comes back is what was
durable) -- and records then, for every file it has seen created, its i_size and its
extent map. Two rules use that record:

- ``dirty-missing`` needs to know whether a file's metadata is committed: the
  filesystem's own ``metadata_dirty(inode)`` says so when it has one; otherwise the
  record is compared with the file now (a filesystem that commits elsewhere than at
  fsync defines ``metadata_dirty`` to say so);
- ``reuse-before-commit``: blocks a call allocates (IOMAP_F_NEW) must not be blocks the
  last commit gives to another file (or to this one elsewhere): a crash brings that
  commit back, and with it the old owner, which then shows this write's data.
"""

from __future__ import annotations

from typing import Any

from ..impl.api import MAPPED, UNWRITTEN, Inode, Iomap
from .contract_extent import extents

TAIL_BLOCKS = 64  # blocks past EOF recorded (preallocated past EOF)

Runs = tuple[tuple[int, int, str, int], ...]  # (from, to, type, device address of from)


class CommitChecks:
    _fs: Any

    def _commit_init(self) -> None:
        object.__setattr__(self, "_inodes", {})  # ino -> Inode, every file created
        object.__setattr__(self, "_committed", {})  # ino -> (i_size, runs) at the last commit

    # -- the suite's operations that create and commit ------------------------------------

    def create(self) -> Any:
        inode = self._fs.create()
        self._inodes[inode.ino] = inode  # type: ignore[attr-defined]
        return inode

    def fsync(self, *args: Any, **kwargs: Any) -> Any:
        ret = self._fs.fsync(*args, **kwargs)
        if not ret:  # 0 (or None): committed
            self._commit_all()
        return ret

    def crash(self) -> Any:
        ret = self._fs.crash()
        self._commit_all()
        return ret

    # -- the record ----------------------------------------------------------------------

    def _runs(self, inode: Inode) -> Runs:
        """The file's data runs, from 0 to a little past EOF."""
        bs = self._fs.block_size
        end = -(-inode.size // bs) * bs + TAIL_BLOCKS * bs
        return tuple((p, hi, e.type, e.addr + p - e.offset)
                     for p, hi, e in extents(self._fs, inode, 0, end)
                     if e.type in (MAPPED, UNWRITTEN) and e.addr is not None)  # fmt: skip

    def _commit_all(self) -> None:
        committed = self._committed  # type: ignore[attr-defined]
        committed.clear()
        for ino, inode in self._inodes.items():  # type: ignore[attr-defined]
            try:
                committed[ino] = (inode.size, self._runs(inode))
            except Exception:  # a file the filesystem no longer has (never committed)
                continue

    def _metadata_dirty(self, inode: Inode) -> tuple[bool | None, str]:
        """Whether the file's metadata is not committed, and how that was decided (None:
        unknown, a file the checker never saw created)."""
        own = getattr(self._fs, "metadata_dirty", None)
        if own is not None:
            return bool(own(inode)), (f"metadata_dirty(ino={inode.ino}) is true: it changed "
                                       "since the last fsync")
        was = self._committed.get(inode.ino)  # type: ignore[attr-defined]
        if inode.ino not in self._inodes:  # type: ignore[attr-defined]
            return None, ""
        dirty = was is None or was != (inode.size, self._runs(inode))
        return dirty, ("they differ from what they were at the last fsync: your filesystem "
                       "has no metadata_dirty(inode), so the checker compared them itself; "
                       "define it if you commit elsewhere than at fsync")

    def _reused(self, inode: Inode, m: Iomap) -> str:
        """Why the fresh blocks of ``m`` are still another file's (or this file's at
        another offset) in the last commit, or ""."""
        if m.addr is None:
            return ""
        lo, hi = m.addr, m.addr + m.length
        for ino, (_, runs) in self._committed.items():  # type: ignore[attr-defined]
            for a, b, _, dev in runs:
                s, e = max(lo, dev), min(hi, dev + b - a)
                if s >= e or (ino == inode.ino and dev - a == m.addr - m.offset):
                    continue
                who = "this file" if ino == inode.ino else f"inode {ino}"
                return (f"device bytes [{s}, {e}) belong, in the last commit, to {who} at file "
                        f"offset {a + s - dev}: the free of those blocks is not committed, so a "
                        "crash brings the old owner back onto this write's data (another "
                        "file's data exposed); keep freed blocks busy until the free is "
                        "committed, as xfs's busy extents do")
        return ""
