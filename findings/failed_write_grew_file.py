#!/usr/bin/env python3
"""Reproducer: an O_DIRECT write fails with EFAULT, yet the file grew (Linux 6.18).

WARNING: DEVICE is a scratch device. It is OVERWRITTEN (mkfs) and all data on it is lost.

Each case pwritev()s with O_DIRECT into a new empty file (FS_NOCOW_FL on btrfs) from an
mmap whose pages from +FAULT on are PROT_NONE; it prints the result, st_size (also after
a remount) and what an O_DIRECT read returns of the range. (a) 7168 bytes at 231424,
fault +0, RWF_DSYNC (ext4 report); (b) 8192 at 262144, fault +4096 (btrfs report);
(c) 7168 at 231424, fault +4096.
ext4 (a): iomap_dio_bio_iter (fs/iomap/direct-io.c) copies nothing, then its sub-block
tail zeroing, taken as pos >= i_size, does "ret = iomap_dio_zero(...)" over the -EFAULT,
so iomap_dio_rw returns 0 and ext4_dio_write_end_io(size 0, error 0) finds pos + 0 >
i_disksize and calls ext4_handle_inode_extension(inode, pos, 0, 0), whose
ext4_update_inode_size(inode, pos + 0) journals i_size = 231424. ext4_dio_write_iter
then sees ret >= 0 && iov_iter_count(from), falls back to ext4_buffered_write_iter ->
generic_perform_write (mm/filemap.c), which copies nothing, fails
fault_in_iov_iter_readable and returns -EFAULT: "if (err < 0) return err;".
ext4 (c): the DIO writes 4096 bytes, end_io sets i_size 235520; the fallback's -EFAULT
replaces the 4096. btrfs (b): btrfs_direct_write (fs/btrfs/direct-io.c) writes page 0
(IOMAP_DIO_PARTIAL, written = 4096; i_size raised by btrfs_get_blocks_direct_write and
cut back to 266240 when btrfs_dio_iomap_end cancels the rest), the nofault retry makes
no progress (left == prev_left -> -ENOTBLK), btrfs_buffered_write returns -EFAULT, and
"ret = written_buffered; goto out;" ... "return ret < 0 ? ret : written;" drops the 4096.
write(2): interrupted after some bytes, a write "succeeds, and returns the number of
bytes written". BUG (exit 1): some case failed, yet st_size changed. OK (exit 0):
otherwise (xfs: (a) returns 0, (b) fails leaving st_size 0). Exit 2: usage or
environment error (not root, no block device, missing tool).

Usage (as root): failed_write_grew_file.py DEVICE [--fs ext4|btrfs|xfs]
                 failed_write_grew_file.py --loop-image [--fs ext4|btrfs|xfs]
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

PAGE = 4096
CASES = {  # name: (pos, length, first PROT_NONE byte of the buffer, pwritev flags)
    "a": (231424, 7168, 0, os.RWF_DSYNC),
    "b": (262144, 8192, 4096, 0),
    "c": (231424, 7168, 4096, 0),
}
MKFS = {
    "ext4": ["mkfs.ext4", "-F", "-q", "-b", "4096"],
    "btrfs": ["mkfs.btrfs", "-f", "-q"],
    "xfs": ["mkfs.xfs", "-f", "-q", "-b", "size=4096"],
}
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_NOCOW_FL = 0x80086601, 0x40086602, 0x00800000


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


def set_nocow(fd):
    """chattr +C on the (empty) file: btrfs then writes it in place, without checksums."""
    flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(4)))[0]
    fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_NOCOW_FL))
    if not struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(4)))[0] & FS_NOCOW_FL:
        die("could not set FS_NOCOW_FL")


def read_back(path, pos, length):
    """O_DIRECT read (the disk, not the page cache) of file [pos, pos + length)."""
    start, end = pos & ~(PAGE - 1), (pos + length + PAGE - 1) & ~(PAGE - 1)
    with mmap.mmap(-1, end - start) as buf:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            return buf[: os.preadv(fd, [buf], start)][pos - start : pos - start + length]
        finally:
            os.close(fd)


def one_case(libc, mnt, fs, name):
    pos, length, fault, flags = CASES[name]
    path = os.path.join(mnt, name)
    data = bytes(1 + (i % 251) for i in range(length))  # no zero bytes
    maplen = (length + PAGE - 1) & ~(PAGE - 1)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    buf = mmap.mmap(-1, maplen)
    try:
        if fs == "btrfs":
            set_nocow(fd)
        buf[:length] = data
        ptr = ctypes.c_char.from_buffer(buf)
        addr = ctypes.addressof(ptr)
        del ptr  # release the export, or buf.close() fails
        if libc.mprotect(addr + fault, maplen - fault, 0) != 0:  # PROT_NONE
            die(f"mprotect: {os.strerror(ctypes.get_errno())}")
        with memoryview(buf) as mv:
            try:
                n = os.pwritev(fd, [mv[:length]], pos, flags)
            except OSError as e:
                n = -e.errno
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
        buf.close()
    got = read_back(path, pos, length)
    landed = next((i for i in range(len(got)) if got[i] != data[i]), len(got))
    ret = str(n) if n >= 0 else f"-1 {errno.errorcode.get(-n, -n)}"
    dsync = ", RWF_DSYNC" if flags else ""
    print(f"({name}) pwritev({length} bytes at {pos}, buffer PROT_NONE from +{fault}{dsync})")
    print(
        f"    returned {ret}; st_size 0 -> {size}; file [{pos}, {pos + length}): "
        f"{landed} bytes read back as written, {len(got) - landed} other bytes readable"
    )
    if n < 0 and size != 0:
        held = f", holding {landed} bytes of its data" if landed else ""
        return f"({name}) failed with {ret.split()[-1]}, yet st_size grew 0 -> {size}{held}"
    if n == 0:
        print(f"    note: a {length}-byte write returned 0 (no error, nothing written)")
    elif n > 0 and landed < n:
        print(f"    note: only {landed} of the {n} bytes reported written read back")
    return None


def main():
    ap = argparse.ArgumentParser(
        description="Reproduce 'O_DIRECT write fails with EFAULT yet grows the file' "
        "(Linux 6.18). WARNING: DEVICE is a scratch device and is OVERWRITTEN (mkfs)."
    )
    ap.add_argument("device", nargs="?", help="scratch block device (DESTROYED)")
    loop_help = "use a temporary 512 MiB sparse file on a loop device instead of DEVICE"
    ap.add_argument("--loop-image", action="store_true", help=loop_help)
    ap.add_argument("--fs", choices=sorted(MKFS), default="ext4", help="default: ext4")
    args = ap.parse_args()
    if bool(args.device) == args.loop_image:
        ap.error("give exactly one of DEVICE or --loop-image")
    if os.geteuid() != 0:
        die("must run as root")
    if mmap.PAGESIZE != PAGE:
        die(f"page size is {mmap.PAGESIZE}, this reproducer assumes 4096")
    for tool in [MKFS[args.fs][0], "mount", "umount"] + ["losetup"] * args.loop_image:
        if shutil.which(tool) is None:
            die(f"{tool} not found")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    image = mnt = None
    try:
        if args.loop_image:
            with signals_deferred():
                fd, image = tempfile.mkstemp(prefix="failgrow-", suffix=".img")
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
            mnt = tempfile.mkdtemp(prefix="failgrow-")
        run("mount", "-t", args.fs, dev, mnt)
        nocow = ", files FS_NOCOW_FL" if args.fs == "btrfs" else ""
        print(f"{args.fs} on {dev} ({os.uname().release}), 4 KiB blocks, at {mnt}{nocow}")
        bugs = [b for b in (one_case(libc, mnt, args.fs, c) for c in CASES) if b]
        run("umount", mnt)  # is the grown size on disk?
        run("mount", "-t", args.fs, dev, mnt)
        sizes = ", ".join(f"({c}) {os.stat(os.path.join(mnt, c)).st_size}" for c in CASES)
        print(f"after umount + mount, st_size: {sizes}")
    except subprocess.CalledProcessError as e:
        die(f"{' '.join(e.cmd)} failed: {e.stderr.strip()}")
    finally:  # on any exit, KeyboardInterrupt and SIGTERM included; asks the system what is
        with signals_deferred():  # set up, as a signal can land between a command and our notes
            if mnt and os.path.ismount(mnt):
                subprocess.run(["umount", mnt], check=False)
            if mnt and os.path.ismount(mnt):
                print(f"warning: umount {mnt} failed; left mounted", file=sys.stderr)
            elif mnt:
                os.rmdir(mnt)
            if image:
                cmd = ["losetup", "--noheadings", "-O", "NAME", "-j", image]
                for loop in subprocess.run(cmd, capture_output=True, text=True).stdout.split():
                    subprocess.run(["losetup", "-d", loop], check=False)
                os.unlink(image)
    what = "the write reported failure but the file's size changed: " + "; ".join(bugs)
    print(f"BUG ({args.fs}): {what}" if bugs else f"OK ({args.fs}): no failed write grew a file")
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
