"""The catalogue of ``dioconf bench fidelity``: single-rule mutations of the model.

Each mutation changes ONE rule of the engine models (or of a profile): ``old`` is a
snippet that occurs exactly once in ``file`` (a path of the source tree: ``model/…``),
``new`` replaces it. ``seed`` names the kernel function, and its lines, the rule comes
from (``iomap-direct-io.c``, ``legacy-direct-io.c``, ``btrfs-direct-io.c`` under
../shared/seeds). ``blind`` is the reason the recorded kernel traces cannot show the
mutation, for those that survive them (``dioconf bench fidelity`` reports it; a
mutation the kernel traces kill needs none). ``tests/test_bench_fidelity.py`` checks
that every ``old`` still occurs exactly once, so the catalogue follows the model.
"""

from __future__ import annotations

from attrs import frozen

ENT = "model/iomap.py"
BIO = "model/iomap_bio.py"
ITR = "model/iomap_iter.py"
CMP = "model/iomap_complete.py"
ARI = "model/arith.py"
PRO = "model/profiles.py"
LSU = "model/legacy_submit.py"
LCO = "model/legacy_complete.py"
LEG = "model/legacy.py"

# reasons shared by several mutations
NO_CTX = (
    "Linux 6.18 completes every async write from iomap's workqueue (complete.ctx, "
    "recorded from workqueue_execute_start; profile linux-6.18, DIVERGENCES.md item 28), "
    "so the seed's choice between completing a write inline or from the workqueue does "
    "not show on this kernel"
)
NO_FUA = (
    "no device here supports FUA (loop: a write cache without FUA, so iomap never sets "
    "it, or no cache, where the block layer strips REQ_FUA before block_bio_queue; zram: "
    "none; no scsi_debug, nvme target, ublk or device-mapper, and no kernel modules)"
)
NO_LEGACY = (
    "this kernel has no filesystem that uses fs/direct-io.c: /proc/filesystems lists "
    "ext2/ext3 (served by ext4's iomap code), ext4, xfs, btrfs, squashfs, erofs, fuse, "
    "overlay, and there are no kernel modules (no vfat, hfs, jfs, nilfs2, ocfs2)"
)
LEGACY_FS = "a filesystem that uses fs/direct-io.c"
FUA_DEVICE = "a block device with a volatile write cache and FUA"


@frozen
class Mutation:
    name: str
    rule: str
    seed: str
    file: str
    old: str
    new: str
    blind: str = ""
    # what the machine lacks to run the rule at all (LEGACY_FS, FUA_DEVICE): a survivor
    # no recording here can kill
    needs: str = ""


