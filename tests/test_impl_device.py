"""ImageDevice: a sparse image file with a volatile write cache, FUA, flushes and crashes."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest
from dioconf.impl.device import (
    DeviceError,
    ImageDevice,
    ImageError,
    find_stale,
    stale_range,
    stale_sector,
)
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

KIB = 1024
MIB = 1024 * KIB


def pattern(tag: int, length: int) -> bytes:
    """Recognisable data that never looks stale: 16-byte units of ``tag`` and the index."""
    return b"".join(
        (b"DATA" + tag.to_bytes(4, "big") + i.to_bytes(8, "big")) for i in range(length // 16)
    )


def stale(addr: int, length: int) -> bytes:
    return stale_range(addr, addr + length)


def same(got: bytes | bytearray, expect: bytes | bytearray) -> None:
    """``got == expect``, failing with the first differing sector (no multi-MiB diff)."""
    if got == expect:
        return
    n = min(len(got), len(expect))
    i = next((k for k in range(0, n, 512) if got[k : k + 512] != expect[k : k + 512]), n)
    raise AssertionError(
        f"lengths {len(got)} and {len(expect)}; first difference in the sector at offset {i}:"
        f" got {bytes(got[i : i + 24])!r}..., expected {bytes(expect[i : i + 24])!r}..."
    )


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def img(tmp_path: Path) -> Path:
    return tmp_path / "disk.img"


def test_stale_sector_is_recognisable_and_distinct() -> None:
    s7 = stale_sector(7)
    assert len(s7) == 512 and s7.startswith(b"STALE!!!") and s7 != stale_sector(8)
    assert stale_range(7 * 512, 9 * 512) == s7 + stale_sector(8)
    assert stale_range(7 * 512 + 3, 8 * 512 + 5) == (s7 + stale_sector(8))[3 : 512 + 5]
    assert stale_range(10, 10) == b""


def test_find_stale_whole_and_partial_sectors() -> None:
    base = 4096
    data = bytearray(stale(base, 4096))
    data[1024:1536] = pattern(1, 512)
    data[3000:3001] = b"x"  # breaks sector 5 of the buffer
    assert find_stale(data, base) == [
        (base, base + 1024),
        (base + 1536, base + 2560),
        (base + 3072, base + 4096),
    ]
    assert find_stale(memoryview(bytes(data)), base) == find_stale(data, base)
    # The right pattern at the wrong address is not stale.
    assert find_stale(data, base + 512) == []
    assert find_stale(pattern(2, 8192), 0) == []
    assert find_stale(b"", 0) == []
    # Unaligned start and end: partial sectors count when they match their part.
    assert find_stale(stale(100, 1000), 100) == [(100, 1100)]
    odd = bytearray(stale(100, 1000))
    odd[-1] ^= 1
    assert find_stale(odd, 100) == [(100, 1024)]
    # The magic inside data, not on a sector start, is not a stale sector.
    tricky = bytearray(pattern(3, 1024))
    tricky[10:522] = stale_sector(0)
    assert find_stale(tricky, 0) == []


@pytest.mark.parametrize("lbs", [512, 4096])
def test_round_trip_and_never_written_reads_stale(img: Path, lbs: int) -> None:
    with ImageDevice(img, 1 * MIB, logical_block_size=lbs) as dev:
        same(dev.read(0, 8 * lbs), stale(0, 8 * lbs))
        dev.write(2 * lbs, pattern(1, 3 * lbs))
        got = dev.read(0, 8 * lbs)
        same(got[2 * lbs : 5 * lbs], pattern(1, 3 * lbs))
        assert find_stale(got, 0) == [(0, 2 * lbs), (5 * lbs, 8 * lbs)]
        dev.write(1 * MIB - lbs, pattern(2, lbs), fua=True)
        same(dev.read(1 * MIB - lbs, lbs), pattern(2, lbs))
        buf = bytearray(lbs)
        dev.readinto(2 * lbs, memoryview(buf))
        same(buf, pattern(1, 3 * lbs)[:lbs])
        dev.write(0, memoryview(pattern(3, 2 * lbs)).cast("Q"))
        same(dev.read(0, 2 * lbs), pattern(3, 2 * lbs))


@pytest.mark.parametrize("how", ["fua", "flush", "nocache"])
def test_partial_write_into_a_stale_block_keeps_the_rest_stale(img: Path, how: str) -> None:
    with ImageDevice(img, 1 * MIB, write_cache=how != "nocache") as dev:
        dev.write(8192 + 1024, pattern(1, 512), fua=how == "fua")
        dev.write(16384 + 512, pattern(2, 1024), fua=how == "fua")
        if how == "flush":
            dev.flush()
        assert dev.volatile_ranges() == []
        for d in (dev.read, dev.durable_read):
            got = d(0, 32768)
            same(got[9216:9728], pattern(1, 512))
            same(got[16896:17920], pattern(2, 1024))
            assert find_stale(got, 0) == [(0, 9216), (9728, 16896), (17920, 32768)]
    with ImageDevice(img) as dev:  # the image alone says the same after a reopen
        assert find_stale(dev.read(0, 32768), 0) == [(0, 9216), (9728, 16896), (17920, 32768)]


def test_plain_write_is_lost_in_a_crash(img: Path) -> None:
    with ImageDevice(img, 1 * MIB) as dev:
        dev.write(4096, pattern(1, 8192))
        same(dev.read(4096, 8192), pattern(1, 8192))
        assert dev.volatile_ranges() == [(4096, 12288)]
        same(dev.durable_read(4096, 8192), stale(4096, 8192))
        dev.crash()
        same(dev.read(4096, 8192), stale(4096, 8192))
        assert dev.volatile_ranges() == []
        dev.write(4096, pattern(2, 512))  # the device keeps working after a crash
        same(dev.read(4096, 512), pattern(2, 512))


def test_flushed_and_fua_writes_survive_a_crash(img: Path) -> None:
    with ImageDevice(img, 1 * MIB) as dev:
        dev.write(0, pattern(1, 4096))
        dev.flush()
        dev.write(8192, pattern(2, 4096), fua=True)
        assert dev.volatile_ranges() == []
        dev.crash()
        same(dev.read(0, 4096), pattern(1, 4096))
        same(dev.read(8192, 4096), pattern(2, 4096))
        # A FUA write leaves the other volatile writes volatile.
        dev.write(16384, pattern(3, 8192))
        dev.write(20480, pattern(4, 1024), fua=True)
        assert dev.volatile_ranges() == [(16384, 20480), (21504, 24576)]
        dev.crash()
        got = dev.read(16384, 8192)
        same(got[4096:5120], pattern(4, 1024))
        assert find_stale(got, 16384) == [(16384, 20480), (21504, 24576)]


def test_fua_without_device_support_is_write_then_flush(img: Path) -> None:
    with ImageDevice(img, 1 * MIB, fua=False) as dev:
        dev.write(0, pattern(1, 4096))
        dev.write(8192, pattern(2, 512), fua=True)
        assert dev.volatile_ranges() == []
        dev.crash()
        same(dev.read(0, 4096), pattern(1, 4096))
        same(dev.read(8192, 512), pattern(2, 512))
        assert dev.stats["flushes"] == 1 and dev.stats["fua_writes"] == 1


def test_without_write_cache_every_write_is_durable(img: Path) -> None:
    with ImageDevice(img, 1 * MIB, write_cache=False) as dev:
        dev.write(0, pattern(1, 4096))
        dev.write(4096, pattern(2, 4096), fua=True)
        assert dev.volatile_ranges() == []
        dev.flush()
        dev.crash()
        same(dev.read(0, 8192), pattern(1, 4096) + pattern(2, 4096))
        assert not Path(str(img) + ".cache").exists()


def test_flush_does_not_cover_a_later_write(img: Path) -> None:
    with ImageDevice(img, 1 * MIB) as dev:
        dev.write(0, pattern(1, 4096))
        dev.flush()
        dev.write(4096, pattern(2, 4096))
        dev.write(0, pattern(3, 512))
        assert dev.volatile_ranges() == [(0, 512), (4096, 8192)]
        dev.crash()
        same(dev.read(0, 8192), pattern(1, 4096) + stale(4096, 4096))


def test_overwrite_of_durable_data_is_undone_by_a_crash(img: Path) -> None:
    with ImageDevice(img, 1 * MIB) as dev:
        dev.write(0, pattern(1, 16384), fua=True)
        dev.write(4096, pattern(2, 4096))
        same(dev.read(0, 16384)[4096:8192], pattern(2, 4096))
        same(dev.durable_read(0, 16384), pattern(1, 16384))
        dev.crash()
        same(dev.read(0, 16384), pattern(1, 16384))


def test_stats_count_requests_and_bytes(img: Path) -> None:
    with ImageDevice(img, 1 * MIB) as dev:
        dev.write(0, pattern(1, 4096))
        dev.write(4096, pattern(1, 512), fua=True)
        dev.read(0, 8192)
        dev.durable_read(0, 512)  # an oracle, not a device request
        dev.flush()
        dev.crash()
        counts = [1, 2, 8192, 4608, 1, 1, 1]
        keys = ["reads", "writes", "bytes_read", "bytes_written", "flushes", "fua_writes"]
        assert dev.stats == dict(zip([*keys, "crashes"], counts, strict=True))


def test_reopen_keeps_durable_data_and_discards_the_overlay(img: Path) -> None:
    with ImageDevice(img, 1 * MIB, logical_block_size=4096) as dev:
        dev.write(0, pattern(1, 4096))
        dev.flush()
        dev.write(8192, pattern(2, 4096))  # volatile: lost at close, as at a power-off
    assert not Path(str(img) + ".cache").exists()
    Path(str(img) + ".cache").write_bytes(pattern(9, 1 * MIB))  # a leftover overlay
    with ImageDevice(img) as dev:
        assert (dev.size, dev.logical_block_size) == (1 * MIB, 4096)
        same(dev.read(0, 4096), pattern(1, 4096))
        same(dev.read(8192, 4096), stale(8192, 4096))
        assert dev.volatile_ranges() == []
    meta = json.loads(Path(str(img) + ".dioconf").read_text())
    assert meta == {"magic": "dioconf-image", "version": 1, "size": MIB, "logical_block_size": 4096}
    with ImageDevice(img, 1 * MIB, logical_block_size=4096, create=False) as dev:
        same(dev.read(0, 4096), pattern(1, 4096))


def test_image_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.img"
    with pytest.raises(ImageError, match=r"missing\.img does not exist"):
        ImageDevice(missing, create=False)
    assert not missing.exists()

    foreign = tmp_path / "foreign.img"
    foreign.write_bytes(b"x" * 4096)
    with pytest.raises(ImageError, match=r"not a dioconf image \(no .*foreign\.img\.dioconf\)"):
        ImageDevice(foreign)
    assert foreign.read_bytes() == b"x" * 4096  # left alone

    img = tmp_path / "disk.img"
    ImageDevice(img, 64 * KIB).close()
    with pytest.raises(ImageError, match="already exists"):
        ImageDevice(img, create=True)
    with pytest.raises(ImageError, match=f"size {64 * KIB}, not the requested {128 * KIB}"):
        ImageDevice(img, 128 * KIB)
    with pytest.raises(ImageError, match="logical_block_size 512, not the requested 4096"):
        ImageDevice(img, logical_block_size=4096)
    with ImageDevice(img) as dev, pytest.raises(ImageError, match="in use"):
        ImageDevice(img)
    assert dev.closed

    with pytest.raises(DeviceError, match="logical_block_size 1000"):
        ImageDevice(tmp_path / "a.img", 64 * KIB, logical_block_size=1000)
    with pytest.raises(DeviceError, match="size 1000 must be"):
        ImageDevice(tmp_path / "b.img", 1000)
    assert not (tmp_path / "a.img").exists() and not (tmp_path / "b.img").exists()

    os.truncate(img, 60 * KIB)
    with pytest.raises(ImageError, match=f"is truncated: {60 * KIB} bytes, expected {64 * KIB}"):
        ImageDevice(img)

    bad = tmp_path / "bad.img"
    bad.write_bytes(b"")
    Path(str(bad) + ".dioconf").write_text('{"magic": "something else"}')
    with pytest.raises(ImageError, match="not a dioconf image"):
        ImageDevice(bad)


@pytest.mark.parametrize(
    ("addr", "length", "match"),
    [
        (100, 512, "addr 100 and length 512 must be multiples of the logical block size 512"),
        (0, 100, "length 100"),
        (-512, 512, "addr -512 and length 512 must be ints >= 0"),
        (0, -512, "addr 0 and length -512 must be ints >= 0"),
        (64 * KIB, 512, rf"\[{64 * KIB}, {64 * KIB + 512}\) is outside the device"),
        (63 * KIB, 2 * KIB, rf"outside the device \[0, {64 * KIB}\)"),
    ],
)
def test_bad_requests(img: Path, addr: int, length: int, match: str) -> None:
    with ImageDevice(img, 64 * KIB) as dev:
        with pytest.raises(DeviceError, match=match):
            dev.read(addr, length)
        if length >= 0:
            with pytest.raises(DeviceError, match=match):
                dev.write(addr, bytes(length))
        with pytest.raises(DeviceError, match=match):
            dev.durable_read(addr, length)
        assert dev.stats["reads"] == dev.stats["writes"] == 0


def test_use_after_close(img: Path) -> None:
    dev = ImageDevice(img, 64 * KIB)
    dev.close()
    dev.close()  # idempotent
    for call in (
        lambda: dev.read(0, 512),
        lambda: dev.write(0, bytes(512)),
        dev.flush,
        dev.crash,
        dev.volatile_ranges,
        lambda: dev.durable_read(0, 512),
    ):
        with pytest.raises(DeviceError, match="is closed"):
            call()


def test_close_removes_a_temporary_image_and_keeps_a_user_one(img: Path) -> None:
    with ImageDevice(size=64 * KIB) as tmp_dev:
        tmp_dir = tmp_dev.path.parent
        assert tmp_dev.path.exists()
        tmp_dev.write(0, pattern(1, 512))
    assert not tmp_dir.exists()

    with ImageDevice(img, 64 * KIB) as dev:
        dev.write(0, pattern(1, 512), fua=True)
    assert sorted(p.name for p in img.parent.iterdir()) == ["disk.img", "disk.img.dioconf"]
    assert img.stat().st_size == 64 * KIB


def test_no_fd_leaks(tmp_path: Path) -> None:
    before = open_fds()
    for i in range(3):
        with ImageDevice(tmp_path / f"{i}.img", 64 * KIB) as dev:
            dev.write(0, pattern(1, 4096))
            dev.flush()
            dev.read(0, 8192)
            dev.crash()
        with ImageDevice(tmp_path / f"{i}.img") as dev:
            dev.read(0, 512)
    dev = ImageDevice(size=64 * KIB)
    with pytest.raises(ImageError):
        ImageDevice(tmp_path / "0.img", 128 * KIB)
    del dev  # never closed: the finalizer releases it
    assert open_fds() == before


def test_sparse_image_uses_little_disk(img: Path) -> None:
    with ImageDevice(img, 64 * MIB) as dev:
        for addr in (0, 10 * MIB, 40 * MIB, 64 * MIB - 4096):
            dev.write(addr, pattern(1, 4096))
        dev.flush()
        dev.write(20 * MIB, pattern(2, 8192))
        same(dev.read(20 * MIB, 8192), pattern(2, 8192))
        overlay = Path(str(img) + ".cache")
        assert overlay.stat().st_blocks * 512 <= 256 * KIB
        assert img.stat().st_blocks * 512 <= 256 * KIB
        assert find_stale(dev.read(0, 64 * MIB), 0)[0] == (4096, 10 * MIB)
        dev.crash()  # frees the overlay's blocks (a flush keeps them for reuse)
        assert overlay.stat().st_blocks == 0
    assert img.stat().st_size == 64 * MIB and img.stat().st_blocks * 512 <= 256 * KIB


def test_large_transfers_span_many_segments(img: Path) -> None:
    with ImageDevice(img, 16 * MIB) as dev:
        big = pattern(5, 6 * MIB)
        dev.write(1 * MIB, big, fua=True)
        for k in range(0, 6 * MIB, 1536 * KIB):
            dev.write(1 * MIB + k + 512, pattern(6, 4096))
        expect = bytearray(stale(0, 8 * MIB))
        expect[1 * MIB : 7 * MIB] = big
        for k in range(0, 6 * MIB, 1536 * KIB):
            expect[1 * MIB + k + 512 : 1 * MIB + k + 4608] = pattern(6, 4096)
        same(dev.read(0, 8 * MIB), expect)
        dev.flush()
        dev.crash()
        same(dev.read(0, 8 * MIB), expect)


def test_concurrent_bios_with_flushes(img: Path) -> None:
    """Bios complete on several threads (the threaded scheduler): no write gets lost."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    errors: list[str] = []
    try:
        with ImageDevice(img, 4 * MIB) as dev:

            def worker(k: int) -> None:
                for i in range(100):
                    addr = (k * 100 + i) * 8192 + 512 * (i % 3)
                    dev.write(addr, pattern(k * 1000 + i, 1024), fua=i % 7 == 0)
                    if dev.read(addr, 1024) != pattern(k * 1000 + i, 1024):
                        errors.append(f"worker {k} lost its write at {addr}")

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
            for th in threads:
                th.start()
            while any(th.is_alive() for th in threads):
                dev.flush()
            for th in threads:
                th.join()
            dev.flush()
            dev.crash()
            for k in range(4):
                for i in range(100):
                    addr = (k * 100 + i) * 8192 + 512 * (i % 3)
                    same(dev.read(addr, 1024), pattern(k * 1000 + i, 1024))
    finally:
        sys.setswitchinterval(old)
    assert errors == []


