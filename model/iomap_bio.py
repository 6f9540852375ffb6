"""iomap_dio_bio_iter() and iomap_dio_zero(): building and submitting bios.

Line numbers (L…) refer to ../shared/seeds/iomap-direct-io.c.
"""

from __future__ import annotations

from . import arith
from . import errno as E
from .evolve import evolve
from .iomap_state import (
    BIO_LOOP,
    BIO_MAX_VECS,
    BIO_NEXT,
    BIO_OUT,
    BIO_TAIL,
    BUF_WRITETHROUGH,
    COMP_WORK,
    COW,
    FSBLOCK_ALIGNED,
    UNWRITTEN,
    WAIT_CUT,
    WRITE,
    WRITE_THROUGH,
    IomapState,
    iomap_iter_advance,
    iomap_length,
    pinnable,
    set_status,
)
from .types import Action, Bio, BioRun, ModelUsageError, NeedCut, errno_name


def iomap_dio_bio_iter(s: IomapState) -> IomapState:
    m = s.mapping
    assert m is not None
    geo = s.geo
    length = iomap_length(s)
    pos = s.pos
    # iomap_dio_bio_iter (L408-411): FSBLOCK_ALIGNED asks fs-block alignment, else lbs
    align = geo.fs_block_size if s.flags & FSBLOCK_ALIGNED else geo.logical_block_size
    # iomap_dio_bio_iter (L413-414): misaligned position or length -> -EINVAL
    if arith.misaligned(pos, length, align):
        why = f"iomap_dio_bio_iter: pos {pos} or length {length} not aligned to {align}"
        return set_status(s, E.EINVAL, why)
    flags = s.flags
    zeroout = fua = atomic = False
    if flags & WRITE:
        # iomap_dio_bio_iter (L417-434): only MAPPED needs no completion work
        need_work = m.type != "MAPPED"
        if m.type == "UNWRITTEN":
            flags |= UNWRITTEN  # L429: end_io must convert
            zeroout = True
        if "ATOMIC_BIO" in m.flags:
            # iomap_dio_bio_iter (L436-445): an atomic bio must cover the whole write
            if length != s.len:
                why = "iomap_dio_bio_iter: ATOMIC_BIO mapping shorter than the write -> -EINVAL"
                return set_status(evolve(s, flags=flags), E.EINVAL, why)
            atomic = True
        if "SHARED" in m.flags:
            need_work = True  # L447-454: unsharing needs end_io work
            flags |= COW
        if "NEW" in m.flags:
            need_work = True  # L456-463: new blocks need metadata and zeroing
            zeroout = True
        # iomap_dio_bio_iter (L471-479): FUA only for pure overwrites on a device that
        # either has no volatile cache or supports FUA; anything else clears WRITE_THROUGH
        if flags & WRITE_THROUGH:
            if not need_work and "DIRTY" not in m.flags and (not geo.write_cache or geo.fua):
                fua = True
            else:
                flags &= ~WRITE_THROUGH
        # iomap_dio_bio_iter (L491-492): completion work forces deferred completion
        if need_work:
            flags |= COMP_WORK
    s = evolve(
        s,
        flags=flags,
        b_len=length,
        b_pos=pos,
        b_copied=0,
        b_zeroout=zeroout,
        b_fua=fua,
        b_atomic=atomic,
        b_align=align,
        b_ret=0,
        phase=BIO_LOOP,
    )
    if zeroout:
        # iomap_dio_bio_iter (L518-525): zero from the block start to the write offset
        start, pad = arith.zero_head(pos, geo.fs_block_size)
        if pad:
            return _submit(s, start, pad, zero=True, rule="iomap_dio_zero: head pad")
    return s


def _sector_addr(s: IomapState, pos: int) -> int:
    # iomap_sector(): device address of file offset pos, in whole 512-byte sectors
    m = s.mapping
    assert m is not None and m.addr is not None
    return ((m.addr + pos - m.offset) >> 9) << 9


def _submit(
    s: IomapState, pos: int, length: int, *, zero: bool, rule: str, **changes: object
) -> IomapState:
    # iomap_dio_submit_bio (L62-67): each bio holds a reference on the dio
    bio = Bio(
        index=s.nbios,
        op="write" if zero else s.req.op,
        addr=_sector_addr(s, pos),
        len=length,
        fua=s.b_fua and not zero,  # iomap_dio_zero (L312-313): REQ_OP_WRITE|SYNC|IDLE only
        zero=zero,
        atomic=s.b_atomic and not zero,
        rule=rule,
    )
    return evolve(
        s,
        ref=s.ref + 1,
        submitted=s.submitted + length,
        nbios=s.nbios + 1,
        outstanding=s.outstanding.add(bio.index),
        pending=(*s.pending, bio),
        **changes,
    )


def _default_cut(s: IomapState, pos: int, avail: int) -> int:
    if s.flags & BUF_WRITETHROUGH:
        # RFC writethrough passes a bvec iterator over the folio; bio_iov_iter_get_pages
        # hands a bvec iterator to bio_iov_bvec_set whole: one bio for the extent
        return avail
    # bio_iov_vecs_to_alloc / BIO_MAX_VECS: one bio carries at most 256 pages of a
    # page-aligned user buffer (the first one possibly partial)
    page = s.geo.page_size
    buf = pos - s.req.pos
    return min(avail, BIO_MAX_VECS * page - buf % page)


