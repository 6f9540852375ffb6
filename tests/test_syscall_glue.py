"""The system call around the engine (model/syscall_glue.py), and its ``syscall`` lines
in traces: validated by the reader, compared by the replay."""

from __future__ import annotations

import json

import pytest
from dioconf.model.syscall_glue import syscall_result
from dioconf.traces.format import TraceFormatError, parse_trace
from dioconf.traces.replay import replay_trace

ENOTBLK, EFAULT, EAGAIN = -15, -14, -11  # (and -5: EIO)


@pytest.mark.parametrize("fs, op, nowait, results, ret", [
    ("xfs", "write", False, [8192], 8192),  # xfs_file_dio_write: short stays short
    ("ext4", "write", False, [8192], 16384),  # ext4: a buffered write finishes it
    ("ext4", "write", False, [0], 16384),
    ("xfs", "write", False, [ENOTBLK], 16384),  # buffered write of it all
    ("ext4", "write", False, [ENOTBLK], 16384),
    ("ext4", "write", True, [ENOTBLK], None),  # NOWAIT buffered: not the model's to say
    ("ext4", "write", True, [4096], None),
    ("xfs", "write", False, [EAGAIN, 16384], 16384),  # the retry after OVERWRITE_ONLY
    ("ext4", "write", False, [EFAULT], EFAULT),
    ("ext4", "read", False, [8192], 8192),  # short reads stay short on both
    ("xfs", "read", False, [0], 0),
])  # fmt: skip
def test_glue(fs, op, nowait, results, ret):
    assert syscall_result(fs, op, 16384, nowait, results).ret == ret


@pytest.mark.parametrize("op, nowait, results, i_size, ret", [
    ("write", False, [8192, 16384], 1 << 20, 16384),  # the retry's result is cumulative
    ("write", False, [8192], 1 << 20, 16384),  # a buffered write finishes it
    ("write", False, [8192, EFAULT], 1 << 20, 16384),  # no progress: -ENOTBLK, buffered
    ("write", True, [4096], 1 << 20, EAGAIN),  # NOWAIT: no buffered fallback (L913-921)
    ("write", False, [-5], 1 << 20, -5),
    ("read", False, [8192, 16384], 1 << 20, 16384),
    ("read", False, [8192], 1 << 20, 16384),  # btrfs_file_read_iter reads the rest...
    ("read", False, [8192], 12288, 12288),  # ...up to EOF
    ("read", False, [8192], 8192, 8192),  # at EOF: nothing more
    ("read", False, [8192, EFAULT], 1 << 20, 16384),  # the bytes read, then buffered
    ("read", False, [-5], 1 << 20, -5),
    ("read", False, [10000, 0], 10000, 10000),  # the last positive result counts
    ("read", True, [8192], 1 << 20, None),  # a NOWAIT buffered rest: not the model's
])  # fmt: skip
def test_btrfs_glue(op, nowait, results, i_size, ret):
    """btrfs_direct_write / btrfs_direct_read (seed btrfs-direct-io.c) and
    btrfs_file_read_iter, for 16 KiB at offset 0."""
    assert syscall_result("btrfs", op, 16384, nowait, results, 0, i_size).ret == ret


def test_no_glue_for_other_filesystems_or_without_requests():
    with pytest.raises(ValueError, match="no system call glue"):
        syscall_result("f2fs", "write", 4096, False, [4096])
    with pytest.raises(ValueError, match="without a direct I/O request"):
        syscall_result("xfs", "write", 4096, False, [])


HEADER = {"format": "dioconf-trace", "version": 1, "engine": "iomap", "fs": "ext4",
          "geometry": {"fs_block_size": 4096, "logical_block_size": 512, "page_size": 4096,
                       "write_cache": True, "fua": False}}  # fmt: skip
WRITE = [
    {"ev": "file", "i_size": 65536},
    {"ev": "begin", "req": 1, "op": "write", "pos": 0, "len": 8192, "done_before": 0,
     "iocb": [], "dio": [], "sync": True},
    {"ev": "map", "req": 1, "offset": 0, "length": 65536, "type": "MAPPED", "flags": [],
     "addr": 1048576},
    {"ev": "bio", "req": 1, "op": "write", "addr": 1048576, "len": 8192, "fua": False},
    {"ev": "complete", "req": 1, "ret": 8192},
]  # fmt: skip


