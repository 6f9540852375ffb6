"""Bio building of the legacy engine: submit_page_section and what it calls.

Models submit_page_section, dio_send_cur_page, dio_new_bio/dio_bio_alloc,
dio_bio_add_page, dio_bio_submit and dio_bio_reap of fs/direct-io.c ("L…" are line
numbers of ../shared/seeds/legacy-direct-io.c). A nested call is a phase with a saved
return phase (``sps_caller``, ``send_caller``) and its return value in ``call_ret``, so
every bio submission is its own step and a completion can be fed between any two.
"""

from __future__ import annotations

from collections.abc import Callable

from . import arith
from .legacy_complete import dio_bio_complete
from .legacy_state import (
    BIO_MAX_VECS,
    NO_PAGE,
    SEND_ADD_PAGE,
    SEND_CUR_PAGE,
    SEND_NEW_BIO,
    SEND_READD,
    SPS_BOUNDARY_SENT,
    SPS_OUT,
    SPS_SENT,
    SUBMIT_PAGE_SECTION,
    U32,
    ZERO_PAGE,
    LegacyState,
    Step,
    evolve,
    kernel_bug,
)
from .types import Bio, Emit

# --------------------------------------------------------------------------- calls


def call_sps(
    s: LegacyState, page: int, offset: int, length: int, block: int, caller: str
) -> LegacyState:
    return evolve(
        s,
        phase=SUBMIT_PAGE_SECTION,
        sps_page=page,
        sps_offset=offset,
        sps_len=length,
        sps_block=block,
        sps_caller=caller,
    )


def sps_return(s: LegacyState, ret: int) -> LegacyState:
    return evolve(s, phase=s.sps_caller, call_ret=ret)


def call_send(s: LegacyState, caller: str) -> LegacyState:
    return evolve(s, phase=SEND_CUR_PAGE, send_caller=caller)


def send_return(s: LegacyState, ret: int) -> LegacyState:
    return evolve(s, phase=s.send_caller, call_ret=ret)


# --------------------------------------------------------------------------- submit_page_section


def _install_cur_page(s: LegacyState) -> LegacyState:
    # submit_page_section (L811-816): the section becomes the deferred cur_page
    return evolve(
        s,
        phase=SPS_OUT,
        cur_page=s.sps_page,
        cur_page_offset=s.sps_offset,
        cur_page_len=s.sps_len,
        cur_page_block=s.sps_block,
        cur_page_fs_offset=arith.blocks_to_bytes(s.block_in_file, s.blkbits),
    )


def submit_page_section(s: LegacyState) -> Step:
    s = evolve(s, sps_boundary=s.boundary)  # L780: dio_send_cur_page may clear it
    # submit_page_section (L792-798): grow cur_page if same page, offset and block follow
    if (
        s.cur_page == s.sps_page
        and s.cur_page_offset + s.cur_page_len == s.sps_offset
        and s.cur_page_block + (s.cur_page_len >> s.blkbits) == s.sps_block
    ):
        return evolve(s, phase=SPS_OUT, cur_page_len=s.cur_page_len + s.sps_len), None
    # submit_page_section (L803-809): send the deferred page first
    if s.cur_page != NO_PAGE:
        return call_send(s, SPS_SENT), None
    return _install_cur_page(s), None


def sps_sent(s: LegacyState) -> Step:
    # submit_page_section (L805-808): drop cur_page; an error is returned
    s = evolve(s, cur_page=NO_PAGE)
    if s.call_ret:
        return sps_return(s, s.call_ret), None
    return _install_cur_page(s), None


def sps_out(s: LegacyState) -> Step:
    # submit_page_section (L822-823): at a boundary send the page and the bio now
    if s.sps_boundary:
        return call_send(s, SPS_BOUNDARY_SENT), None
    return sps_return(s, 0), None


def sps_boundary_sent(s: LegacyState) -> Step:
    ret = s.call_ret
    if s.bio_open:
        # submit_page_section (L824-827): boundary -> dio_bio_submit, drop cur_page
        s, bio = dio_bio_submit(s, "submit_page_section (L822-825): buffer_boundary")
        return sps_return(evolve(s, cur_page=NO_PAGE), ret), Emit(bio)
    return sps_return(evolve(s, cur_page=NO_PAGE), ret), None


# --------------------------------------------------------------------------- bios


def dio_send_cur_page(s: LegacyState) -> Step:
    # dio_send_cur_page (L714-736): submit the bio if cur_page is not disk- or
    # file-contiguous with it
    if s.bio_open and (
        s.final_block_in_bio != s.cur_page_block
        or s.cur_page_fs_offset != s.logical_offset_in_bio + s.bio_size
    ):
        s, bio = dio_bio_submit(s, "dio_send_cur_page (L733-735): not contiguous")
        return evolve(s, phase=SEND_NEW_BIO), Emit(bio)
    return evolve(s, phase=SEND_NEW_BIO), None