M = Mutation
MUTATIONS: tuple[Mutation, ...] = (
    # ------------------------------------------------------------ __iomap_dio_rw entry
    M("read-at-eof-not-early", "a read at or after i_size returns 0 before any mapping",
      "iomap-direct-io.c __iomap_dio_rw L713-714", ENT,
      "if req.pos >= s.i_size:", "if req.pos > s.i_size:"),
    M("overwrite-only-extending", "OVERWRITE_ONLY: -EAGAIN when the write reaches past EOF",
      "iomap-direct-io.c __iomap_dio_rw L726-731", ENT,
      "req.pos >= s.i_size or arith.past_size(req.pos, req.len, s.i_size)",
      "req.pos >= s.i_size",
      blind=(
          "xfs, the only caller passing OVERWRITE_ONLY, takes the exclusive FORCE_WAIT path "
          "itself for an unaligned write reaching i_size (xfs_file_dio_write_unaligned; "
          "scenario eof-zeroing), so iomap never sees an extending OVERWRITE_ONLY write"
      )),
    M("need-sync-not-set", "NEED_SYNC: a dsync write syncs at completion",
      "iomap-direct-io.c __iomap_dio_rw L738-752", ENT,
      "flags |= NEED_SYNC", "pass"),
    M("write-through-for-o-sync", "WRITE_THROUGH (try FUA) for O_DSYNC only, not O_SYNC",
      "iomap-direct-io.c __iomap_dio_rw L748-751", ENT,
      'if "SYNC" not in req.iocb:', "if True:",
      blind=NO_FUA + "; and with the cache off no flush reaches block_bio_queue",
      needs=FUA_DEVICE),
    M("extending-write-inline", "COMP_WORK: a write past i_size completes in process context",
      "iomap-direct-io.c __iomap_dio_rw L757-758", ENT,
      "if arith.past_size(req.pos, req.len, s.i_size) or flags & BUF_WRITETHROUGH:",
      "if flags & BUF_WRITETHROUGH:",
      blind=NO_CTX),
    M("invalidate-eagain-falls-back", "invalidation -EAGAIN is returned unchanged",
      "iomap-direct-io.c __iomap_dio_rw L765-767", ENT,
      "if ret == E.EAGAIN:", "if False:",
      blind=(
          "the recorded invalidation -EAGAINs are NOWAIT writes; the mutant's -ENOTBLK sends "
          "them to the buffered path, whose NOWAIT result (-EAGAIN, -EOPNOTSUPP or the bytes) "
          "the model does not decide, so their syscall lines are not compared there"
      )),
    M("invalidate-fail-returned", "invalidation failure -> -ENOTBLK (buffered fallback)",
      "iomap-direct-io.c __iomap_dio_rw L777-780", ENT,
      'ret, why = E.ENOTBLK, "__iomap_dio_rw: invalidation failed',
      'ret, why = ret, "__iomap_dio_rw: invalidation failed',
      blind=(
          "the only recorded invalidation failures are NOWAIT -EAGAIN, which pass through: no "
          "page cache over a write's range could not be invalidated (-EBUSY) in a recording"
      )),
    M("atomic-invalidate-fallback", "atomic write: invalidation failure -> -EAGAIN",
      "iomap-direct-io.c __iomap_dio_rw L770-776", ENT,
      'elif "ATOMIC" in s.req.iocb:', "elif False:",
      blind="no atomic (RWF_ATOMIC) write was recorded"),
    M("writeback-error-ignored", "a kiocb_write_and_wait error before a read is returned",
      "iomap-direct-io.c __iomap_dio_rw L716-721", ENT,
      's, _ = _return_early(s, ret, "__iomap_dio_rw: kiocb_write_and_wait failed")',
      "return evolve(s, phase=ITER)"),
    M("force-wait-ignored", "FORCE_WAIT: the submitter waits even for an async kiocb",
      "iomap-direct-io.c __iomap_dio_rw L682-683", ENT,
      'wait=req.sync or "FORCE_WAIT" in req.dio,', "wait=req.sync,",
      blind=(
          "no tracepoint marks a waiting submitter's reference drop: every recorded async "
          "FORCE_WAIT write (ext4 extending aio) has its bio_end before complete, which a "
          "submitter that did not wait reads as bios ended before it let go (no -EIOCBQUEUED)"
      )),
    # ------------------------------------------------------------ iomap_dio_bio_iter
    M("align-to-fs-block", "alignment is the logical block size unless FSBLOCK_ALIGNED",
      "iomap-direct-io.c iomap_dio_bio_iter L408-411", BIO,
      "else geo.logical_block_size", "else geo.fs_block_size"),
    M("misaligned-length-unchecked", "misaligned position OR length -> -EINVAL",
      "iomap-direct-io.c iomap_dio_bio_iter L413-414", ARI,
      "return (pos | length) & (align - 1)", "return pos & (align - 1)"),
    M("unwritten-no-zeroout", "unwritten extent: sub-block writes zero head and tail",
      "iomap-direct-io.c iomap_dio_bio_iter L427-430", BIO,
      "flags |= UNWRITTEN  # L429: end_io must convert\n            zeroout = True",
      "flags |= UNWRITTEN  # L429: end_io must convert"),
    M("unwritten-no-end-io-flag", "unwritten extent: IOMAP_DIO_UNWRITTEN for ->end_io",
      "iomap-direct-io.c iomap_dio_bio_iter L429", BIO,
      "flags |= UNWRITTEN  #", "pass  #"),
    M("new-no-zeroout", "IOMAP_F_NEW: new blocks are zeroed around a sub-block write",
      "iomap-direct-io.c iomap_dio_bio_iter L456-463", BIO,
      "need_work = True  # L456-463: new blocks need metadata and zeroing\n"
      "            zeroout = True",
      "need_work = True  # L456-463: new blocks need metadata and zeroing"),
    M("shared-no-cow-flag", "IOMAP_F_SHARED: IOMAP_DIO_COW for ->end_io",
      "iomap-direct-io.c iomap_dio_bio_iter L447-454", BIO,
      "flags |= COW", "pass"),
    M("fua-despite-completion-work", "FUA only for pure overwrites (no completion work)",
      "iomap-direct-io.c iomap_dio_bio_iter L471-479 (bug 0929d8580071)", BIO,
      "if not need_work and ", "if ",
      blind=NO_FUA, needs=FUA_DEVICE),
    M("fua-despite-dirty", "no FUA when the mapping is IOMAP_F_DIRTY",
      "iomap-direct-io.c iomap_dio_bio_iter L471-479", BIO,
      '"DIRTY" not in m.flags and ', "",
      blind=NO_FUA, needs=FUA_DEVICE),
    M("fua-ignores-device", "FUA only on a device with no volatile cache or with FUA",
      "iomap-direct-io.c iomap_dio_bio_iter L471-479", BIO,
      "(not geo.write_cache or geo.fua)", "True"),
    M("write-through-not-cleared", "WRITE_THROUGH is cleared when a bio cannot be FUA",
      "iomap-direct-io.c iomap_dio_bio_iter L477-478", BIO,
      "flags &= ~WRITE_THROUGH", "pass"),
    M("completion-work-not-forced", "completion work (unwritten, shared, new) -> COMP_WORK",
      "iomap-direct-io.c iomap_dio_bio_iter L491-492", BIO,
      "if need_work:\n            flags |= COMP_WORK", "if need_work:\n            pass",
      blind=NO_CTX),
    M("no-head-zeroing", "head zeroing: zero from the block start to the write offset",
      "iomap-direct-io.c iomap_dio_bio_iter L518-525", BIO,
      'return _submit(s, start, pad, zero=True, rule="iomap_dio_zero: head pad")',
      "return s"),
    M("head-pad-logical-block", "the head pad is measured in fs blocks",
      "iomap-direct-io.c iomap_dio_bio_iter L520", BIO,
      "arith.zero_head(pos, geo.fs_block_size)", "arith.zero_head(pos, geo.logical_block_size)"),
    M("no-tail-zeroing-past-eof", "EOF zeroing: a write ending at/after i_size zeroes its tail",
      "iomap-direct-io.c iomap_dio_bio_iter L557-564 (bug b450672fb66b)", BIO,
      "if s.b_zeroout or (s.flags & WRITE and s.b_pos >= s.inode_size):", "if s.b_zeroout:"),
    M("tail-zeroing-strictly-past-eof", "EOF zeroing also for a write ending exactly at i_size",
      "iomap-direct-io.c iomap_dio_bio_iter L557-558", BIO,
      "s.b_pos >= s.inode_size", "s.b_pos > s.inode_size"),
    M("tail-pad-logical-block", "tail zeroing: the tail pad runs to the fs block's end",
      "iomap-direct-io.c iomap_dio_bio_iter L560-563", BIO,
      "arith.zero_tail(s.b_pos, s.geo.fs_block_size)",
      "arith.zero_tail(s.b_pos, s.geo.logical_block_size)"),
    M("tail-zeroing-keeps-error", "the tail zeroing's ret replaces the loop's error",
      "iomap-direct-io.c iomap_dio_bio_iter L561-563", BIO,
      "s = evolve(s, b_ret=0)", "pass"),
    M("error-does-not-stop-submission", "a completion error stops further bio submission",
      "iomap-direct-io.c iomap_dio_bio_iter L532-533", BIO,
      "    if s.error:\n        return evolve(s, phase=BIO_OUT), None",
      "    if False:\n        return evolve(s, phase=BIO_OUT), None"),
    M("bio-ignores-fault", "bio cutting: a bio holds only the pages that could be pinned",
      "iomap-direct-io.c iomap_dio_bio_iter_one L331-369 (bio_iov_iter_get_pages)", BIO,
      "max_len = avail & ~mask", "max_len = remaining & ~mask"),
    M("bio-cut-ignores-page-offset", "bio cutting: 256 pages, the first one possibly partial",
      "iomap-direct-io.c iomap_dio_bio_iter_one (bio_iov_vecs_to_alloc, BIO_MAX_VECS)", BIO,
      "return min(avail, BIO_MAX_VECS * page - buf % page)",
      "return min(avail, BIO_MAX_VECS * page)",
      blind=(
          "the replay takes every recorded bio cut the engine could make (trace-format.md); "
          "the default cut is used only for bios a trace does not record, and kernel traces "
          "record every bio"
      )),
    M("atomic-short-mapping-allowed", "atomic: a mapping shorter than the write -> -EINVAL",
      "iomap-direct-io.c iomap_dio_bio_iter L436-445", BIO,
      "if length != s.len:", "if False:",
      blind="no atomic (RWF_ATOMIC) write was recorded"),
    # ------------------------------------------------------------ iomap_iter, holes, glue
    M("hole-read-not-counted", "hole read: zero-fill the user buffer and count the bytes",
      "iomap-direct-io.c iomap_dio_hole_iter L573-581", ITR,
      "s = evolve(s, size=s.size + length)", "s = evolve(s, size=s.size)"),
    M("hole-read-ignores-fault", "hole read: a buffer that cannot be zeroed -> -EFAULT",
      "iomap-direct-io.c iomap_dio_hole_iter L573-581", ITR,
      "length = copyable(s, s.pos, iomap_length(s))", "length = iomap_length(s)"),
    M("unwritten-read-issues-bio", "a read of an unwritten extent reads zeros, no I/O",
      "iomap-direct-io.c iomap_dio_iter L625-627", ITR,
      'if m.type == "UNWRITTEN" and not write:', "if False:"),
    M("hole-write-zero-filled", "a HOLE mapping for a write -> -EIO",
      "iomap-direct-io.c iomap_dio_iter L621-623", ITR,
      'return set_status(s, E.EIO, "iomap_dio_iter: HOLE mapping for a write -> -EIO"), None',
      "return iomap_dio_hole_iter(s), None",
      blind=(
          "no filesystem maps a hole for a direct write (it is the -EIO bug path); no "
          "recorded write got a HOLE mapping"
      )),
    M("btrfs-short-submit-ok", "btrfs glue: fewer bytes submitted than mapped -> -ENOTBLK",
      "btrfs-direct-io.c btrfs_dio_iomap_end L604-613", ITR,
      "if s.submitted < length:", "if s.submitted < 0:"),
    M("btrfs-hole-read-enotblk", "btrfs glue: a read of a hole only unlocks (returns 0)",
      "btrfs-direct-io.c btrfs_dio_iomap_end L597-602", ITR,
      'if not s.flags & WRITE and m.type == "HOLE":', "if False:"),
    M("iomap-end-error-after-progress", "an ->iomap_end error wins only if nothing advanced",
      "btrfs-direct-io.c btrfs_dio_iomap_end L604-613, in iomap_iter (fs/iomap/iter.c)", ITR,
      "if end_ret < 0 and not advanced:", "if end_ret < 0:"),
    M("fua-not-stripped", "profile linux-6.18: no REQ_FUA at block_bio_queue without a cache",
      "Linux 6.18 submit_bio_noacct (traces/kernel/DIVERGENCES.md item 1)", PRO,
      "strip = self.fua_stripped_without_cache and not geo.write_cache", "strip = False"),
    # ------------------------------------------------------------ after the loop, completion
    M("partial-ignored", "PARTIAL: a fault after progress is a short result, not -EFAULT",
      "iomap-direct-io.c __iomap_dio_rw L814-818", CMP,
      'if ret == E.EFAULT and s.size and "PARTIAL" in s.req.dio:', "if False:"),
    M("partial-nowait-waits", "NOWAIT: a PARTIAL short request does not wait for its bios",
      "iomap-direct-io.c __iomap_dio_rw L814-818", CMP,
      'if "NOWAIT" not in s.req.iocb:', "if True:",
      blind=(
          "btrfs, whose no-fault iterator is the only way to fault after progress, answers "
          "-EAGAIN at ->iomap_begin to a recorded async NOWAIT read of 16 KiB "
          "(partial-faults), before any progress; the recorded faults after progress are in "
          "requests that wait anyway"
      )),
    M("enotblk-returned", "-ENOTBLK from the loop: return what was done (fallback for the rest)",
      "iomap-direct-io.c __iomap_dio_rw L820-824", CMP,
      "wait, ret = True, 0", "wait = True"),
    M("write-through-keeps-need-sync", "all bios FUA -> no sync at completion",
      "iomap-direct-io.c __iomap_dio_rw L836-839", CMP,
      "flags &= ~NEED_SYNC", "pass",
      blind=(
          "it matters only when every bio was written through with FUA: " + NO_FUA
      ), needs=FUA_DEVICE),
    M("need-sync-inline", "a needed sync forces process-context completion",
      "iomap-direct-io.c __iomap_dio_rw L836-839", CMP,
      "elif flags & NEED_SYNC:\n        flags |= COMP_WORK",
      "elif flags & NEED_SYNC:\n        pass",
      blind=NO_CTX),
    M("async-never-queued", "an async kiocb with bios in flight returns -EIOCBQUEUED",
      "iomap-direct-io.c __iomap_dio_rw L856-870", CMP,
      "if not wait:", "if False:"),
    M("last-error-wins", "first error wins (cmpxchg on dio->error)",
      "iomap-direct-io.c iomap_dio_set_error L174-177", ARI,
      "return ite(current == 0, new, current)", "return ite(new == 0, current, new)"),
    M("error-completion-inline", "error completions always run in process context",
      "iomap-direct-io.c iomap_dio_done L203-204", CMP,
      "if s.error:\n        flags |= COMP_WORK", "if s.error:\n        pass"),
    M("cached-pages-inline", "a write with cached pages completes from a workqueue",
      "iomap-direct-io.c iomap_dio_done L213-219", CMP,
      "flags |= COMP_WORK if s.req.cached_pages else NO_INVALIDATE", "flags |= NO_INVALIDATE",
      blind=NO_CTX + "; begin.cached_pages is not recorded either"),
    M("no-short-read-cap", "short read: the result is capped at i_size - pos",
      "iomap-direct-io.c iomap_dio_complete L117-123", CMP,
      "capped = ret if s.flags & WRITE else arith.short_read_cap(req.pos, ret, s.i_size)",
      "capped = ret"),
    M("ki-pos-by-size", "ki_pos advances by the result (capped), not by dio->size",
      "iomap-direct-io.c iomap_dio_complete L141-144", CMP,
      "pos_after = arith.ki_pos_after(req.pos, ret)",
      "pos_after = arith.ki_pos_after(req.pos, s.size)"),
    M("ki-pos-on-error", "ki_pos moves only for a positive result",
      "iomap-direct-io.c iomap_dio_complete L141-144", ARI,
      "return ite(gt(ret, 0), pos + ret, pos)", "return pos + ret"),
    M("done-before-dropped", "done_before is added to a positive result",
      "iomap-direct-io.c iomap_dio_complete L152-153", CMP,
      "ret = arith.add_done_before(ret, req.done_before)", "ret = ret"),
    M("i-size-not-extended", "a successful write past EOF moves i_size (->end_io)",
      "iomap-operations.rst end_io (xfs_dio_write_end_io)", CMP,
      "if s.flags & WRITE and not s.error and s.size and req.pos + s.size > inode_size:",
      "if False:"),
    M("no-flush-at-completion", "NEED_SYNC: generic_write_sync at completion",
      "iomap-direct-io.c iomap_dio_complete L150-151", CMP,
      'outputs.append(Flush(rule="iomap_dio_complete: generic_write_sync (NEED_SYNC)"))',
      "pass"),
    # ------------------------------------------------------------ legacy engine
    M("legacy-no-subblock-zeroing", "legacy: sub-block I/O into a new block zeroes the rest",
      "legacy-direct-io.c dio_zero_block L849-851", LSU,
      "if not s.blkfactor or not s.map_new:", "if True:",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-enotblk-returned", "legacy: -ENOTBLK leaves the rest to buffered I/O (ret 0)",
      "legacy-direct-io.c __blockdev_direct_IO L1241-1247", LSU,
      "if s.retval == E.ENOTBLK:", "if False:",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-hole-at-eof", "legacy: a hole at/after ALIGN(i_size) ends the read",
      "legacy-direct-io.c do_direct_IO L980-987", LSU,
      "if s.block_in_file >= i_size_aligned >> s.blkbits:",
      "if s.block_in_file > i_size_aligned >> s.blkbits:",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-no-short-read-cap", "legacy: short read capped at i_size - offset",
      "legacy-direct-io.c dio_complete L253-255", LCO,
      "if not c.write:\n            capped_to", "if False:\n            capped_to",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-efault-after-progress", "legacy: -EFAULT ignored when some I/O was done",
      "legacy-direct-io.c dio_complete L257-258", LCO,
      "if ret == E.EFAULT and transferred:", "if False:",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-no-dsync-flush", "legacy: generic_write_sync for O_(D)SYNC writes",
      "legacy-direct-io.c dio_complete L307-308", LCO,
      "flush = ret > 0 and c.write and c.dsync", "flush = False",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-short-aio-write-queued", "legacy: only a complete aio write is left queued",
      "legacy-direct-io.c __blockdev_direct_IO L1290-1292", LCO,
      "(not c.write or s.result == c.count)", "(not c.write)",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-extending-aio-async", "legacy: an extending aio write is waited for",
      "legacy-direct-io.c __blockdev_direct_IO L1166-1171", LEG,
      "is_async = not c.sync_kiocb and not (c.write and arith.past_size(c.pos, c.count, c.i_size))",
      "is_async = not c.sync_kiocb",
      blind=NO_LEGACY, needs=LEGACY_FS),
    M("legacy-dsync-aio-not-deferred", "legacy: aio O_(D)SYNC writes defer completion",
      "legacy-direct-io.c __blockdev_direct_IO L1186-1189", LEG,
      "defer = is_async and c.write and c.dsync", "defer = False",
      blind=NO_LEGACY, needs=LEGACY_FS),
)
