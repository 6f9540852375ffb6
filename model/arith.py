"""The model's arithmetic rules, written once for Python ints and for z3 bit-vectors.

Each function is one rule of the seeds (cited in a one-line comment) and uses only the
operators ``+ - & | ~ << >> == !=`` and the helpers below (comparisons, if-then-else,
min, max, logic). The engines call them on Python ints, where they compute the
mathematical value (Python ints do not wrap). ``conformance/proofs.py`` calls the very
same functions on z3 bit-vectors, where a w-bit vector computes what a w-bit C
expression computes (two's complement, wrapping): 64-bit vectors give the kernel's
``loff_t``/``ssize_t``/``size_t`` results, wider vectors the mathematical ones. So the
proofs are about the code the model runs, not about a copy of it.

A z3 bit-vector carries no signedness, so the comparisons come in two families:
``lt le gt ge`` for the kernel's signed types (loff_t, ssize_t, int) and
``ult ule ugt uge`` for the unsigned ones (size_t, u64, sector_t, unsigned int); on
Python ints both are the plain operators. ``>>`` on a z3 vector is the arithmetic
(signed) shift, right for loff_t; ``lshr`` is the unsigned one. z3 is imported only when
a symbolic value is met, so the model itself does not load it.

Values are ``int`` (and ``bool``) or z3 expressions; ``Num`` and ``Cond`` name the two
kinds in the signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errno as E

if TYPE_CHECKING:  # pragma: no cover - typing only
    import z3

    Num = int | z3.BitVecRef
    Cond = bool | z3.BoolRef

__all__ = [
    "add_done_before",
    "blockdev_blkbits",
    "blocks_to_bytes",
    "first_error",
    "ge",
    "gt",
    "is_symbolic",
    "ite",
    "ki_pos_after",
    "land",
    "le",
    "legacy_io_error",
    "legacy_ki_pos",
    "lnot",
    "lor",
    "lshr",
    "lt",
    "misaligned",
    "past_size",
    "pos_to_block",
    "round_up",
    "short_read_cap",
    "smax",
    "smin",
    "uge",
    "ugt",
    "ule",
    "ult",
    "umax",
    "umin",
    "zero_block_chunk",
    "zero_head",
    "zero_tail",
]

_Z3: Any = None


def _z3() -> Any:
    """The z3 module, imported on first symbolic use."""
    global _Z3
    if _Z3 is None:
        import z3

        _Z3 = z3
    return _Z3


def is_symbolic(*values: object) -> bool:
    """True if any value is not a Python int/bool (i.e. a z3 expression)."""
    return not all(isinstance(v, int) for v in values)


# --------------------------------------------------------------------------- helpers


def ite(c: Cond, a: Num, b: Num) -> Num:
    """If-then-else: ``a if c else b`` on Python values, ``z3.If`` on a symbolic ``c``."""
    if isinstance(c, int):  # bool, or a C-style int condition
        return a if c else b
    if not is_symbolic(a, b):
        raise TypeError("ite: a symbolic condition needs a bit-vector branch to take its width")
    return _z3().If(c, a, b)


def lt(a: Num, b: Num) -> Cond:
    """Signed ``a < b`` (loff_t, ssize_t, int): z3's ``<`` on bit-vectors is signed."""
    return a < b


def le(a: Num, b: Num) -> Cond:
    """Signed ``a <= b``."""
    return a <= b


def gt(a: Num, b: Num) -> Cond:
    """Signed ``a > b``."""
    return a > b


def ge(a: Num, b: Num) -> Cond:
    """Signed ``a >= b``."""
    return a >= b


def ult(a: Num, b: Num) -> Cond:
    """Unsigned ``a < b`` (size_t, u64, sector_t, unsigned int)."""
    if isinstance(a, int) and isinstance(b, int):
        return a < b
    return _z3().ULT(a, b)


