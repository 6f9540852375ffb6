#!/usr/bin/env python3
"""Reproducer: a short O_DIRECT write whose own head pad zeroes data it wrote (Linux 6.18).

WARNING: DEVICE is a scratch device. It is OVERWRITTEN (mkfs) and all data on it is lost.

Mechanism (fs/iomap/direct-io.c):
iomap_dio_bio_iter, writing into an IOMAP_UNWRITTEN (or IOMAP_F_NEW) mapping, sets
need_zeroout and first zeroes the head pad [pos - pad, pos), ``pad = pos & (fs_block_size
- 1)``, with iomap_dio_zero; then it loops on iomap_dio_bio_iter_one. When
bio_iov_iter_get_pages fails with -EFAULT (the user buffer is PROT_NONE) after an earlier
bio of this mapping went out, the loop breaks, the tail zeroing replaces ``ret`` with
iomap_dio_zero's 0, and ``if (copied) return iomap_iter_advance(iter, copied);`` drops the
error anyway. iomap_iter calls iomap_dio_bio_iter again at the new, unaligned pos, still
in the unwritten extent: its head pad zeroes [pos & ~(bs - 1), pos) -- bytes the previous
bio of this very request just wrote. The fault recurs with nothing copied, the tail
zeroing returns 0 again, and the request ends, reporting the first bio's bytes written.

Reproduction: fs with 4 KiB blocks; fallocate 64 KiB (unwritten); O_DIRECT pwritev of
8192 bytes at offset 512 from a page-aligned mmap whose first page holds a non-zero
pattern and whose second page is PROT_NONE. The first bio writes file [512, 4608); the
second iteration's head pad zeroes [4096, 4608).

Expected output on an affected kernel (xfs): the write returns 4096, [512, 4096) reads
back as written, [4096, 4608) reads back as zeros -> "BUG ...", exit 1. On ext4 the same
zero bio is issued, then ext4's buffered fallback for the rest faults and the syscall
fails with EFAULT, although [512, 4096) holds the new data and [4096, 4608) (whose data
was readable in the buffer's first page) is zeros -> "BUG ...", exit 1. A fixed kernel
reads back every byte it reports written -> "OK ...", exit 0 (also when an EFAULT leaves
[512, 4096) written and [4096, 4608) untouched: ext4's fallback, not this bug).
Exit 2: usage or environment error (not root, no block device, mkfs/losetup missing).

Usage (as root): head_pad_after_dropped_fault.py DEVICE [--fs xfs|ext4]
                 head_pad_after_dropped_fault.py --loop-image [--fs xfs|ext4]
Standard library and ctypes only.
"""

import argparse
import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile

BS = PAGE = 4096
POS, LENGTH, FILE_SIZE = 512, 8192, 65536
MKFS = {
    "xfs": ["mkfs.xfs", "-f", "-q", "-b", "size=4096"],
    "ext4": ["mkfs.ext4", "-F", "-q", "-b", "4096"],
}


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def signals_deferred():
    """Holds SIGINT/SIGTERM while a resource is made and recorded, or torn down."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)


def unmount(mnt):
    """umount; if busy (a signal orphaned an fd), detach lazily: freed when we exit."""
    if os.path.ismount(mnt) and subprocess.run(["umount", mnt], capture_output=True).returncode:
        subprocess.run(["umount", "-l", mnt])


def describe(got, want):
    if not any(got):
        return "all zeros" + (" (expected: the first head pad)" if not any(want) else "")
    if got == want:
        return "as written"
    first = next(i for i in range(len(got)) if got[i] != want[i])
    return f"differs from the data written, first at +{first} ({got[first]:#04x})"


def unwritten(fd, off):
    """FS_IOC_FIEMAP: is the block at ``off`` in an unwritten extent (None: a hole)?"""
    req = struct.pack("=QQIIII", off, BS, 1, 0, 1, 0) + bytes(56)  # FIEMAP_FLAG_SYNC
    res = fcntl.ioctl(fd, 0xC020660B, req)
    if not struct.unpack_from("=I", res, 20)[0]:
        return None
    return bool(struct.unpack_from("=I", res, 32 + 40)[0] & 0x800)  # FIEMAP_EXTENT_UNWRITTEN


def reproduce(mnt):
    """Returns (bug, summary)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if PAGE != mmap.PAGESIZE:
        die(f"page size is {mmap.PAGESIZE}, this reproducer assumes 4096")
    path = os.path.join(mnt, "f")
    data = bytes(1 + (i % 251) for i in range(PAGE))  # buffer page 0: no zero bytes
    fd = rfd = -1
    wbuf = rbuf = None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
        os.posix_fallocate(fd, 0, FILE_SIZE)  # unwritten extents
        os.fsync(fd)
        wbuf = mmap.mmap(-1, LENGTH)
        wbuf[:PAGE] = data
        ptr = ctypes.c_char.from_buffer(wbuf)
        addr = ctypes.addressof(ptr)
        del ptr  # release the export, or wbuf.close() fails
        if libc.mprotect(addr + PAGE, PAGE, 0) != 0:  # PROT_NONE on buffer page 1
            die(f"mprotect: {os.strerror(ctypes.get_errno())}")
        try:
            n = os.pwritev(fd, [wbuf], POS)
            ret = str(n)
        except OSError as e:
            n, ret = -e.errno, f"-1 {errno.errorcode.get(e.errno, e.errno)}"
        os.close(fd)
        fd = -1
        rfd = os.open(path, os.O_RDONLY | os.O_DIRECT)  # the disk, not the page cache
        rbuf = mmap.mmap(-1, 2 * BS)
        got = rbuf[: os.preadv(rfd, [rbuf], 0)]
        state = {None: "a hole", True: "UNWRITTEN", False: "written"}[unwritten(rfd, BS)]
    finally:
        for f in (fd, rfd):
            if f >= 0:
                os.close(f)
        for b in (wbuf, rbuf):
            if b is not None:
                b.close()
    # File offset x in [512, 4608) was written from data[x - 512].
    want = {(0, POS): bytes(POS), (POS, BS): data[: BS - POS], (BS, BS + POS): data[BS - POS :]}
    print(f"pwritev(fd, 8192 bytes, offset {POS}), buffer page 1 PROT_NONE: returned {ret}")
    for (a, b), w in want.items():
        print(f"  file [{a}, {b}): {describe(got[a:b], w)}")
    print(f"  file [{BS + POS}, {2 * BS}): {'all zeros' if not any(got[BS + POS :]) else 'data'}")
    why = " (so its zeros are on disk, not an unwritten read)" if state == "written" else ""
    print(f"  FIEMAP: file block [{BS}, {2 * BS}) is {state}{why}")
    if n > 0:
        bad = [x for x in range(POS, POS + n) if got[x] != data[x - POS]]
        if bad:
            z = "zeros" if not any(got[x] for x in bad) else "not as written"
            span = f"[{bad[0]}, {bad[-1] + 1})"
            return True, f"write returned {n}, yet {len(bad)} bytes of it in {span} read as {z}"
        return False, f"write returned {n} and every byte of [{POS}, {POS + n}) reads back"
    if n == -errno.EFAULT:
        landed = got[POS:BS] == want[(POS, BS)]
        if landed and not any(got[BS : BS + POS]) and state == "written":
            span = f"[{BS}, {BS + POS}) (its data in readable buffer page 0) reads as zeros"
            return True, f"write failed with EFAULT, yet [{POS}, {BS}) holds its data and {span}"
        if not any(got[POS:BS]):
            return False, "write failed with EFAULT and wrote nothing"
        return False, "write failed with EFAULT after partial data landed (no head-pad zeros)"
    return False, f"write returned {ret}: the reproduction did not hit the fault path"