def send_new_bio(s: LegacyState) -> Step:
    # dio_send_cur_page (L738-742): no bio: dio_new_bio at cur_page_block
    if not s.bio_open:
        s, ret = dio_new_bio(s, s.cur_page_block)
        if ret:
            return send_return(s, ret), None
    return evolve(s, phase=SEND_ADD_PAGE), None


def send_add_page(s: LegacyState) -> Step:
    # dio_send_cur_page (L744-745): bio full -> submit it and start another
    s, ok = dio_bio_add_page(s)
    if ok:
        return send_return(s, 0), None
    s, bio = dio_bio_submit(s, "dio_send_cur_page (L744-745): bio_add_page failed (bio full)")
    return evolve(s, phase=SEND_READD), Emit(bio)


def send_readd(s: LegacyState) -> Step:
    # dio_send_cur_page (L746-751): new bio, and the page must fit in it
    s, ret = dio_new_bio(s, s.cur_page_block)
    if ret == 0:
        s, ok = dio_bio_add_page(s)
        if not ok:
            raise kernel_bug("dio_send_cur_page", "dio_bio_add_page failed on a new bio (L749)")
    return send_return(s, ret), None


def dio_bio_reap(s: LegacyState) -> tuple[LegacyState, int]:
    # dio_bio_reap (L538-553): every 65th new bio, process the completed bios
    if s.reap_counter < 64:
        return evolve(s, reap_counter=s.reap_counter + 1), 0
    ret = 0
    while s.bio_list is not None:
        _index, status, rest = s.bio_list
        s = dio_bio_complete(evolve(s, bio_list=rest), status)
        if ret == 0:
            ret = status  # blk_status_to_errno(bi_status); BioEnd.status is that errno
    return evolve(s, reap_counter=0), ret


def dio_new_bio(s: LegacyState, start_block: int) -> tuple[LegacyState, int]:
    # dio_new_bio (L658-660): reap first; an error of a reaped bio is returned
    s, ret = dio_bio_reap(s)
    if ret:
        return s, ret
    # dio_new_bio (L662-663): nr_vecs = bio_max_segs(pages_in_io) (unsigned argument)
    nr_pages = min(s.pages_in_io & U32, BIO_MAX_VECS)
    if nr_pages <= 0:
        raise kernel_bug("dio_new_bio", f"nr_pages <= 0 (pages_in_io {s.pages_in_io}, L663)")
    # dio_bio_alloc (L399-406): bio at start_block, logical offset from cur_page
    s = evolve(
        s,
        bio_open=True,
        bio_block=start_block,
        bio_size=0,
        bio_vcnt=0,
        bio_max_vecs=nr_pages,
        bio_zero=True,
        logical_offset_in_bio=s.cur_page_fs_offset,
        boundary=False,
    )
    return s, 0


def dio_bio_add_page(s: LegacyState) -> tuple[LegacyState, bool]:
    # dio_bio_add_page (L681-695): bio_add_page fails when all nr_vecs bvecs are used
    if s.bio_vcnt >= s.bio_max_vecs:
        return s, False
    pages_in_io = s.pages_in_io
    if s.cur_page_len + s.cur_page_offset == s.cfg.page_size:
        pages_in_io -= 1  # L687-688: done with this page
    s = evolve(
        s,
        bio_vcnt=s.bio_vcnt + 1,
        bio_size=s.bio_size + s.cur_page_len,
        bio_zero=s.bio_zero and s.cur_page == ZERO_PAGE,
        pages_in_io=pages_in_io,
        final_block_in_bio=s.cur_page_block + (s.cur_page_len >> s.blkbits),
    )
    return s, True


def dio_bio_submit(s: LegacyState, why: str) -> tuple[LegacyState, Bio]:
    # dio_bio_submit (L416-438): the bio takes a dio reference and is submitted
    c = s.cfg
    bio = Bio(
        index=s.n_bios,
        op="write" if c.write else "read",
        addr=s.bio_block << s.blkbits,
        len=s.bio_size,
        fua=False,
        zero=s.bio_zero,
        rule=f"dio_bio_submit via {why}",
    )
    s = evolve(
        s,
        refcount=s.refcount + 1,
        n_bios=s.n_bios + 1,
        inflight=s.inflight.add(s.n_bios),
        bio_open=False,
        boundary=False,
        logical_offset_in_bio=0,
    )
    return s, bio


PHASES: dict[str, Callable[[LegacyState], Step]] = {
    SUBMIT_PAGE_SECTION: submit_page_section,
    SPS_SENT: sps_sent,
    SPS_OUT: sps_out,
    SPS_BOUNDARY_SENT: sps_boundary_sent,
    SEND_CUR_PAGE: dio_send_cur_page,
    SEND_NEW_BIO: send_new_bio,
    SEND_ADD_PAGE: send_add_page,
    SEND_READD: send_readd,
}
