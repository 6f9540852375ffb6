#!/usr/bin/env python3
"""Reproducer: an O_DIRECT read that crosses EOF fails with EIO on xfs (Linux 6.18).

WARNING: DEVICE is a scratch device. It is OVERWRITTEN (mkfs.xfs -f), all data on it lost.

Sequence (4 KiB blocks), all on one open file, single-threaded, no mmap:
  ftruncate(f, 64 KiB)                        i_size >= 64 KiB, so EOF preallocation is on
  pwrite(f, 4 KiB, 64 KiB)           buffered  delalloc [64K, 128K): 1 block + speculative prealloc
  fallocate(f, KEEP_SIZE, 68 KiB, 4 KiB)       converts only [68K, 72K): delalloc is split
  preadv(O_DIRECT fd, 16 KiB, 64 KiB)          i_size 68 KiB: expect 4096 bytes, get EIO

Mechanism:
xfs_buffered_write_iomap_begin reserves, past EOF, a delalloc extent sized by
xfs_iomap_prealloc_size (trimmed at the last close, xfs_release -> xfs_free_eofblocks,
or later by the background blockgc scan).
xfs_alloc_file_space -> xfs_bmapi_write -> xfs_bmap_add_extent_delay_real allocates only
the fallocate range, splitting that extent into delalloc [64K, 68K), unwritten [68K, 72K)
and delalloc [72K, 128K) that no page covers. The read: __iomap_dio_rw flushes the range
(kiocb_write_and_wait); writeback (xfs_map_blocks -> xfs_bmapi_convert_delalloc) converts
only the extent under the dirty page, [64K, 68K). __iomap_dio_rw does not stop the
iteration at i_size (it trims the result in iomap_dio_complete), so xfs_read_iomap_begin
-> xfs_bmapi_read maps [72K, 80K) past EOF as delalloc, xfs_bmbt_to_iomap makes it
IOMAP_DELALLOC, and iomap_dio_iter fails the whole read with -EIO, printing only the
ratelimited "Direct I/O collision with buffered writes!" (no xfs prefix).
Without the fallocate, writeback converts the whole delalloc extent and the read
returns 4096: that file is the control here. The reflink flag (set by any FICLONERANGE)
reaches the same state from "O_DIRECT" writes: xfs_file_dio_write_unaligned
bounces unaligned ones on a COW inode to the buffered path (-ENOTBLK).

Exit: 1 BUG (the O_DIRECT read fails with EIO), 0 OK, 2 usage or environment error.
Usage (as root): xfs_dio_read_eio.py DEVICE | --loop-image.  Standard library + ctypes only.
"""

import argparse
import contextlib
import ctypes
import errno
import mmap
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

K = 1024
BS = 4 * K
SIZE0, WPOS, FPOS, RLEN = 64 * K, 64 * K, 68 * K, 16 * K  # i_size ends up 68 KiB
DATA = bytes(1 + (i % 251) for i in range(BS))


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