def main():
    ap = argparse.ArgumentParser(
        description="Reproduce iomap head-pad-after-dropped-fault (Linux 6.18). "
        "WARNING: DEVICE is a scratch device and is OVERWRITTEN (mkfs)."
    )
    ap.add_argument("device", nargs="?", help="scratch block device (DESTROYED)")
    loop_help = "use a temporary 512 MiB sparse file on a loop device instead of DEVICE"
    ap.add_argument("--loop-image", action="store_true", help=loop_help)
    ap.add_argument("--fs", choices=sorted(MKFS), default="xfs", help="default: xfs")
    args = ap.parse_args()
    if bool(args.device) == args.loop_image:
        ap.error("give exactly one of DEVICE or --loop-image")
    if os.geteuid() != 0:
        die("must run as root")
    for tool in [MKFS[args.fs][0], "mount", "umount"] + ["losetup"] * args.loop_image:
        if shutil.which(tool) is None:
            die(f"{tool} not found")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    image = mnt = None
    try:
        if args.loop_image:
            with signals_deferred():
                fd, image = tempfile.mkstemp(prefix="headpad-", suffix=".img")
            os.ftruncate(fd, 512 << 20)
            os.close(fd)
            dev = run("losetup", "--find", "--show", image)
        else:
            dev = args.device
        try:
            if not stat.S_ISBLK(os.stat(dev).st_mode):
                die(f"{dev} is not a block device")
        except FileNotFoundError:
            die(f"{dev} does not exist")
        run(*MKFS[args.fs], dev)
        with signals_deferred():
            mnt = tempfile.mkdtemp(prefix="headpad-")
        run("mount", "-t", args.fs, dev, mnt)
        print(f"{args.fs} on {dev} ({os.uname().release}), 4 KiB blocks, mounted at {mnt}")
        bug, summary = reproduce(mnt)
    except subprocess.CalledProcessError as e:
        die(f"{' '.join(e.cmd)} failed: {e.stderr.strip()}")
    finally:  # on any exit, KeyboardInterrupt and SIGTERM included; asks the system what is
        with signals_deferred():  # set up, as a signal can land between a command and our notes
            if mnt:
                unmount(mnt)
            if mnt and os.path.ismount(mnt):
                print(f"warning: umount {mnt} failed; left mounted", file=sys.stderr)
            elif mnt:
                os.rmdir(mnt)
            if image:
                cmd = ["losetup", "--noheadings", "-O", "NAME", "-j", image]
                for loop in subprocess.run(cmd, capture_output=True, text=True).stdout.split():
                    subprocess.run(["losetup", "-d", loop])
                os.unlink(image)
    print(f"{'BUG' if bug else 'OK'} ({args.fs}): {summary}")
    return 1 if bug else 0


if __name__ == "__main__":
    sys.exit(main())
