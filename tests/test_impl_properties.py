"""Properties of every reference filesystem on random operation sequences:
data read back equals what was written, no read returns the stale pattern, an O_DSYNC
write acknowledged before a crash survives it, and the run's trace replays against the
model with no divergence."""

from __future__ import annotations

import pytest
from dioconf.impl.device import find_stale
from dioconf.impl.examples import ENGINES, FILESYSTEMS
from dioconf.impl.world import World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .impl_support import replays

KIB = 1024
SIZE = 128 * KIB

write_op = st.tuples(
    st.just("write"),
    st.integers(0, SIZE // 512 - 16).map(lambda b: b * 512),  # 512-aligned positions
    st.sampled_from([512, 1024, 4096, 8192, 16384]),
    st.sampled_from([(), ("DSYNC",), ("SYNC",)]),
    st.integers(0, 250),
)
read_op = st.tuples(
    st.just("read"),
    st.integers(0, SIZE // 4096 - 4).map(lambda b: b * 4096),
    st.sampled_from([4096, 16384]),
    st.just(()),
    st.just(0),
)


@pytest.mark.parametrize("fs_name", sorted(FILESYSTEMS))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          deadline=None)  # fmt: skip
@given(ops=st.lists(st.one_of(write_op, read_op), min_size=1, max_size=12),
       final=st.integers(0, SIZE // 4096 - 2).map(lambda b: b * 4096))  # fmt: skip
def test_reference_filesystem_properties(fs_name, ops, final, tmp_path_factory):
    fs = FILESYSTEMS[fs_name]
    image = tmp_path_factory.mktemp("img") / "img"
    with World(fs, image=image, size=16 << 20, engine=ENGINES.get(fs_name, "iomap")) as w:
        f = w.create()
        shadow = bytearray()
        for op, pos, length, flags, seed in ops:
            if op == "write":
                data = bytes((seed + i) % 256 for i in range(length))
                ret = w.pwrite(f, pos, data, flags=flags).ret
                if ret > 0:  # what direct I/O wrote (fallback cases write nothing)
                    end = pos + ret
                    shadow.extend(bytes(max(0, end - len(shadow))))
                    shadow[pos:end] = data[:ret]
            else:
                r = w.pread(f, pos, length)
                assert find_stale(r.data, 0) == [], "a read exposed stale data"
                want = bytes(shadow[pos : pos + len(r.data)])
                assert r.data == want + bytes(len(r.data) - len(want))
        # an O_DSYNC write acknowledged before a crash is still there after it
        marker = bytes((7 * i + 3) % 256 for i in range(4096))
        if f.size < final + 4096:
            w.fs.truncate(f, final + 4096)  # the marker overwrites, it does not extend
        if w.pwrite(f, final, marker, flags={"DSYNC"}).ret == 4096:
            w.crash()
            got = w.pread(f, final, 4096).data
            assert got == marker, "an acknowledged O_DSYNC write was lost in a crash"
        everything = w.pread(f, 0, max(f.size, 4096)).data
        assert find_stale(everything, 0) == [], "stale data after a crash"
        replays(w)
