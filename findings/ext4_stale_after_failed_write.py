#!/usr/bin/env python3
"""Reproducer: a failed O_DIRECT write leaves deleted files' data readable on ext4 (Linux 6.18).

WARNING: DEVICE is a scratch device. It is OVERWRITTEN (mkfs) and all data on it is lost.
Usage (as root): ext4_stale_after_failed_write.py DEVICE | --loop-image   (stdlib only)

Sequence (4 KiB blocks, default mount options: delalloc): fill the free space with a marker
and delete it; on a new empty file f0, O_DIRECT pwritev(8192 bytes, offset 512) from a
PROT_NONE buffer -> -1 EFAULT; ftruncate(f0, 12288): [4096, 12288) reads (buffered and
O_DIRECT) as the deleted file's data, not zeros. RWF_DSYNC and remounts play no part.

Mechanism: ext4_iomap_alloc (fs/ext4/inode.c) maps blocks at or past i_size with
EXT4_GET_BLOCKS_CREATE: *written* extents (IOMAP_MAPPED, IOMAP_F_NEW), trusting i_size to
hide them until the data lands. iomap_dio_bio_iter (fs/iomap/direct-io.c) zeroes the head
pad [0, 512); bio_iov_iter_get_pages fails (EFAULT); the tail zeroing's ``ret =
iomap_dio_zero(...)`` overwrites the -EFAULT with 0 and, nothing copied, returns 0: iomap_iter
stops without error. ext4_dio_write_end_io -> ext4_handle_inode_extension sets i_size to
pos + 0 = 512; ext4_inode_extension_cleanup(inode, ret < 0) truncates nothing: blocks 1-2
stay allocated and written past EOF (e2fsck: "i_size is 512, should be 12288"). The
buffered fallback (ext4_buffered_write_iter) fails with EFAULT, ext4_da_write_end truncates
nothing (nodelalloc's ext4_write_end does, by luck). Extending i_size exposes the blocks.
Before 91562895f803 (v6.7) ext4_handle_inode_extension truncated "allocated but not written
blocks beyond EOF"; dda898d7ffe8 restored that for DAX only. Aligned starts keep the EFAULT.
Prints evidence, then "BUG ..." (exit 1: deleted file's bytes, or any non-zero byte, read
through f0) or "OK ..." (exit 0: f0 reads as zeros); exit 2: usage or environment error.
"""

import argparse
import contextlib
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

