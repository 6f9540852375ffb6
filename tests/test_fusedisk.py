"""The FUSE-served disk image behind a loop device: its bytes are the image's, a range
made to fail answers its errno through the loop device (as the block request's
status), and nothing stays mounted or attached. Needs root, loop devices and /dev/fuse.
"""

from __future__ import annotations

import errno
import mmap
import os
import subprocess
from pathlib import Path

import pytest
from dioconf.impl.kernel.fixture import kernel_fs
from dioconf.impl.kernel.fusedisk import Fault, FuseDisk

from tests.kernel_support import leftovers, needs

FUSE = pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse")


def test_a_fault_hits_only_its_operation_and_range():
    f = Fault(4096, 8192, errno.EIO, "read")
    assert f.hits("read", 0, 4097) and f.hits("read", 8191, 1)
    assert not f.hits("read", 8192, 4096) and not f.hits("read", 0, 4096)
    assert not f.hits("write", 4096, 4096)
    assert Fault(0, 1, errno.EIO).hits("write", 0, 1)  # "any"


@FUSE
@needs("ext4")
def test_loop_device_over_the_fuse_disk_fails_where_told(own_tmp):
    image = own_tmp / "img"
    data = os.urandom(1 << 20)
    image.write_bytes(data)
    mnt = own_tmp / "mnt"
    mnt.mkdir()
    disk = FuseDisk(image, mnt)
    with pytest.raises(ValueError):
        disk.fail(0, 0, errno.EIO)
    disk.start()
    loop = ""
    try:
        assert disk.path.stat().st_size == len(data)
        loop = subprocess.check_output(["losetup", "--find", "--show", str(disk.path)],
                                       text=True).strip()  # fmt: skip
        fd = os.open(loop, os.O_RDWR | os.O_DIRECT)
        buf = mmap.mmap(-1, 8192)
        try:
            assert os.preadv(fd, [buf], 8192) == 8192 and bytes(buf) == data[8192:16384]
            disk.fail(16384, 4096, errno.ENODATA, "read")
            disk.fail(65536, 4096, errno.ENOSPC, "write")
            with pytest.raises(OSError) as read_err:
                os.preadv(fd, [buf], 12288)
            assert read_err.value.errno == errno.ENODATA
            with pytest.raises(OSError) as write_err:
                os.pwritev(fd, [buf], 65536)
            assert write_err.value.errno == errno.ENOSPC
            assert os.pwritev(fd, [buf], 16384) == 8192  # reads fail there, not writes
            disk.clear()
            assert os.preadv(fd, [buf], 12288) == 8192
        finally:
            os.close(fd)
        assert any(op == "read" and e == errno.ENODATA for op, _, _, e in disk.served)
        assert image.read_bytes()[16384:24576] == data[8192:16384]  # written through
    finally:
        released = [subprocess.run(["losetup", "-d", loop]).returncode if loop else 0,
                    subprocess.run(["umount", str(mnt)]).returncode]  # fmt: skip
        disk.stop()
    assert released == [0, 0]
    assert disk.error is None
    assert leftovers(own_tmp) == []


@FUSE
@needs("ext4")
def test_a_server_that_fails_fails_the_devices_io_instead_of_hanging_it(own_tmp):
    """The server thread dies (here: an exception while handling a request): it closes
    /dev/fuse, the kernel aborts the connection, and the loop device's read fails with
    EIO; everything is released as usual."""
    image = own_tmp / "img"
    image.write_bytes(bytes(1 << 20))
    mnt = own_tmp / "mnt"
    mnt.mkdir()
    disk = FuseDisk(image, mnt)
    disk.start()
    loop = ""
    try:
        loop = subprocess.check_output(["losetup", "--find", "--show", str(disk.path)],
                                       text=True).strip()  # fmt: skip
        fd = os.open(loop, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, 4096)
        try:
            assert os.preadv(fd, [buf], 0) == 4096

            def broken(msg: bytes) -> None:
                raise RuntimeError("broken server")

            disk._handle = broken  # type: ignore[method-assign]
            with pytest.raises(OSError) as err:
                os.preadv(fd, [buf], 8192)
            assert err.value.errno == errno.EIO
        finally:
            os.close(fd)
    finally:
        released = [subprocess.run(["losetup", "-d", loop]).returncode if loop else 0,
                    subprocess.run(["umount", str(mnt)]).returncode]  # fmt: skip
        disk.stop()
    assert released == [0, 0]
    assert isinstance(disk.error, RuntimeError)
    assert leftovers(own_tmp) == []


@FUSE
@needs("xfs")
def test_kernel_fs_over_fuse_mounts_and_leaves_nothing(own_tmp):
    with kernel_fs("xfs", fuse=True, workdir=own_tmp) as m:
        assert m.disk is not None and m.disk.path.exists()
        (m.mnt / "f").write_bytes(b"x" * 4096)
        os.sync()
        assert any(op == "write" for op, *_ in m.disk.served)
    assert m.disk.error is None
    assert leftovers(own_tmp) == []
