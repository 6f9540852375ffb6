"""The io_uring ABI for ``uring.py``: the structures of ``include/uapi/linux/io_uring.h``
(exactly), the constants used, and the raw system calls.

glibc has no wrappers for ``io_uring_setup`` and ``io_uring_enter``, so they go through
``syscall(2)`` (425 and 426 on x86_64 and aarch64 alike); ``mmap``/``munmap`` are libc's,
called with raw addresses (no Python ``mmap`` object: it would duplicate the ring's
descriptor and hold buffer exports). Only 64-bit x86_64 and aarch64 are supported;
anything else raises :class:`UringError` with ``ENOSYS``. On aarch64 the completion
ring needs a load-acquire fence, which Python cannot express: ``_Syscalls.acquire`` is
then a two-instruction stub (``dmb ishld; ret``) in an executable page of its own; on
x86_64 (TSO) it does nothing (``uring.py`` says why).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

IORING_OP_READ = 22
IORING_OP_WRITE = 23
OPS = {"read": IORING_OP_READ, "write": IORING_OP_WRITE}

# (io_uring_setup, io_uring_enter): the same numbers on both (asm-generic/unistd.h)
_SYSCALLS: dict[str, tuple[int, int]] = {
    "x86_64": (425, 426),
    "aarch64": (425, 426),
    "arm64": (425, 426),
}
# what the aarch64 acquire fence runs: dmb ishld; ret (little-endian)
_FENCE_CODE = {"aarch64": bytes.fromhex("bf3903d5c0035fd6")}
_FENCE_CODE["arm64"] = _FENCE_CODE["aarch64"]

IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_SETUP_SUBMIT_ALL = 1 << 7
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_FEAT_EXT_ARG = 1 << 8
IORING_ENTER_GETEVENTS = 1 << 0
IORING_ENTER_EXT_ARG = 1 << 3
MAX_ENTRIES = 32768  # IORING_MAX_ENTRIES

_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
_MAP_POPULATE = 0x8000  # the same on x86_64 and aarch64
_MAP_FAILED = (1 << 64) - 1
U32 = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
_DISABLED = Path("/proc/sys/kernel/io_uring_disabled")

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class UringError(OSError):
    """An io_uring system call failed, or io_uring cannot be used here; ``errno`` holds
    the kernel's error number."""


def uring_error(err: int, what: str) -> UringError:
    return UringError(err, f"{what}: {os.strerror(err)}")


class SqringOffsets(ctypes.Structure):
    """``struct io_sqring_offsets`` (40 bytes)."""

    _fields_ = [("head", u32), ("tail", u32), ("ring_mask", u32), ("ring_entries", u32),
                ("flags", u32), ("dropped", u32), ("array", u32), ("resv1", u32),
                ("user_addr", u64)]  # fmt: skip


class CqringOffsets(ctypes.Structure):
    """``struct io_cqring_offsets`` (40 bytes)."""

    _fields_ = [("head", u32), ("tail", u32), ("ring_mask", u32), ("ring_entries", u32),
                ("overflow", u32), ("cqes", u32), ("flags", u32), ("resv1", u32),
                ("user_addr", u64)]  # fmt: skip


class Params(ctypes.Structure):
    """``struct io_uring_params`` (120 bytes)."""

    _fields_ = [("sq_entries", u32), ("cq_entries", u32), ("flags", u32),
                ("sq_thread_cpu", u32), ("sq_thread_idle", u32), ("features", u32),
                ("wq_fd", u32), ("resv", u32 * 3), ("sq_off", SqringOffsets),
                ("cq_off", CqringOffsets)]  # fmt: skip


class Sqe(ctypes.Structure):
    """``struct io_uring_sqe`` (64 bytes), the members a read or write uses named after
    the first of each union."""

    _fields_ = [("opcode", u8), ("flags", u8), ("ioprio", u16), ("fd", ctypes.c_int32),
                ("off", u64), ("addr", u64), ("len", u32), ("rw_flags", ctypes.c_int32),
                ("user_data", u64), ("buf_index", u16), ("personality", u16),
                ("splice_fd_in", ctypes.c_int32), ("addr3", u64), ("pad2", u64)]  # fmt: skip


class Cqe(ctypes.Structure):
    """``struct io_uring_cqe`` (16 bytes; no IORING_SETUP_CQE32)."""

    _fields_ = [("user_data", u64), ("res", ctypes.c_int32), ("flags", u32)]


class GeteventsArg(ctypes.Structure):
    """``struct io_uring_getevents_arg`` (IORING_ENTER_EXT_ARG)."""

    _fields_ = [("sigmask", u64), ("sigmask_sz", u32), ("min_wait_usec", u32), ("ts", u64)]


class KernelTimespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


