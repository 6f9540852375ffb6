"""iomap_iter() and the per-mapping dispatch of fs/iomap/direct-io.c (holes, inline data).

Line numbers (L…) refer to ../shared/seeds/iomap-direct-io.c.
"""

from __future__ import annotations

from . import errno as E
from .evolve import evolve
from .iomap_bio import iomap_dio_bio_iter
from .iomap_state import (
    AFTER_LOOP,
    DIO_ITER,
    WAIT_MAP,
    WRITE,
    IomapState,
    copyable,
    iomap_iter_advance,
    iomap_length,
    set_status,
)
from .types import Action, MapError, Mapping, ModelUsageError, NeedMap, errno_name


def iomap_end(s: IomapState, advanced: int) -> tuple[int, str]:
    """What the filesystem's ->iomap_end returns for the mapping just used."""
    m = s.mapping
    assert m is not None
    if s.glue != "btrfs":
        return 0, ""
    # iomap_length_trim(iter, iter_start_pos, olen): the length iomap_end is told
    length = min(s.len + advanced, m.end - s.iter_start)
    # btrfs_dio_iomap_end: a read of a hole only unlocks
    if not s.flags & WRITE and m.type == "HOLE":
        return 0, ""
    # btrfs_dio_iomap_end: fewer bytes submitted (over the whole request so far) than
    # this mapping's length -> -ENOTBLK, so the rest goes to buffered I/O
    if s.submitted < length:
        why = f"btrfs_dio_iomap_end: submitted {s.submitted} < length {length} -> -ENOTBLK"
        return E.ENOTBLK, why
    return 0, ""


def iomap_iter(s: IomapState) -> tuple[IomapState, Action | None]:
    if s.mapping is not None:
        advanced = s.pos - s.iter_start
        end_ret, end_why = iomap_end(s, advanced)
        # iomap_iter: an ->iomap_end error wins when the iteration did not advance
        if end_ret < 0 and not advanced:
            s = evolve(s, mapping=None, phase=AFTER_LOOP, loop_ret=end_ret, loop_why=end_why)
            return s, None
        # iomap_iter: stop on an error status, when done, or when nothing advanced
        if s.status < 0:
            ret, why = s.status, s.loop_why
        elif s.len == 0 or advanced == 0:
            ret, why = 0, ""
        else:
            ret, why = 1, ""
        if ret <= 0:
            s = evolve(s, mapping=None, phase=AFTER_LOOP, loop_ret=ret, loop_why=why)
            return s, None
    # iomap_iter: ->iomap_begin(inode, pos, len, flags) for the rest of the request
    rule = f"iomap_iter: ->iomap_begin(pos={s.pos}, len={s.len})"
    s = evolve(s, mapping=None, phase=WAIT_MAP)
    return s, NeedMap(s.pos, s.len, s.req.is_write, rule=rule)


def map_answer(s: IomapState, m: Mapping | MapError) -> IomapState:
    if isinstance(m, MapError):
        # iomap_iter: an ->iomap_begin error ends the loop with that error
        why = f"->iomap_begin returned {errno_name(m.errno)} (iomap_iter)"
        return evolve(s, phase=AFTER_LOOP, loop_ret=m.errno, loop_why=why)
    # iomap_iter_done: the mapping must cover iter->pos and have a length
    if m.length == 0 or m.offset > s.pos or m.end <= s.pos:
        raise ModelUsageError(
            f"mapping [{m.offset}, {m.end}) does not cover the position asked for ({s.pos})"
        )
    if m.type in ("MAPPED", "UNWRITTEN") and m.addr is None:
        raise ModelUsageError(f"a {m.type} mapping needs an addr")
    illegal = m.flags - {"NEW", "SHARED", "DIRTY", "ATOMIC_BIO"}
    if illegal:
        raise ModelUsageError(f"flags {sorted(illegal)} are not iomap mapping flags")
    return evolve(s, phase=DIO_ITER, mapping=m, iter_start=s.pos, status=0)


def iomap_dio_iter(s: IomapState) -> tuple[IomapState, Action | None]:
    m = s.mapping
    assert m is not None
    write = bool(s.flags & WRITE)
    if m.type == "HOLE":
        if write:
            # iomap_dio_iter (L621-623): a HOLE mapping for a write is a bug -> -EIO
            return set_status(s, E.EIO, "iomap_dio_iter: HOLE mapping for a write -> -EIO"), None
        return iomap_dio_hole_iter(s), None
    if m.type == "UNWRITTEN" and not write:
        # iomap_dio_iter (L625-627): unwritten extents read as zeros
        return iomap_dio_hole_iter(s), None
    if m.type in ("MAPPED", "UNWRITTEN"):
        return iomap_dio_bio_iter(s), None
    if m.type == "INLINE":
        return iomap_dio_inline_iter(s), None
    # iomap_dio_iter (L633-642): DELALLOC means a collision with buffered writes -> -EIO
    return set_status(s, E.EIO, "iomap_dio_iter: DELALLOC mapping -> -EIO"), None


def iomap_dio_hole_iter(s: IomapState) -> IomapState:
    # iomap_dio_hole_iter (L573-581): zero the user buffer, no I/O; nothing -> -EFAULT
    length = copyable(s, s.pos, iomap_length(s))
    s = evolve(s, size=s.size + length)
    if not length:
        return set_status(s, E.EFAULT, "iomap_dio_hole_iter: user buffer fault -> -EFAULT")
    return iomap_iter_advance(s, length)


def iomap_dio_inline_iter(s: IomapState) -> IomapState:
    m = s.mapping
    assert m is not None
    length = iomap_length(s)
    # iomap_inline_data_valid (L595-596): inline data must fit in its page
    in_page = (m.addr or 0) % s.geo.page_size
    if m.length > s.geo.page_size - in_page:
        return set_status(s, E.EIO, "iomap_dio_inline_iter: inline data crosses a page -> -EIO")
    copied = copyable(s, s.pos, length)
    inode_size = s.inode_size
    # iomap_dio_inline_iter (L598-608): a write extends i_size to the end of the copy
    if s.flags & WRITE and copied and s.pos + copied > inode_size:
        inode_size = s.pos + copied
    s = evolve(s, size=s.size + copied, inode_size=inode_size)
    if not copied:
        return set_status(s, E.EFAULT, "iomap_dio_inline_iter: user buffer fault -> -EFAULT")
    return iomap_iter_advance(s, copied)