BS, POS, LENGTH, NEW_SIZE, FS_SIZE = 4096, 512, 8192, 12288, 512 << 20
MARKER = b"DELETED-SECRET!\n"  # 16 bytes: every 4 KiB block of the old file starts with it
MKFS = ["mkfs.ext4", "-F", "-q", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"]


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def run(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@contextlib.contextmanager
def signals_deferred():
    """Holds SIGINT/SIGTERM while a resource is made and recorded, or torn down."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)


def fill_and_delete(mnt, dev):
    """Writes the marker into every free block (reserved_clusters 0), fsyncs, unlinks."""
    knob = f"/sys/fs/ext4/{os.path.basename(os.path.realpath(dev))}/reserved_clusters"
    with contextlib.suppress(OSError), open(knob, "w") as f:  # else ~4096 blocks stay unfilled
        f.write("0\n")
    path, chunk, n = os.path.join(mnt, "old"), MARKER * (1 << 16), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            n += os.write(fd, chunk)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    os.fsync(fd)
    os.close(fd)
    os.unlink(path)
    os.sync()
    return n


def fiemap(fd):
    """[(logical, physical, length, flags)] of the file's extents (FS_IOC_FIEMAP, SYNC)."""
    res = fcntl.ioctl(fd, 0xC020660B, struct.pack("=QQIIII", 0, 1 << 62, 1, 0, 8, 0) + bytes(448))
    return [struct.unpack_from("=QQQ16xI", res, 32 + 56 * i)
            for i in range(struct.unpack_from("=I", res, 20)[0])]  # fmt: skip


def describe(data):
    out = []
    for a in range(0, len(data), BS):
        blk = data[a : a + BS]
        what = "zeros" if not any(blk) else "DELETED FILE'S DATA" if MARKER in blk else "data"
        if out and out[-1][2] == what:
            out[-1][1] = a + len(blk)
        else:
            out.append([a, a + len(blk), what])
    return ", ".join(f"[{a}, {b}) {w}" for a, b, w in out) + f"; starts {data[BS : BS + 16]!r}"


def reproduce(mnt, dev):
    """Returns (bug, summary)."""
    print(f"filled and deleted {fill_and_delete(mnt, dev) >> 20} MiB of {MARKER!r}")
    path = os.path.join(mnt, "f0")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    try:
        with mmap.mmap(-1, LENGTH, prot=0) as buf:  # PROT_NONE: pinning page 0 fails, EFAULT
            ret = f"returned {os.pwritev(fd, [buf], POS)}"
    except OSError as e:
        ret = f"failed: {errno.errorcode.get(e.errno, e.errno)}"
    try:
        print(f"O_DIRECT pwritev(f0, {LENGTH} bytes, offset {POS}), buffer PROT_NONE: {ret}")
        ext = [f"[{lo}, {lo + n}) at disk byte {ph}: {'UNWRITTEN' if fl & 0x800 else 'written'}"
               for lo, ph, n, fl in fiemap(fd)]  # fmt: skip
        print(f"  f0 size now {os.fstat(fd).st_size} (was 0); FIEMAP extents: {'; '.join(ext)}")
    finally:
        os.close(fd)
    if shutil.which("e2fsck"):
        run("umount", mnt)
        out = run("e2fsck", "-fn", dev, check=False)
        lines = [ln for ln in out.stdout.splitlines() if "i_size" in ln] or ["(clean)"]
        print(f"  e2fsck -fn (exit {out.returncode}): {lines[0]}")
        run("mount", "-t", "ext4", dev, mnt)
    os.truncate(path, NEW_SIZE)
    print(f"ftruncate(f0, {NEW_SIZE})")
    with open(path, "rb") as f:
        buffered = f.read(NEW_SIZE)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        with mmap.mmap(-1, NEW_SIZE) as rbuf:
            direct = rbuf[: os.preadv(fd, [rbuf], 0)]
    finally:
        os.close(fd)
    print(f"  buffered read [0, {NEW_SIZE}): {describe(buffered)}")
    print(f"  O_DIRECT read [0, {NEW_SIZE}): {describe(direct)}")
    if any(MARKER in d for d in (buffered, direct)):
        return True, "bytes of the deleted file are readable through the new file f0"
    if any(any(d) for d in (buffered, direct)):
        return True, "f0 reads non-zero bytes no successful write put there"
    return False, f"f0 [0, {NEW_SIZE}) reads as zeros"


def main():
    ap = argparse.ArgumentParser(
        description="Reproduce stale data exposure after a failed O_DIRECT write on ext4. "
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
    for tool in ["mkfs.ext4", "mount", "umount"] + ["losetup"] * args.loop_image:
        if shutil.which(tool) is None:
            die(f"{tool} not found")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    image = mnt = None
    try:
        if args.loop_image:
            with signals_deferred():
                fd, image = tempfile.mkstemp(prefix="ext4stale-", suffix=".img")
            os.ftruncate(fd, FS_SIZE)
            os.close(fd)
            dev = run("losetup", "--find", "--show", image).stdout.strip()
        else:
            dev = args.device
        try:
            if not stat.S_ISBLK(os.stat(dev).st_mode):
                die(f"{dev} is not a block device")
        except FileNotFoundError:
            die(f"{dev} does not exist")
        with open(dev, "rb") as f:  # use at most 512 MiB: the fill writes all free space
            size = f.seek(0, os.SEEK_END)
        run(*MKFS, dev, *(["512M"] if size > FS_SIZE else []))
        with signals_deferred():
            mnt = tempfile.mkdtemp(prefix="ext4stale-")
        run("mount", "-t", "ext4", dev, mnt)
        with open("/proc/mounts") as f:
            opts = next(ln.split()[3] for ln in f if ln.split()[1] == mnt)
        print(f"ext4 on {dev} ({os.uname().release}), 4 KiB blocks, mounted {opts}")
        bug, summary = reproduce(mnt, dev)
    except subprocess.CalledProcessError as e:
        die(f"{' '.join(e.cmd)} failed: {e.stderr.strip()}")
    finally:  # on any exit, KeyboardInterrupt and SIGTERM included
        with signals_deferred():
            if mnt and os.path.ismount(mnt) and run("umount", mnt, check=False).returncode:
                run("umount", "-l", mnt, check=False)  # busy: detach, freed when we exit
            if mnt and os.path.ismount(mnt):
                print(f"warning: umount {mnt} failed; left mounted", file=sys.stderr)
            elif mnt:
                os.rmdir(mnt)
            if image:
                cmd = ["losetup", "--noheadings", "-O", "NAME", "-j", image]
                for loop in run(*cmd, check=False).stdout.split():
                    run("losetup", "-d", loop, check=False)
                os.unlink(image)
    print(f"{'BUG' if bug else 'OK'} (ext4): {summary}")
    return 1 if bug else 0


if __name__ == "__main__":
    sys.exit(main())