def bio_loop(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter (L532-533): an error already reported by a completion stops
    # submission (goto out: no tail zeroing)
    if s.error:
        return evolve(s, phase=BIO_OUT), None
    remaining = s.b_len - s.b_copied
    mask = s.b_align - 1
    # bio_iov_iter_get_pages: pin what the user buffer allows, trimmed to the alignment
    avail = pinnable(s, s.b_pos, remaining)
    max_len = avail & ~mask
    proposal = _default_cut(s, s.b_pos, max_len) & ~mask
    if proposal <= 0:
        # bio_iov_iter_get_pages (iomap_dio_bio_iter_one L356-358): pinning failed, with
        # -EFAULT (a page that cannot be faulted in) or -EINTR (a fatal signal pending)
        err = s.fault_errno
        why = f"bio_iov_iter_get_pages: user buffer -> {errno_name(err)} (iomap_dio_bio_iter_one)"
        return evolve(s, phase=BIO_TAIL, b_ret=err, loop_why=why), None
    if s.b_atomic and proposal != s.b_len:
        # iomap_dio_bio_iter_one (L366-369): an atomic bio must cover the whole mapping
        why = "iomap_dio_bio_iter_one: atomic bio does not cover the mapping -> -EINVAL"
        return evolve(s, phase=BIO_TAIL, b_ret=E.EINVAL, loop_why=why), None
    bio = Bio(
        index=s.nbios,
        op=s.req.op,
        addr=_sector_addr(s, s.b_pos),
        len=proposal,
        fua=s.b_fua,
        atomic=s.b_atomic,
        rule="iomap_dio_bio_iter_one: data bio",
    )
    need = NeedCut(
        bio, max_len, s.b_align, exact=s.b_atomic, rule="iomap_dio_bio_iter_one: data bio"
    )
    return evolve(s, phase=WAIT_CUT, cut=need), need


def cut_answer(s: IomapState, n: int) -> IomapState:
    need = s.cut
    assert need is not None
    if n <= 0 or n > need.max_len or n % need.align or (need.exact and n != need.max_len):
        raise ModelUsageError(
            f"a data bio of {n} bytes is not allowed here: the engine can put up to "
            f"{need.max_len} bytes, a multiple of {need.align}, into the bio at "
            f"{need.proposal.addr}" + (" (exactly, atomic)" if need.exact else "")
        )
    # iomap_dio_bio_iter (L545-548): account the bytes the bio carries
    return _submit(
        s,
        s.b_pos,
        n,
        zero=False,
        rule=need.rule,
        cut=None,
        phase=BIO_NEXT,
        size=s.size + n,
        b_copied=s.b_copied + n,
        b_pos=s.b_pos + n,
    )


def cut_run(s: IomapState, limit: int | None) -> IomapState:
    """``DefaultCuts``: the proposal for this bio and, while they are full bios, for the
    next ones, submitted at once as one ``BioRun`` (the same as that many ``Cut``s)."""
    need = s.cut
    assert need is not None
    n = need.proposal.len
    full = BIO_MAX_VECS * s.geo.page_size
    count = 1
    if n == full and not s.error and not s.b_atomic and not s.flags & BUF_WRITETHROUGH:
        # bio_loop with no input between bios: no error appears to stop the loop (L532-533;
        # one that came while the cut was asked stops it after this bio) and the user
        # buffer is page-aligned after a full bio, so each next proposal is again a full
        # bio while pinnable bytes last (bio_iov_vecs_to_alloc / BIO_MAX_VECS)
        count = 1 + pinnable(s, s.b_pos + n, s.b_len - s.b_copied - n) // full
        if limit is not None:
            count = min(count, limit)
    if count == 1:
        return cut_answer(s, n)
    # iomap_dio_bio_iter (L545-548) x count: each bio accounts its bytes and holds a
    # reference on the dio (iomap_dio_submit_bio, L62-67)
    run = BioRun(
        first=s.nbios,
        count=count,
        op=s.req.op,
        addr=_sector_addr(s, s.b_pos),
        len=n,
        fua=s.b_fua,
        rule=need.rule,
    )
    total = count * n
    return evolve(
        s,
        ref=s.ref + count,
        submitted=s.submitted + total,
        nbios=s.nbios + count,
        outstanding=s.outstanding.add_span(s.nbios, s.nbios + count),
        pending=(*s.pending, run),
        cut=None,
        phase=BIO_NEXT,
        size=s.size + total,
        b_copied=s.b_copied + total,
        b_pos=s.b_pos + total,
    )


def bio_next(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter (L549): loop while the extent has bytes left
    if s.b_copied < s.b_len:
        return evolve(s, phase=BIO_LOOP), None
    return evolve(s, phase=BIO_TAIL, b_ret=0), None


def bio_tail(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter (L557-564): zero the tail of the last block for unwritten/new
    # extents, or when the write ends at/after i_size (stale data via mmap otherwise)
    s = evolve(s, phase=BIO_OUT)
    if s.b_zeroout or (s.flags & WRITE and s.b_pos >= s.inode_size):
        start, pad = arith.zero_tail(s.b_pos, s.geo.fs_block_size)
        if pad:
            # the zeroing's return value (0) replaces an earlier error of the loop
            s = evolve(s, b_ret=0)
            return _submit(s, start, pad, zero=True, rule="iomap_dio_zero: tail pad"), None
    return s, None


def bio_out(s: IomapState) -> tuple[IomapState, Action | None]:
    # iomap_dio_bio_iter out: (L565-570): advance by what was copied, else the error
    if s.b_copied:
        return iomap_iter_advance(s, s.b_copied), None
    return set_status(s, s.b_ret, s.loop_why), None
