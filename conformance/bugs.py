"""Engine bugs planted on purpose: proof that the conformance suite has teeth.

Each `PlantedBug` re-creates a class of real Linux direct-I/O bug (most of them fixed by
a known kernel commit) in the implementation's engine (``impl/iomap_dio.py``,
``impl/legacy_dio.py``, ``impl/legacy_complete.py``), at run time only:

    with planted("fua-into-unwritten"):
        run_suite("ci", fs=["xfs-like"], engine=["iomap"])  # must fail

A bug is one or two textual edits of one engine function: the planted function is the
engine's own source with that edit, compiled in the engine module's namespace (so it
calls the same helpers and sees the same constants) and put in place of the original
wherever it is bound, then put back, even on error. Nothing else is copied, and an
edit must match the current source exactly once: a bug whose code has moved fails to
plant with a clear error instead of silently planting nothing.

`quality.quality_report` runs the suite once per bug and tells whether it was caught.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import linecache
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from attrs import frozen

from .catalogue import COMBOS

Patch = Callable[[], contextlib.AbstractContextManager[None]]
ENGINE_MODULES = ("dioconf.impl.iomap_dio", "dioconf.impl.legacy_dio",
                  "dioconf.impl.legacy_complete", "dioconf.impl.sched")  # fmt: skip


class PlantError(Exception):
    """A bug cannot be planted: unknown name, or its edit no longer matches the engine."""


@frozen
class PlantedBug:
    """One engine bug. ``fs``: the filesystems of `conformance.run.COMBOS` it applies to
    (``()``: every filesystem of ``engine``); ``patch()``: a context manager planting it."""

    name: str
    summary: str
    kernel: str  # the kernel commit, or the bug class, it re-creates
    fs: tuple[str, ...]
    engine: str  # "iomap" or "legacy"
    patch: Patch


# ----------------------------------------------------------------------------- mutants


def _resolve(target: str) -> tuple[Any, str, Any]:
    """``"impl.iomap_dio:_bio_iter"`` or ``"impl.legacy_dio:LegacyDio.run"`` ->
    (owner, attribute name, the function as the owner holds it)."""
    modname, _, qualname = target.partition(":")
    owner: Any = importlib.import_module("dioconf." + modname)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, attr, vars(owner)[attr]


def _mutant(name: str, func: Any, edits: Sequence[tuple[str, str]]) -> Any:
    """``func`` compiled from its own source with ``edits`` applied, in its module's
    globals, with the original line numbers (tracebacks point at the engine's lines)."""
    lines, first = inspect.getsourcelines(func)
    source = "".join(lines)
    for old, new in edits:  # on the source as the file has it, then dedented
        found = source.count(old)
        if found != 1:
            raise PlantError(
                f"bug {name!r}: {func.__module__}.{func.__qualname__} contains "
                f"{old.strip()!r} {found} times (expected once): the engine changed; "
                "update the bug's edit in conformance/bugs.py"
            )
        source = source.replace(old, new)
    source = textwrap.dedent(source)
    filename = f"<planted {name}: {inspect.getsourcefile(func)}>"
    tree = ast.parse(source, filename)
    ast.increment_lineno(tree, first - 1)
    # compiled under this module's own `from __future__ import annotations`, as the engine
    code = compile(tree, filename, "exec")
    # the mutant's source, for tracebacks (padded so line numbers match)
    text = "\n" * (first - 1) + source
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(code, func.__globals__, namespace)  # def only: binds the mutant in `namespace`
    mutant = namespace[func.__name__]
    mutant.__qualname__ = func.__qualname__
    mutant.__doc__ = f"[planted bug {name}] {func.__doc__ or ''}"
    return mutant


@contextlib.contextmanager
def _swapped(swaps: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set each (owner, attribute, value), and put every original back afterwards."""
    saved: list[tuple[Any, str, Any]] = []
    try:
        for owner, attr, value in swaps:
            saved.append((owner, attr, vars(owner)[attr]))
            setattr(owner, attr, value)
        yield
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)


def _mutation(target: str, *edits: tuple[str, str]) -> Callable[[str], Patch]:
    """A patch factory: ``target`` replaced by its mutant with ``edits``. A module-level
    function is also replaced where another dioconf module imported it by name."""

    def factory(name: str) -> Patch:
        @contextlib.contextmanager
        def patch() -> Iterator[None]:
            owner, attr, original = _resolve(target)
            mutant = _mutant(name, original, edits)
            swaps = [(owner, attr, mutant)]
            if inspect.ismodule(owner):
                for modname, mod in list(sys.modules.items()):
                    if mod is owner or not modname.startswith("dioconf.") or mod is None:
                        continue
                    swaps += [(mod, a, mutant) for a, v in vars(mod).items() if v is original]
            with _swapped(swaps):
                yield

        return patch

    return factory


# ----------------------------------------------------------------------------- the bugs

_IOMAP, _LEGACY = "impl.iomap_dio", "impl.legacy_dio:LegacyDio"
_DEFS: list[tuple[str, str, str, tuple[str, ...], str, Callable[[str], Patch]]] = [
    # --- iomap: sub-block zeroing --------------------------------------------------------
    ("eof-tail-zero-missing",
     "a sub-block write ending at/after i_size into a written block does not zero the "
     "rest of the block (only new/unwritten blocks get a tail pad)",
     "b450672fb66b iomap: sub-block dio needs to zeroout beyond EOF",
     ("overwrite", "xfs-like", "reflink"), "iomap",
     _mutation(f"{_IOMAP}:_bio_iter", (
         'if (zeroout or (op == "write" and end >= dio.inode.size)) and end & (bs - 1):',
         "if zeroout and end & (bs - 1):"))),
    ("head-pad-missing",
     "the head pad of a write into a new/unwritten block is tested against the logical "
     "block size instead of the fs block size, so it is never written: stale data before "
     "the write shows",
     "bug class: sub-block zeroing keyed on the wrong block size (iomap_dio_bio_iter "
     "need_zeroout head pad; stale-data exposure)",
     ("xfs-like", "reflink", "overwrite"), "iomap",
     _mutation(f"{_IOMAP}:_bio_iter", (
         "if zeroout and pos & (bs - 1):", "if zeroout and pos & (env.lbs - 1):"))),
    ("unwritten-read-from-disk",
     "a direct read of an UNWRITTEN extent is sent to the device instead of zero-filling "
     "the user buffer: whatever the blocks held before shows",
     "bug class: unwritten extents read from disk (stale-data exposure; iomap_dio_iter "
     "IOMAP_UNWRITTEN read -> iomap_dio_hole_iter)",
     ("overwrite", "xfs-like", "reflink", "btrfs-like"), "iomap",
     _mutation(f"{_IOMAP}:_dio_iter", (
         "    if m.type == UNWRITTEN and not write:\n        return _zero_user(dio, pos, length)\n",
         ""))),
    # --- iomap: FUA versus flush ---------------------------------------------------------
    ("fua-into-unwritten",
     "an O_DSYNC write into an UNWRITTEN extent keeps WRITE_THROUGH: FUA bios and no "
     "sync at completion, so the extent conversion is not durable",
     "0929d8580071 iomap: FUA is wrong for DIO O_DSYNC writes into unwritten extents",
     ("xfs-like", "overwrite", "reflink"), "iomap",
     _mutation(f"{_IOMAP}:_bio_iter", (
         "if not work and F_DIRTY not in m.flags",
         "if (not work or m.type == UNWRITTEN) and F_DIRTY not in m.flags"))),
    ("need-sync-by-request",
     "NEED_SYNC is dropped for every O_DSYNC (not O_SYNC) write, as if write-through had "
     "worked, even when a bio cleared it: no flush, acknowledged data lost in a crash",
     "bug class: O_DSYNC completion sync skipped (since 'iomap: use FUA for pure data "
     "O_DSYNC DIO writes', 4.18, NEED_SYNC may only go when WRITE_THROUGH survived every bio)",
     (), "iomap",
     _mutation(f"{_IOMAP}:_finish_submission", (
         'if "WRITE_THROUGH" in dio.flags:', 'if "SYNC" not in dio.iocb.flags:'))),
    ("no-fua-without-write-cache",
     "a device without a volatile write cache is not treated as write-through: O_DSYNC "
     "overwrites get plain bios and a flush instead of FUA (slower, not unsafe)",
     "bug class: write-through devices not treated like FUA ones (iomap: 'a normal write "
     "to a device without a volatile write cache' counts as FUA)",
     ("overwrite", "xfs-like", "reflink"), "iomap",
     _mutation(f"{_IOMAP}:_bio_iter", (
         "(not env.write_cache or env.fua)", "env.fua"))),
    # --- iomap: request accounting -------------------------------------------------------
    ("short-read-uncapped",
     "a read that crosses i_size returns every byte it mapped, not i_size - pos",
     "bug class: short direct read not capped at i_size (iomap_dio_complete 'We only "
     "report that we've read data up to i_size')",
     ("reflink", "overwrite", "xfs-like", "btrfs-like"), "iomap",
     _mutation(f"{_IOMAP}:_complete", ("ret = dio.i_size - iocb.pos", "pass"))),
    ("done-before-dropped",
     "a resumed request (done_before > 0) reports only its own bytes",
     "4fdccaa0d184 iomap: Add done_before argument to iomap_dio_rw (ret += done_before "
     "on success)",
     ("xfs-like", "overwrite", "reflink", "btrfs-like"), "iomap",
     _mutation(f"{_IOMAP}:_complete", ("ret += dio.done_before", "pass"))),
    ("alignment-fs-block",
     "direct I/O alignment is checked against the fs block size instead of the device's "
     "logical block size: 512-byte aligned I/O gets -EINVAL",
     "bug class: wrong alignment unit (iomap_dio_bio_iter: logical block unless "
     "IOMAP_DIO_FSBLOCK_ALIGNED)",
     (), "iomap",
     _mutation(f"{_IOMAP}:_bio_iter", (
         'align = bs if "FSBLOCK_ALIGNED" in dio.flags else env.lbs', "align = bs"))),
    ("overwrite-only-extends",
     "IOMAP_DIO_OVERWRITE_ONLY lets a write that starts inside i_size extend the file",
     "bug class: OVERWRITE_ONLY must refuse any write reaching past EOF with -EAGAIN "
     "(iomap 5.12, xfs unaligned direct writes under a shared lock)",
     ("xfs-like", "overwrite", "reflink", "btrfs-like"), "iomap",
     _mutation(f"{_IOMAP}:iomap_dio_rw", (
         "if iocb.pos >= dio.i_size or iocb.pos + length > dio.i_size:",
         "if iocb.pos >= dio.i_size:"))),
    ("enotblk-not-short-write",
     "-ENOTBLK from ->iomap_begin is returned as the result instead of ending the request "
     "as a short write the caller completes with buffered I/O",
     "bug class: the 'magic error code to fall back to buffered I/O' leaking to the caller "
     "(__iomap_dio_rw: -ENOTBLK -> wait, ret = 0)",
     ("btrfs-like", "reflink"), "iomap",
     _mutation(f"{_IOMAP}:_finish_submission", (
         "    if ret == ENOTBLK:\n        wait, ret = True, 0\n", ""))),
    ("invalidate-eagain-to-enotblk",
     "a page-cache invalidation failure turns -EAGAIN (NOWAIT) into -ENOTBLK too, so a "
     "NOWAIT write falls back to (blocking) buffered I/O instead of returning -EAGAIN",
     "bug class: kiocb_invalidate_pages result mapping (iomap 5.9 'direct writes fall back "
     "to the page cache if the pre-write invalidation fails': -EAGAIN passes through)",
     (), "iomap",
     _mutation(f"{_IOMAP}:iomap_dio_rw", ("if ret != EAGAIN:", "if True:"))),
    ("invalidate-errno-leaks",
     "a page-cache invalidation failure (-EBUSY) is returned as is instead of -ENOTBLK "
     "(fall back to buffered I/O)",
     "bug class: invalidation failure must become -ENOTBLK (iomap 5.9: 'Make direct writes "
     "fall back to the page cache if the pre-write cache invalidation fails')",
     ("xfs-like", "overwrite", "reflink", "btrfs-like"), "iomap",
     _mutation(f"{_IOMAP}:iomap_dio_rw", (
         'ret = EAGAIN if "ATOMIC" in iocb.flags else ENOTBLK', "pass"))),
    # --- iomap: completion ---------------------------------------------------------------
    ("last-error-wins",
     "iomap_dio_set_error overwrites an earlier error (no cmpxchg): the last error wins",
     "bug class: first completion error must win (iomap_dio_set_error: cmpxchg(&dio->error, "
     "0, ret))",
     ("reflink", "xfs-like", "overwrite", "btrfs-like"), "iomap",
     _mutation(f"{_IOMAP}:Dio.set_error", (
         "if not self.error:\n            self.error = err", "self.error = err"))),
    ("error-keeps-submitting",
     "after a bio failed, the submitter keeps building and submitting bios",
     "bug class: an error already set must stop submission (iomap_dio_bio_iter: "
     "'if (unlikely(data_race(dio->error)))')",
     (), "iomap",
     _mutation(f"{_IOMAP}:_bio_iter", (
         "if dio.error:  # a completion already failed: submit nothing more",
         "if False:  # planted: submission ignores dio.error"))),
    ("ref-after-submit",
     "a bio's reference on the request is taken after the bio is submitted: a bio that "
     "completes at once drops the last reference, and the request completes early or twice",
     "bug class: dio reference taken after submit_bio (atomic_inc(&dio->ref) must precede "
     "submission; early/double completion, use-after-free)",
     (), "iomap",
     _mutation(f"{_IOMAP}:_submit",
               ("        dio.ref += 1\n", ""),
               ("        dio.env.sched.submit(bio)\n",
                "        dio.env.sched.submit(bio)\n    with dio.lock:\n        dio.ref += 1\n"))),
    ("invalidate-before-end-io",
     "the post-write page-cache invalidation runs before ->end_io: a buffered read racing "
     "the completion caches the zeros of an unwritten extent (or the old EOF page) that "
     "->end_io then converts (or extends), and the cache keeps them over the written data",
     "c771c14baa33 iomap: invalidate pages after ->end_io (and follow-ups: the ordering "
     "comment in iomap_dio_complete)",
     ("xfs-like", "overwrite", "reflink"), "iomap",
     _mutation(f"{_IOMAP}:_complete", (
         "    ret = dio.error\n    points = ",
         "    if (not dio.error and dio.size and \"WRITE\" in dio.flags\n"
         "            and \"NO_INVALIDATE\" not in dio.flags and env.invalidate_after):\n"
         "        env.invalidate_after(inode, iocb.pos, dio.size)\n"
         "    ret = dio.error\n    points = "), (
         "        env.invalidate_after(inode, iocb.pos, dio.size)\n    pos_after",
         "        pass\n    pos_after"))),
    # --- filesystem glue ------------------------------------------------------------------
    ("nowait-partial-mapping",
     "xfs-like lets a NOWAIT write go ahead on a mapping that does not span the request: "
     "the first extent is written, the next mapping needs an allocation and fails with "
     "-EAGAIN, and the caller is told -EAGAIN over changed data",
     "883a790a8440 xfs: don't allow NOWAIT DIO across extent boundaries",
     ("xfs-like",), "iomap",
     _mutation("impl.fs.simple:XfsLikeFs.nowait_must_span", (
         'if ("NOWAIT" in flags or "OVERWRITE_ONLY" in flags) and m.end < pos + length:',
         "if False:"))),
    # --- legacy: fs/direct-io.c ----------------------------------------------------------
    ("legacy-read-past-eof",
     "the early return of a read at/after i_size is missing: the read is mapped and "
     "issued, and dio_complete's short-read cap makes a negative result",
     "74cedf9b6c60 direct-io: Fix negative return from dio read beyond eof",
     (), "legacy",
     _mutation(f"{_LEGACY}.run", (
         "        if not self.write and pos >= self.i_size:\n"
         "            return self._early(0)  # a read at/after i_size\n", ""))),
    ("legacy-zero-block-missing",
     "dio_zero_block does nothing: the parts of a new fs block a sub-block write does not "
     "cover keep stale data",
     "bug class: dio_zero_block for buffer_new blocks with blkfactor (fs/direct-io.c; "
     "stale-data exposure on sub-block direct writes)",
     (), "legacy",
     _mutation(f"{_LEGACY}.dio_zero_block", (
         "if not self.blkfactor or not self.map_bh.new:", "if True:"))),
    ("legacy-io-error-lost",
     "a failed bio's status is not recorded in dio->io_error: the request reports success",
     "bug class: dio_bio_complete must set io_error (-EIO, or -EAGAIN for NOWAIT)",
     (), "legacy",
     _mutation("impl.legacy_complete:LegacyCompletion.dio_bio_complete", (
         "self.io_error = EAGAIN if bio.status == EAGAIN and nowait else EIO", "pass"))),
    ("legacy-efault-after-progress",
     "a user-buffer fault after progress fails the whole request instead of a short count",
     "4038acdb187e consistent treatment of EFAULT on O_DIRECT read/write",
     (), "legacy",
     _mutation("impl.legacy_complete:LegacyCompletion.dio_complete", (
         "if ret == EFAULT and transferred:", "if False:"))),
    ("legacy-aio-pos-uncapped",
     "an async request's ki_pos advances by every byte submitted, not by the bytes "
     "transferred (a short read at i_size moves ki_pos past EOF)",
     "bug class: ki_pos/transferred accounting in dio_complete's async branch "
     "(ki_pos += transferred)",
     (), "legacy",
     _mutation("impl.legacy_complete:LegacyCompletion.dio_complete", (
         "pos_after = pos + transferred if asynchronous",
         "pos_after = pos + self.result if asynchronous"))),
    ("legacy-skip-holes-ignored",
     "DIO_SKIP_HOLES is ignored: a direct write allocates blocks in a hole inside i_size "
     "instead of stopping short for the buffered fallback",
     "bug class: DIO_SKIP_HOLES (get_more_blocks: no block creation inside i_size for "
     "ext2-like filesystems)",
     (), "legacy",
     _mutation(f"{_LEGACY}.get_more_blocks", (
         "create = False  # only overwrites inside i_size", "pass"))),
    ("legacy-aio-dsync-inline",
     "an async O_DSYNC write completes inline in the bio's end_io instead of on the "
     "workqueue, where generic_write_sync may sleep",
     "02afc27faec9 direct-io: Handle O_(D)SYNC AIO",
     (), "legacy",
     _mutation(f"{_LEGACY}.run", (
         "self.defer_completion = True  # aio O_(D)SYNC writes complete on the workqueue",
         "pass"))),
]

BUGS: dict[str, PlantedBug] = {
    name: PlantedBug(name, summary, kernel, fs, engine, factory(name))
    for name, summary, kernel, fs, engine, factory in _DEFS
}

# Bugs the ci profile does not catch, why, and the strategy change that would reach them
# (a bug name -> the reason). Empty since the machine's edge rules (direct requests where
# the file's data starts and ends, async ones left in flight, a failing bio racing the
# next mapping): 25 of 25 caught (`pytest tests/test_quality.py`). A bug listed here is
# an expected failure there, so a strategy change shows in both directions.
UNREACHED: dict[str, str] = {}


def _stories() -> dict[str, tuple[dict[str, Any], tuple[Any, ...]]]:
    """Short stories (Harness arguments, operations) the harness passes on main and fails
    with the bug planted, for the bugs the random search finds hardest (those it has
    missed at some commit): the suite sees them whenever the strategies get there."""
    from .ops import CompleteBio, DirectRead, DirectWrite, Fsync, MmapDirty, Pick, Truncate

    eio, overwrite, getblock = -5, {"fs": "overwrite"}, {"fs": "getblock", "engine": "legacy"}
    return {
        "no-fua-without-write-cache": ({"fs": "overwrite", "write_cache": False}, (
            DirectWrite(0, 0, 4096, 1), Fsync(0),
            DirectWrite(0, 0, 4096, 2, flags=("DSYNC",)),
        )),
        "fua-into-unwritten": ({"fs": "xfs-like", "fua": True}, (
            DirectWrite(0, 0, 4096, 1, flags=("DSYNC",)),
        )),
        "eof-tail-zero-missing": (overwrite, (
            DirectWrite(0, 0, 1024, 1), DirectWrite(0, 512, 1024, 2),
        )),
        "last-error-wins": (overwrite, (  # file 0 in two extents: two bios, both fail
            DirectWrite(0, 0, 4096, 1), DirectWrite(1, 0, 4096, 2), DirectWrite(0, 4096, 4096, 3),
            DirectWrite(0, 0, 8192, 4, plan=(None, None, None, Pick(0, eio), Pick(0, -11))),
        )),
        "invalidate-before-end-io": ({"fs": "xfs-like"}, (
            Truncate(0, 8192), DirectWrite(0, 0, 4096, 1, sync=False),
            CompleteBio(0, plan=(Pick(0),)),
        )),
        "nowait-partial-mapping": ({"fs": "xfs-like"}, (
            DirectWrite(0, 0, 4096, 1), DirectWrite(0, 0, 8192, 2, flags=("NOWAIT",)),
        )),
        "invalidate-errno-leaks": (overwrite, (
            DirectWrite(0, 0, 8192, 1), MmapDirty(0, 0), DirectWrite(0, 0, 4096, 2),
        )),
        "legacy-efault-after-progress": (getblock, (
            DirectWrite(0, 0, 16384, 1), DirectRead(0, 0, 16384, fault_at=8192),
        )),
        "legacy-aio-dsync-inline": (getblock, (
            DirectWrite(0, 0, 4096, 1),
            DirectWrite(0, 0, 4096, 2, flags=("DSYNC",), sync=False), CompleteBio(0),
        )),
        "legacy-aio-pos-uncapped": (getblock, (
            DirectWrite(0, 0, 4096, 1), Truncate(0, 1000), DirectRead(0, 0, 4096, sync=False),
            CompleteBio(0),
        )),
    }  # fmt: skip


STORIES = _stories()


def _bug(name: str) -> PlantedBug:
    if name not in BUGS:
        raise PlantError(f"unknown bug {name!r}; known: {', '.join(sorted(BUGS))}")
    return BUGS[name]


def planted(name: str) -> contextlib.AbstractContextManager[None]:
    """A context manager that plants bug ``name`` and restores the engine on exit (not
    thread-safe: it patches modules; one bug at a time per process)."""
    return _bug(name).patch()


# ----------------------------------------------------------------------------- report


def filesystems(name: str) -> list[str]:
    """The filesystems bug ``name`` applies to, the one that shows it best first."""
    bug = _bug(name)
    return list(bug.fs) or [f for f, e in COMBOS if e == bug.engine]