assert ctypes.sizeof(SqringOffsets) == 40 and ctypes.sizeof(CqringOffsets) == 40
assert ctypes.sizeof(Params) == 120
assert ctypes.sizeof(Sqe) == 64 and ctypes.sizeof(Cqe) == 16
assert ctypes.sizeof(GeteventsArg) == 24


def disabled() -> str | None:
    """Why the sysctl forbids io_uring to every process (None: it does not)."""
    try:
        value = int(_DISABLED.read_text())
    except (OSError, ValueError):
        return None  # before Linux 6.6 there is no such switch
    if value == 2:
        return "io_uring is disabled on this machine (sysctl kernel.io_uring_disabled = 2)"
    return None


def why_eperm() -> str:
    try:
        value = int(_DISABLED.read_text())
    except (OSError, ValueError):
        value = 0
    if value == 1:
        return ("sysctl kernel.io_uring_disabled = 1 allows io_uring only to members of "
                "kernel.io_uring_group and to CAP_SYS_ADMIN")  # fmt: skip
    return "a seccomp filter (e.g. a container's default profile) may forbid io_uring"


class _Syscalls:
    """io_uring_setup, io_uring_enter, mmap, munmap; each raises UringError."""

    def __init__(self) -> None:
        machine = platform.machine()
        if sys.platform != "linux":
            raise uring_error(errno.ENOSYS, f"io_uring needs Linux, not {sys.platform}")
        if machine not in _SYSCALLS or ctypes.sizeof(ctypes.c_void_p) != 8:
            raise uring_error(errno.ENOSYS,
                         f"io_uring binding supports x86_64 and aarch64 (64-bit), not "
                         f"{machine!r}")  # fmt: skip
        self.nr_setup, self.nr_enter = _SYSCALLS[machine]
        libc = ctypes.CDLL(None, use_errno=True)  # its own: argtypes set here only
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._mmap = libc.mmap
        self._mmap.restype = ctypes.c_void_p
        self._mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                               ctypes.c_int, ctypes.c_long)  # fmt: skip
        self._munmap = libc.munmap
        self._munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self._mprotect = libc.mprotect
        self._mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        code = _FENCE_CODE.get(machine)
        # x86_64 (TSO): no fence; aarch64: a load-acquire barrier (module docstring)
        self.acquire: Callable[[], None] = self._stub(code) if code else lambda: None

    def call(self, what: str, nr: int, *args: object) -> int:
        ctypes.set_errno(0)
        ret = self._syscall(ctypes.c_long(nr), *args)
        if ret < 0:
            raise uring_error(ctypes.get_errno(), what)
        return int(ret)

    def setup(self, entries: int, params: Params) -> int:
        return self.call("io_uring_setup", self.nr_setup, ctypes.c_ulong(entries),
                         ctypes.byref(params))  # fmt: skip

    def enter(self, fd: int, to_submit: int, min_complete: int, flags: int,
              arg: GeteventsArg | None = None) -> int:  # fmt: skip
        argp = ctypes.c_void_p(ctypes.addressof(arg) if arg is not None else None)
        return self.call("io_uring_enter", self.nr_enter, ctypes.c_ulong(fd),
                         ctypes.c_ulong(to_submit), ctypes.c_ulong(min_complete),
                         ctypes.c_ulong(flags), argp,
                         ctypes.c_size_t(ctypes.sizeof(arg) if arg is not None else 0))  # fmt: skip

    def map(self, fd: int, length: int, offset: int) -> int:
        addr = self._mmap(None, length, _PROT_RW, mmap.MAP_SHARED | _MAP_POPULATE, fd, offset)
        if addr is None or addr == _MAP_FAILED:
            raise uring_error(ctypes.get_errno(), f"mmap of the io_uring ring at {offset:#x}")
        return int(addr)

    def unmap(self, addr: int, length: int) -> None:
        if self._munmap(addr, length):
            raise uring_error(ctypes.get_errno(), "munmap of an io_uring ring")

    def _stub(self, code: bytes) -> Callable[[], None]:
        """Machine code in a page of its own, made executable, as a C function."""
        page = mmap.PAGESIZE
        addr = self._mmap(None, page, _PROT_RW, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if addr is None or addr == _MAP_FAILED:
            raise uring_error(ctypes.get_errno(), "mmap of the memory-barrier stub")
        ctypes.memmove(addr, code, len(code))
        if self._mprotect(addr, page, mmap.PROT_READ | mmap.PROT_EXEC):
            raise uring_error(ctypes.get_errno(), "mprotect of the memory-barrier stub (no "
                         "executable memory: the io_uring binding needs a fence here)")
        # (the page stays mapped for the life of the process)
        return ctypes.CFUNCTYPE(None)(addr)


_sys: _Syscalls | None = None


def syscalls() -> _Syscalls:
    """The raw system calls for this architecture (created on first use)."""
    global _sys
    if _sys is None:
        _sys = _Syscalls()
    return _sys