def _trace(lines, fs="ext4"):
    text = [json.dumps({**HEADER, "fs": fs}), *(json.dumps(x) for x in lines)]
    return parse_trace(text, "t.jsonl")


def test_a_syscall_line_agreeing_with_the_glue_replays():
    line = {"ev": "syscall", "req": 1, "ret": 8192, "len": 8192, "reqs": [1]}
    assert replay_trace(_trace([*WRITE, line])).ok


def test_a_syscall_result_the_glue_does_not_give_diverges_on_ret():
    line = {"ev": "syscall", "req": 1, "ret": -14, "len": 16384, "reqs": [1]}
    d = replay_trace(_trace([*WRITE, line])).divergence
    assert d is not None and d.field == "ret" and d.line == 7
    assert d.model_predicts == "syscall ret=16384"
    assert d.rule == "ext4_dio_write_iter: a buffered write finishes it"


def test_a_request_that_returned_early_is_finished_at_its_syscall_line():
    """A read at EOF returns 0 before any mapping: no complete line is traced; the
    system call's line says what it returned."""
    read = {"ev": "begin", "req": 2, "op": "read", "pos": 65536, "len": 4096,
            "done_before": 0, "iocb": [], "dio": [], "sync": True,
            "observed": ["bio", "queued"]}  # fmt: skip
    ok = {"ev": "syscall", "req": 2, "ret": 0, "len": 4096, "reqs": [2]}
    assert replay_trace(_trace([*WRITE, read, ok], fs="xfs")).ok
    bad = replay_trace(_trace([*WRITE, read, {**ok, "ret": 4096}], fs="xfs")).divergence
    assert bad is not None and bad.req == 2 and bad.model_predicts == "syscall ret=0"


def test_a_syscall_line_for_a_filesystem_without_glue_is_a_contract_divergence():
    line = {"ev": "syscall", "req": 1, "ret": 8192, "len": 8192, "reqs": [1]}
    d = replay_trace(_trace([*WRITE, line], fs="f2fs")).divergence
    assert d is not None and d.rule == "model contract" and "f2fs" in d.model_predicts


@pytest.mark.parametrize("line, message", [
    ({"ev": "syscall", "req": 1, "ret": 0, "len": 1, "reqs": [1, 3]}, "must be its req"),
    ({"ev": "syscall", "req": 3, "ret": 0, "len": 1, "reqs": [3]}, r'before its "begin"'),
    ({"ev": "syscall", "req": 1, "ret": 0, "len": 1, "reqs": []}, "non-empty list"),
    ({"ev": "syscall", "req": 1, "ret": 0, "len": 1, "reqs": [1, 1]}, "listed twice"),
    ({"ev": "syscall", "req": 1, "ret": 0, "reqs": [1]}, "len"),
])  # fmt: skip
def test_bad_syscall_lines_are_refused(line, message):
    with pytest.raises(TraceFormatError, match=message):
        _trace([*WRITE, line])


@pytest.mark.parametrize(("fs", "results", "fault_at", "ret"), [
    ("ext4", [8192], 8192, -14),  # the buffered rest faults at once: its error
    ("ext4", [4096], 12288, 12288),  # it copies up to the fault
    ("ext4", [-15], 0, -14),  # -ENOTBLK, then the buffered write faults at once
    ("xfs", [-15], 8192, 8192),
    ("btrfs", [4096, -14], 4096, -14),  # retried, no progress: the buffered rest faults
    ("btrfs", [4096, -15], 8192, 8192),
])  # fmt: skip
def test_a_buffered_rest_stops_at_the_buffers_fault(fs, results, fault_at, ret):
    """ext4_dio_write_iter / btrfs_direct_write: the buffered write of the rest reads
    the same user buffer; generic_perform_write returns -EFAULT when it copies nothing,
    and that error is the system call's result ("if (err < 0) return err")."""
    assert syscall_result(fs, "write", 16384, False, results, fault_at=fault_at).ret == ret