def dio_read(path, pos, length):
    """O_DIRECT preadv into a page-aligned buffer: (bytes or None, result text)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, length)
    try:
        n = os.preadv(fd, [buf], pos)
        return buf[:n], str(n)
    except OSError as e:
        return None, f"-1 {errno.errorcode.get(e.errno, e.errno)}"
    finally:
        buf.close()
        os.close(fd)


def reproduce(mnt):
    """Returns (bug, summary)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)
    span = f"[{WPOS}, {WPOS + RLEN})"
    results = {}
    for name, falloc in (("f", True), ("control", False)):
        path = os.path.join(mnt, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # held open: EOF prealloc stays
        try:
            os.ftruncate(fd, SIZE0)
            assert os.pwrite(fd, DATA, WPOS) == BS  # buffered
            if falloc and libc.fallocate(fd, 1, FPOS, BS) != 0:  # FALLOC_FL_KEEP_SIZE
                die(f"fallocate: {os.strerror(ctypes.get_errno())}")
            size = os.fstat(fd).st_size
            got, ret = dio_read(path, WPOS, RLEN)
            _, again = dio_read(path, WPOS, RLEN)
            ok_got, ok_ret = dio_read(path, WPOS, 2 * BS)  # ends at 72K: before the delalloc
            os.lseek(fd, WPOS, os.SEEK_SET)
            buffered = os.read(fd, RLEN)
        finally:
            os.close(fd)
        after_close, close_ret = dio_read(path, WPOS, RLEN)  # xfs_free_eofblocks ran
        results[name] = got
        print(f"{name}: ftruncate {SIZE0}, buffered pwrite [{WPOS}, {WPOS + BS})"
              + (f", fallocate KEEP_SIZE [{FPOS}, {FPOS + BS})" if falloc else "")
              + f"; i_size {size}")
        print(f"  O_DIRECT preadv {span}: {ret}{', data as written' if got == DATA else ''}"
              f" (again: {again})")
        print(f"  O_DIRECT preadv [{WPOS}, {WPOS + 2 * BS}): {ok_ret}"
              f"{', data as written' if ok_got == DATA else ''}")
        print(f"  buffered read {span}: {len(buffered)}"
              f"{', data as written' if buffered == DATA else ', DATA DIFFERS'}")
        print(f"  O_DIRECT preadv {span} after closing the file: {close_ret}"
              f"{', data as written' if after_close == DATA else ''}")
    if results["f"] is None:
        ctl = "OK" if results["control"] == DATA else "also fails"
        return True, (f"the O_DIRECT read of {span}, starting inside the file (i_size "
                      f"{WPOS + BS}), fails with EIO although the buffered read returns the "
                      f"{BS} bytes written (control without fallocate: {ctl})")
    if results["f"] == DATA:
        return False, f"the O_DIRECT read of {span} returns the {BS} bytes written"
    return False, f"the O_DIRECT read of {span} returned unexpected data (not this bug)"


def main():
    ap = argparse.ArgumentParser(
        description="Reproduce an xfs O_DIRECT read EIO past EOF (Linux 6.18). "
        "WARNING: DEVICE is a scratch device and is OVERWRITTEN (mkfs)."
    )
    ap.add_argument("device", nargs="?", help="scratch block device (DESTROYED)")
    loop_help = "use a temporary 512 MiB sparse file on a loop device instead of DEVICE"
    ap.add_argument("--loop-image", action="store_true", help=loop_help)
    args = ap.parse_args()
    if bool(args.device) == args.loop_image:
        ap.error("give exactly one of DEVICE or --loop-image")
    if os.geteuid() != 0:
        die("must run as root")
    for tool in ["mkfs.xfs", "mount", "umount"] + ["losetup"] * args.loop_image:
        if shutil.which(tool) is None:
            die(f"{tool} not found")
    if mmap.PAGESIZE != BS:
        die(f"page size is {mmap.PAGESIZE}, this reproducer assumes 4096")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    image = mnt = None
    try:
        if args.loop_image:
            with signals_deferred():
                fd, image = tempfile.mkstemp(prefix="xfsdioeio-", suffix=".img")
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
        run("mkfs.xfs", "-f", "-q", "-b", "size=4096", dev)
        with signals_deferred():
            mnt = tempfile.mkdtemp(prefix="xfsdioeio-")
        run("mount", "-t", "xfs", dev, mnt)
        print(f"xfs on {dev} ({os.uname().release}), 4 KiB blocks, mounted at {mnt}")
        bug, summary = reproduce(mnt)
    except subprocess.CalledProcessError as e:
        die(f"{' '.join(e.cmd)} failed: {e.stderr.strip()}")
    finally:  # on any exit, KeyboardInterrupt and SIGTERM included
        with signals_deferred():
            if mnt and os.path.ismount(mnt) and subprocess.run(["umount", mnt]).returncode:
                subprocess.run(["umount", "-l", mnt])  # busy: lazy
            if mnt and os.path.ismount(mnt):
                print(f"warning: umount {mnt} failed; left mounted", file=sys.stderr)
            elif mnt:
                os.rmdir(mnt)
            if image:
                cmd = ["losetup", "--noheadings", "-O", "NAME", "-j", image]
                for loop in subprocess.run(cmd, capture_output=True, text=True).stdout.split():
                    subprocess.run(["losetup", "-d", loop])
                os.unlink(image)
    print(f"{'BUG' if bug else 'OK'} (xfs): {summary}")
    return 1 if bug else 0


if __name__ == "__main__":
    sys.exit(main())
