"""The body of a generated standalone reproducer: BODY, then the DATA that
``repro_script.py`` writes, then ENTRY.

Standard library and ctypes only: it must run on a kernel developer's machine without
dioconf. Kept as plain text so that nothing of the project leaks into it.
"""

BODY = r'''
import argparse
import ctypes
import errno
import fcntl
import mmap
import os
import struct
import subprocess
import sys
import tempfile

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
RWF = {"DSYNC": 2, "SYNC": 4, "NOWAIT": 8}
KEEP, PUNCH, ZERO = 0x01, 0x02, 0x10
FICLONERANGE, GETFLAGS, SETFLAGS, NOCOW = 0x4020940D, 0x80086601, 0x40086602, 0x00800000


def pattern(wid, pos, n):
    """The data of write ``wid`` at file offset ``pos``: 16-byte units b"DIOW" + wid +
    unit number (little-endian), sliced."""
    first, last = pos // 16, -(-(pos + n) // 16)
    raw = b"".join(b"DIOW" + struct.pack("<IQ", wid, u) for u in range(first, last))
    return raw[pos - first * 16 : pos - first * 16 + n]


def value(wid, shift, pos, n):
    return bytes(n) if wid == 0 else pattern(wid, pos + shift, n)


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
    return p.stdout.strip()


def call(fn, *args):
    try:
        fn(*args)
        return 0
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def falloc(fd, mode, pos, n):
    if libc.fallocate(fd, mode, pos, n):
        raise OSError(ctypes.get_errno(), "fallocate")


def direct(fd, kind, pos, n, wid, flags, fault_at):
    buf = mmap.mmap(-1, max(n, 1))
    try:
        if kind == "pwrite":
            k = n if fault_at is None else fault_at
            buf[:k] = pattern(wid, pos, n)[:k]
            if fault_at is not None:
                view = ctypes.c_char.from_buffer(buf)
                addr = ctypes.addressof(view) + fault_at
                del view
                libc.mprotect(addr, len(buf) - fault_at, 0)
        else:
            for page in range(0, n, mmap.PAGESIZE):
                buf[page] = 0
        v = memoryview(buf)[:n]
        rwf = sum(RWF[f] for f in flags)
        try:
            r = (os.pwritev if kind == "pwrite" else os.preadv)(fd, [v], pos, rwf)
        except OSError as exc:
            r = -(exc.errno or errno.EIO)
        finally:
            v.release()
        return r
    finally:
        buf.close()


class Files:
    def __init__(self, mnt, nocow):
        self.mnt, self.nocow, self.fds = mnt, nocow, {}

    def fd(self, name, odirect):
        if name not in self.fds:
            p = os.path.join(self.mnt, name)
            self.fds[name] = (os.open(p, os.O_RDWR | os.O_DIRECT), os.open(p, os.O_RDWR))
        return self.fds[name][0 if odirect else 1]

    def create(self, name):
        fd = os.open(os.path.join(self.mnt, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        if self.nocow:
            flags = bytearray(4)
            fcntl.ioctl(fd, GETFLAGS, flags)
            value = int.from_bytes(flags, "little") | NOCOW
            fcntl.ioctl(fd, SETFLAGS, value.to_bytes(4, "little"))
        os.close(fd)

    def close(self):
        for a, b in self.fds.values():
            os.close(a)
            os.close(b)
        self.fds = {}


def perform(f, op, dev, mnt, fs):
    k, name, pos, n = op["kind"], op.get("file", "f0"), op.get("pos", 0), op.get("length", 0)
    wid = op.get("wid", 0)
    if k in ("pwrite", "pread"):
        return direct(f.fd(name, True), k, pos, n, wid, op.get("flags", []), op.get("fault_at"))
    if k in ("aio", "uring"):  # in flight together in the original (Linux AIO, io_uring);
        # one after the other here
        return [perform(f, sub, dev, mnt, fs) for sub in op["batch"]]
    b = f.fd(name, False)
    if k == "bwrite":
        return os.pwrite(b, pattern(wid, pos, n), pos)
    if k == "bread":
        return len(os.pread(b, n, pos))
    if k in ("fsync", "fdatasync"):
        return call(os.fdatasync if k == "fdatasync" else os.fsync, b)
    if k == "truncate":
        return call(os.ftruncate, b, pos)
    if k == "fallocate":
        return call(falloc, b, KEEP if op.get("keep_size") else 0, pos, n)
    if k == "punch":
        return call(falloc, b, PUNCH | KEEP, pos, n)
    if k == "zero_range":
        return call(falloc, b, ZERO | (KEEP if op.get("keep_size") else 0), pos, n)
    if k == "reflink":
        arg = struct.pack("=qQQQ", f.fd(op["src"], False), op.get("spos", 0), n, pos)
        return call(fcntl.ioctl, b, FICLONERANGE, arg)
    if k == "drop_cache":
        return call(os.posix_fadvise, b, 0, 0, os.POSIX_FADV_DONTNEED)
    if k == "mmap_write":
        size = os.fstat(b).st_size
        m = max(0, min(n, size - pos))
        if m:
            start = pos - pos % mmap.PAGESIZE
            mm = mmap.mmap(b, pos + m - start, offset=start)
            mm[pos - start : pos - start + m] = pattern(wid, pos, m)
            mm.close()
        return m
    if k == "remount":
        f.close()
        run(["umount", mnt])
        run(["mount", dev, mnt])
        return 0
    raise SystemExit(f"unknown operation {k}")


def check(f, expect):
    """'BUG ...' or 'OK ...' for what the failing operation left."""
    name = expect.get("file", "f0")
    b = f.fd(name, False)
    if expect["kind"] == "size":
        size = os.fstat(b).st_size
        verdict = "OK" if size in expect["sizes"] else "BUG"
        return f"{verdict}: i_size is {size}, the contract allows {expect['sizes']}"
    if expect["kind"] == "result":
        got = expect["got"]
        return ("BUG" if got == expect["bad"] else "OK") + f": the operation returned {got} " \
            f"(the run saw {expect['bad']}; {expect['why']})"
    start, end = expect["start"], expect["end"]
    data = os.pread(b, end - start, start)
    bad = []
    for s, e, cands in expect["pieces"]:
        for sec in range(s, e, 512):  # each sector one of the values it may hold
            t = min(e, sec - sec % 512 + 512)
            got = data[sec - start : t - start]
            if not any(got == value(w, sh, sec, t - sec) for w, sh in cands):
                bad.append((sec, t))
    if not bad:
        return f"OK: [{start}, {end}) holds what the contract allows"
    return f"BUG: {name} {bad[0][0]}..{bad[-1][1]} ({len(bad)} sector(s)) hold bytes the " \
        f"contract does not allow there (expected one of {expect['pieces'][0][2]} per sector)"


def main():
    p = argparse.ArgumentParser(description=DATA["title"])
    p.add_argument("device", nargs="?", help="a scratch block device (it is reformatted)")
    p.add_argument("--loop-image", action="store_true", help="use a temporary loop device")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("needs root (mkfs, mount)", file=sys.stderr)
        return 2
    if bool(a.device) == a.loop_image:
        p.print_usage(sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="dioconf-repro-")
    dev, mnt, image = a.device, os.path.join(tmp, "mnt"), None
    os.mkdir(mnt)
    try:
        if a.loop_image:
            image = os.path.join(tmp, "image")
            with open(image, "wb") as fp:
                fp.truncate(512 << 20)
            run(DATA["mkfs"] + [image])
            dev = run(["losetup", "--find", "--show", *DATA["losetup"], image])
        else:
            run(DATA["mkfs"] + [dev])
        run(["mount", dev, mnt])
        f = Files(mnt, DATA["nocow"])
        try:
            for name in DATA["files"]:
                f.create(name)
            for i, op in enumerate(DATA["ops"]):
                r = perform(f, op, dev, mnt, DATA["fs"])
                print(f"{i:4}: {DATA['story'][i]}  ->  {r}")
            expect = dict(DATA["expect"], got=r)
            print(check(f, expect))
            return 1 if check(f, expect).startswith("BUG") else 0
        finally:
            f.close()
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["umount", mnt])
        if image is not None:
            for line in subprocess.run(["losetup", "-j", image], capture_output=True,
                                       text=True).stdout.splitlines():
                subprocess.run(["losetup", "-d", line.split(":")[0]])
        subprocess.run(["rm", "-rf", tmp])
'''

# after DATA, which main() reads
ENTRY = '''
if __name__ == "__main__":
    sys.exit(main())
'''
