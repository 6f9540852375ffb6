"""Parse the text tracefs prints for the iomap and block events we record.

Formats are those of Linux 6.18 (``events/iomap/*/format``, ``block_bio_queue``); a
line that names one of our events but does not match its format is an error, not
silently skipped, so that a kernel whose format changed is noticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from attrs import frozen

NULL_ADDR = (1 << 64) - 1  # IOMAP_NULL_ADDR, printed for holes

# xfs's ->end_io for direct writes, then what it does for IOMAP_DIO_COW and _UNWRITTEN
XFS_END_IO_EVENTS = ("xfs_end_io_direct_write", "xfs_reflink_end_cow", "xfs_unwritten_convert")

# iomap_dio_done queues iomap_dio_complete_work for a completion run from its workqueue
WORK_FILTER = "function.function == iomap_dio_complete_work"

# "task-pid [cpu] irq-info timestamp: " before every event
PREFIX = (
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<irqinfo>\S+)\s+)?(?P<ts>\d+\.\d+):\s+"
)
LINE = re.compile(PREFIX + r"(?P<event>\w+):\s?(?P<body>.*)$")
# the irq-info column ("d.s1."): its third letter says the event ran in a hardirq (h),
# softirq (s), hardirq inside softirq (H) or NMI (z), whatever task it interrupted
IRQ_LETTERS = frozenset("hsHz")
# the syscalls events print themselves: "sys_pwrite64(fd: 3, buf: 0x.., count: 0x64,
# pos: 5)" on entry, "sys_pwrite64 -> 0x64" on exit (ret as an unsigned long)
SYSCALL_LINE = re.compile(
    PREFIX + r"(?P<call>sys_\w+)(?:\((?P<args>.*)\)| -> 0x(?P<ret>[0-9a-f]+))$"
)
SYSCALLS = ("pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2")
# what trace_pipe prints before a CPU's next event when its ring buffer lost some
# (print_trace_line: "CPU:%d [LOST %lu EVENTS]", or without a count when unknown)
LOST = re.compile(r"^CPU:(?P<cpu>\d+) \[LOST (?:(?P<count>\d+) )?EVENTS\]$")
H = "0x([0-9a-f]+)"
DEV = r"dev (\d+):(\d+) ino " + H
FORMATS = {
    "iomap_dio_rw_begin": re.compile(
        DEV + rf" size {H} offset {H} length {H} done_before {H} flags (\S*) "
        r"dio_flags (\S*) aio (\d+)$"
    ),
    "iomap_iter": re.compile(
        DEV + rf" pos {H} length {H} status (-?\d+) flags (\S*) \(0x[0-9a-f]+\) "
        r"ops \S+ caller (\S+)$"
    ),
    "iomap_iter_dstmap": re.compile(
        DEV + rf" bdev (\d+):(\d+) addr {H} offset {H} length {H} type (\w+) \(0x[0-9a-f]+\) "
        r"flags (\S*) \(0x[0-9a-f]+\)$"
    ),
    "iomap_dio_complete": re.compile(
        DEV + rf" size {H} offset {H} flags (\S*) aio (\d+) error (-?\d+) ret (-?\d+)$"
    ),
    "iomap_dio_rw_queued": re.compile(DEV + rf" size {H} offset {H} length {H}$"),
    "iomap_dio_invalidate_fail": re.compile(DEV + rf" size {H} offset {H} length {H}$"),
    "block_bio_queue": re.compile(r"^(\d+),(\d+) (\S+) (\d+) \+ (\d+) \[(.*)\]$"),
    # "%d,%d %s (%s) %llu + %u %s,%u,%u [%d]": dev, rwbs, cmd, sector, sectors, ioprio, error
    "block_rq_complete": re.compile(
        r"^(\d+),(\d+) (\S+) \((.*)\) (\d+) \+ (\d+) \S+ \[(-?\d+)\]$"
    ),
    # xfs_dio_write_end_io and the conversions it runs (DEFINE_SIMPLE_IO_EVENT)
    **{
        ev: re.compile(DEV + rf" isize {H} disize {H} pos {H} bytecount {H}$")
        for ev in XFS_END_IO_EVENTS
    },
    # mapping_set_error: the file had a writeback error (errseq: the value before it)
    "filemap_set_wb_err": re.compile(r"dev=(\d+):(\d+) ino=0x([0-9a-f]+) errseq=0x[0-9a-f]+$"),
    # only iomap_dio_complete_work's (WORK_FILTER)
    **dict.fromkeys(("workqueue_execute_start", "workqueue_execute_end"),
                    re.compile(r"^work struct \S+: function (\S+)$")),
    # lines the workload writes to trace_marker before each syscall
    "tracing_mark_write": re.compile(r"^dioconf: (\w+) (\S+) (\d+) (\d+) (\S*)$"),
}


@frozen
class Record:
    line: int  # line number in the tracefs text
    ts: float
    pid: int
    comm: str
    event: str
    f: dict[str, Any]
    irq: bool = False  # ran in interrupt context (the pid is the task it interrupted)


def _flags(text: str) -> frozenset[str]:
    return frozenset(t for t in text.split("|") if t)


def _fields(event: str, m: re.Match[str]) -> dict[str, Any]:
    g = m.groups()
    if event == "tracing_mark_write":
        return {"op": g[0], "file": g[1], "pos": int(g[2]), "len": int(g[3]),
                "flags": _flags(g[4])}  # fmt: skip
    if event.startswith("workqueue_execute"):
        return {"function": g[0]}
    if event == "filemap_set_wb_err":
        return {"dev": (int(g[0]), int(g[1])), "ino": int(g[2], 16)}
    if event == "block_rq_complete":
        return {
            "dev": (int(g[0]), int(g[1])),
            "rwbs": g[2],
            "sector": int(g[4]),
            "sectors": int(g[5]),
            "error": int(g[6]),
        }
    if event == "block_bio_queue":
        return {
            "dev": (int(g[0]), int(g[1])),
            "rwbs": g[2],
            "sector": int(g[3]),
            "sectors": int(g[4]),
        }
    base = {"dev": (int(g[0]), int(g[1])), "ino": int(g[2], 16)}
    rest = g[3:]
    if event == "iomap_dio_rw_begin":
        keys = ("size", "offset", "length", "done_before")
        base.update({k: int(v, 16) for k, v in zip(keys, rest[:4], strict=True)})
        base.update(flags=_flags(rest[4]), dio_flags=_flags(rest[5]), aio=rest[6] == "1")
    elif event == "iomap_iter":
        base.update(
            pos=int(rest[0], 16), status=int(rest[2]), flags=_flags(rest[3]), caller=rest[4]
        )
    elif event == "iomap_iter_dstmap":
        addr = int(rest[2], 16)
        base.update(
            addr=None if addr == NULL_ADDR else addr,
            offset=int(rest[3], 16),
            length=int(rest[4], 16),
            type=rest[5],
            flags=_flags(rest[6]),
        )
    elif event == "iomap_dio_complete":
        base.update(
            size=int(rest[0], 16),
            offset=int(rest[1], 16),
            flags=_flags(rest[2]),
            aio=rest[3] == "1",
            error=int(rest[4]),
            ret=int(rest[5]),
        )
    elif event in XFS_END_IO_EVENTS:
        base.update(pos=int(rest[2], 16), count=int(rest[3], 16))
    else:  # range events
        base.update(size=int(rest[0], 16), offset=int(rest[1], 16), length=int(rest[2], 16))
    return base


class TraceTextError(ValueError):
    pass


def parse_records(lines: Iterable[str]) -> Iterator[Record]:
    """Records of the events in FORMATS; comments and other events are skipped. A
    ``[LOST n EVENTS]`` line becomes a ``lost`` record placed at that CPU's next event,
    with ``since``: the time of the CPU's event before the loss (0.0: none)."""
    last: dict[int, float] = {}  # cpu -> time of its latest event
    lost: dict[int, tuple[int, int]] = {}  # cpu -> (line, count) of a loss not placed yet
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = LINE.match(line)
        if not m and (sc := SYSCALL_LINE.match(line)) is not None:
            yield _syscall_record(n, sc)
            continue
        if not m:
            gap = LOST.match(line.strip())
            if gap is None:
                raise TraceTextError(f"tracefs line {n}: unrecognised line: {line.strip()!r}")
            count = int(gap["count"]) if gap["count"] else 1  # at least one
            cpu = int(gap["cpu"])
            lost[cpu] = (n, lost.get(cpu, (n, 0))[1] + count)
            continue
        ts, cpu = float(m["ts"]), int(m["cpu"])
        if cpu in lost:
            where, count = lost.pop(cpu)
            yield Record(where, ts, -1, "", "lost",
                         {"cpu": cpu, "count": count, "since": last.get(cpu, 0.0)})  # fmt: skip
        last[cpu] = ts
        event = m["event"]
        fmt = FORMATS.get(event)
        if fmt is None:
            continue
        whole = event.startswith(("block", "tracing", "workqueue"))
        body = fmt.match(m["body"]) if whole else fmt.search(m["body"])
        if body is None and event == "tracing_mark_write":
            continue  # somebody else's marker
        if body is None:
            raise TraceTextError(f"tracefs line {n}: {event} in an unknown format: {m['body']!r}")
        info = m["irqinfo"] or ""
        irq = len(info) >= 3 and info[2] in IRQ_LETTERS
        yield Record(n, ts, int(m["pid"]), m["comm"], event, _fields(event, body), irq)
    for cpu, (where, count) in sorted(lost.items()):  # lost at the very end
        yield Record(where, float("inf"), -1, "", "lost",
                     {"cpu": cpu, "count": count, "since": last.get(cpu, 0.0)})  # fmt: skip


def _syscall_record(n: int, m: re.Match[str]) -> Record:
    """sys_enter (with ``call``) or sys_exit (with ``call`` and ``ret``, signed)."""
    call = m["call"].removeprefix("sys_")
    if m["ret"] is None:
        return Record(n, float(m["ts"]), int(m["pid"]), m["comm"], "sys_enter", {"call": call})
    ret = int(m["ret"], 16)
    ret = ret - (1 << 64) if ret >= 1 << 63 else ret
    return Record(n, float(m["ts"]), int(m["pid"]), m["comm"], "sys_exit",
                  {"call": call, "ret": ret})  # fmt: skip


def rwbs(text: str) -> dict[str, bool | str]:
    """Decode block layer rwbs: leading F = PREFLUSH, op letter, then F = FUA, S, M..."""
    preflush = text.startswith("F")
    rest = text[1:] if preflush else text
    op = rest[:1]
    tail = rest[1:]
    return {
        "preflush": preflush,
        "op": {"R": "read", "W": "write", "D": "discard", "N": "none"}.get(op, op),
        "fua": "F" in tail,
        "meta": "M" in tail,
        "sync": "S" in tail,
    }