def ule(a: Num, b: Num) -> Cond:
    """Unsigned ``a <= b``."""
    if isinstance(a, int) and isinstance(b, int):
        return a <= b
    return _z3().ULE(a, b)


def ugt(a: Num, b: Num) -> Cond:
    """Unsigned ``a > b``."""
    if isinstance(a, int) and isinstance(b, int):
        return a > b
    return _z3().UGT(a, b)


def uge(a: Num, b: Num) -> Cond:
    """Unsigned ``a >= b``."""
    if isinstance(a, int) and isinstance(b, int):
        return a >= b
    return _z3().UGE(a, b)


def smin(a: Num, b: Num) -> Num:
    """Signed min (the kernel's ``min()`` on signed operands)."""
    return ite(lt(b, a), b, a)


def smax(a: Num, b: Num) -> Num:
    """Signed max."""
    return ite(gt(b, a), b, a)


def umin(a: Num, b: Num) -> Num:
    """Unsigned min (the kernel's ``min()`` on unsigned operands)."""
    return ite(ult(b, a), b, a)


def umax(a: Num, b: Num) -> Num:
    """Unsigned max."""
    return ite(ugt(b, a), b, a)


def land(a: Cond, b: Cond) -> Cond:
    """Logical and (``&&``)."""
    if isinstance(a, bool) and isinstance(b, bool):
        return a and b
    return _z3().And(a, b)


def lor(a: Cond, b: Cond) -> Cond:
    """Logical or (``||``)."""
    if isinstance(a, bool) and isinstance(b, bool):
        return a or b
    return _z3().Or(a, b)


def lnot(a: Cond) -> Cond:
    """Logical not (``!``)."""
    if isinstance(a, bool):
        return not a
    return _z3().Not(a)


def lshr(a: Num, n: Num) -> Num:
    """Unsigned (logical) right shift; plain ``>>`` on Python ints."""
    if isinstance(a, int) and isinstance(n, int):
        return a >> n
    return _z3().LShR(a, n)


# --------------------------------------------------------------------------- iomap rules


def past_size(pos: Num, length: Num, size: Num) -> Cond:
    """``pos + length > size`` on loff_t: the request reaches past ``size``."""
    # __iomap_dio_rw (L726-731, L757): iomi.pos + iomi.len > dio->i_size
    return gt(pos + length, size)


def misaligned(pos: Num, length: Num, align: Num) -> Num:
    """Nonzero when ``pos`` or ``length`` is not a multiple of ``align`` (a power of two)."""
    # iomap_dio_bio_iter (L413-414): if ((pos | length) & (alignment - 1)) return -EINVAL
    return (pos | length) & (align - 1)


def zero_head(pos: Num, block: Num) -> tuple[Num, Num]:
    """(start, length) of the zeroing bio before a write starting at ``pos``."""
    # iomap_dio_bio_iter (L518-525): pad = pos & (fs_block_size - 1); zero(pos - pad, pad)
    pad = pos & (block - 1)
    return pos - pad, pad


def zero_tail(end: Num, block: Num) -> tuple[Num, Num]:
    """(start, length) of the zeroing bio after a write ending at ``end``; length 0: none."""
    # iomap_dio_bio_iter (L557-564): pad = pos & (bs - 1); if (pad) zero(pos, bs - pad)
    pad = end & (block - 1)
    return end, ite(pad != 0, block - pad, 0)


def short_read_cap(pos: Num, done: Num, i_size: Num) -> Num:
    """Bytes a read reports: ``done``, capped at ``i_size - pos`` when it ran past i_size."""
    # iomap_dio_complete (L119-122), dio_complete (L253-255): offset + ret > i_size
    return ite(gt(pos + done, i_size), i_size - pos, done)


def ki_pos_after(pos: Num, ret: Num) -> Num:
    """``ki_pos`` after completion: advanced by ``ret`` when positive."""
    # iomap_dio_complete (L141-144): if (ret > 0) iocb->ki_pos += ret
    return ite(gt(ret, 0), pos + ret, pos)