def sector_runs(sectors: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted sector numbers as merged byte ranges."""
    out: list[tuple[int, int]] = []
    for sec in sorted(sectors):
        if out and out[-1][1] == sec * 512:
            out[-1] = (out[-1][0], sec * 512 + 512)
        else:
            out.append((sec * 512, sec * 512 + 512))
    return out


SMALL = 64 * KIB


class DeviceMachine(RuleBasedStateMachine):
    """Random write/FUA/flush/crash/reopen/read sequences against dicts of sectors."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="dioconf-test-"))
        self.current: dict[int, bytes] = {}  # sector -> contents: what reads return
        self.durable: dict[int, bytes] = {}  # what survives a crash
        self.volatile: set[int] = set()  # sectors written since they were last durable
        self.serial = 0

    @initialize(lbs=st.sampled_from([512, 4096]), write_cache=st.booleans(), fua=st.booleans())
    def open(self, lbs: int, write_cache: bool, fua: bool) -> None:
        self.lbs, self.cache, self.fua = lbs, write_cache, fua
        self.size = SMALL + 3 * lbs if lbs == 512 else SMALL  # 512: last fs block cut short
        self.dev = ImageDevice(
            self.dir / "d.img", self.size, logical_block_size=lbs, write_cache=write_cache, fua=fua
        )

    def teardown(self) -> None:
        if hasattr(self, "dev"):
            self.dev.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def blocks(self, first: int, count: int) -> tuple[int, int]:
        nblocks = self.size // self.lbs
        first %= nblocks
        return first * self.lbs, min(count, nblocks - first) * self.lbs

    def expected(self, contents: dict[int, bytes], addr: int, length: int) -> bytes:
        sectors = range(addr // 512, (addr + length) // 512)
        return b"".join(contents.get(sec, stale_sector(sec)) for sec in sectors)

    @rule(first=st.integers(0, 130), count=st.integers(1, 9), fua=st.booleans())
    def write(self, first: int, count: int, fua: bool) -> None:
        addr, length = self.blocks(first, count)
        self.serial += 1
        data = pattern(self.serial, length)
        self.dev.write(addr, data, fua=fua)
        sectors = range(addr // 512, (addr + length) // 512)
        for i, sec in enumerate(sectors):
            self.current[sec] = data[i * 512 : i * 512 + 512]
        if not self.cache or (fua and self.fua):
            self.durable.update((sec, self.current[sec]) for sec in sectors)
            self.volatile -= set(sectors)
        elif fua:  # FUA emulated by the block layer: the write, then a flush of everything
            self.flush_model()
        else:
            self.volatile |= set(sectors)

    def flush_model(self) -> None:
        self.durable = dict(self.current)
        self.volatile.clear()

    @rule()
    def flush(self) -> None:
        self.dev.flush()
        self.flush_model()

    @rule(reopen=st.booleans())
    def crash(self, reopen: bool) -> None:
        if reopen:  # close (volatile writes are dropped) and open the image again
            self.dev.close()
            self.dev = ImageDevice(self.dir / "d.img", write_cache=self.cache, fua=self.fua)
        else:
            self.dev.crash()
        self.current = dict(self.durable)
        self.volatile.clear()

    @rule(first=st.integers(0, 130), count=st.integers(1, 131))
    def read(self, first: int, count: int) -> None:
        addr, length = self.blocks(first, count)
        got = self.dev.read(addr, length)
        same(got, self.expected(self.current, addr, length))
        never = set(range(addr // 512, (addr + length) // 512)) - set(self.current)
        assert find_stale(got, addr) == sector_runs(never)
        same(self.dev.durable_read(addr, length), self.expected(self.durable, addr, length))

    @invariant()
    def volatile_ranges_match(self) -> None:
        assert self.dev.volatile_ranges() == sector_runs(self.volatile)


DeviceMachine.TestCase.settings = settings(
    DeviceMachine.TestCase.settings, stateful_step_count=30, deadline=None
)
test_device_matches_model = DeviceMachine.TestCase