def add_done_before(ret: Num, done_before: Num) -> Num:
    """The result reported: ``ret + done_before`` when ``ret`` is positive."""
    # iomap_dio_complete (L152-153): if (ret > 0) ret += dio->done_before
    return ite(gt(ret, 0), ret + done_before, ret)


def first_error(current: Num, new: Num) -> Num:
    """``dio->error`` after ``iomap_dio_set_error(dio, new)``: the first error wins."""
    # iomap_dio_set_error (L174-177): cmpxchg(&dio->error, 0, ret)
    return ite(current == 0, new, current)


# --------------------------------------------------------------------------- legacy rules


def blockdev_blkbits(pos: Num, count: Num, i_blkbits: Num, lbs_bits: Num) -> Num:
    """The dio block bits: the fs block's if aligned to it, else the logical block's,
    else -1 (the request fails with -EINVAL)."""
    # __blockdev_direct_IO (L1144-1150): align & blocksize_mask, first fs then bdev block
    align = pos | count
    fs_aligned = (align & ((1 << i_blkbits) - 1)) == 0
    lbs_aligned = (align & ((1 << lbs_bits) - 1)) == 0
    return ite(fs_aligned, i_blkbits, ite(lbs_aligned, lbs_bits, -1))


def pos_to_block(pos: Num, blkbits: Num) -> Num:
    """The dio block holding byte ``pos`` (loff_t, arithmetic shift)."""
    # __blockdev_direct_IO (L1209, L1224): offset >> blkbits, end >> blkbits
    return pos >> blkbits


def blocks_to_bytes(blocks: Num, blkbits: Num) -> Num:
    """Bytes in ``blocks`` dio blocks, or the file offset of block ``blocks``."""
    # do_direct_IO (L1015), dio_zero_block (L866), submit_page_section (L812): x << blkbits
    return blocks << blkbits


def round_up(x: Num, align: Num) -> Num:
    """``ALIGN(x, align)`` for a power-of-two ``align`` (include/linux/align.h)."""
    # do_direct_IO (L980-987): i_size_aligned = ALIGN(i_size_read(inode), 1 << blkbits)
    return (x + align - 1) & ~(align - 1)


def zero_block_chunk(block_in_file: Num, blkfactor: Num, end: Cond) -> Num:
    """Dio blocks dio_zero_block zeroes in the fs block of ``block_in_file``: those
    before it (``end`` false) or from it to the block's end (``end`` true); 0: none."""
    # dio_zero_block (L853-866): this_chunk_blocks, dio_blocks_per_fs_block - it at the end
    per_fs_block = 1 << blkfactor
    part = block_in_file & (per_fs_block - 1)
    return ite(part == 0, 0, ite(end, per_fs_block - part, part))


def legacy_io_error(current: Num, status: Num, nowait_bio: Cond) -> Num:
    """``dio->io_error`` after dio_bio_complete of a bio with ``status``: the last failing
    bio processed wins; -EAGAIN only for BLK_STS_AGAIN on a REQ_NOWAIT bio, else -EIO."""
    # dio_bio_complete (L494-499): if (err) dio->io_error = AGAIN && NOWAIT ? -EAGAIN : -EIO
    # (the -EAGAIN branch returns ``status``, which is -EAGAIN there: z3.If needs a vector)
    mapped = ite(land(status == E.EAGAIN, nowait_bio), status, E.EIO)
    return ite(status != 0, mapped, current)


def legacy_ki_pos(pos: Num, ret: Num, transferred: Num, is_async: Cond) -> Num:
    """``ki_pos`` after dio_complete: aio adds ``transferred`` (also on error); the sync
    path returns ``ret`` and the caller adds it when positive."""
    # dio_complete (L305): ki_pos += transferred; generic_file_direct_*: ki_pos += ret > 0
    return ite(is_async, pos + transferred, pos + smax(ret, 0))
