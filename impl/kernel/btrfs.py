"""btrfs maps file extents to *logical* addresses; btrfs_submit_bio maps those through
the chunk tree to device addresses. iomap's mappings (and so a trace's ``map`` lines)
carry the logical address while ``block_bio_queue`` shows the device address; this
reads the chunk tree so that the recorder can state mappings in device addresses."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable

Chunk = tuple[int, int, int]  # logical start, length, device offset (stripe 0)

ITEM = re.compile(r"key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)")
LENGTH = re.compile(r"^\s+length (\d+) owner \d+ stripe_len \d+ type (\S+)")
STRIPE = re.compile(r"^\s+stripe 0 devid \d+ offset (\d+)")


def parse_chunk_tree(text: str) -> list[Chunk]:
    """DATA chunks of ``btrfs inspect-internal dump-tree -t chunk`` output."""
    chunks: list[Chunk] = []
    logical = length = None
    data = False
    for line in text.splitlines():
        if m := ITEM.search(line):
            logical, length, data = int(m.group(1)), None, False
        elif (m := LENGTH.match(line)) and logical is not None:
            length, data = int(m.group(1)), m.group(2).startswith("DATA")
        elif (m := STRIPE.match(line)) and logical is not None and length and data:
            chunks.append((logical, length, int(m.group(1))))
            logical = None
    return chunks


def chunk_map(device: str) -> list[Chunk]:
    os.sync()  # chunks allocated during the run reach the chunk tree at commit
    out = subprocess.run(
        ["btrfs", "inspect-internal", "dump-tree", "-t", "chunk", device],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_chunk_tree(out.stdout)


def translator(chunks: list[Chunk]) -> Callable[[int], int]:
    def to_device(logical: int) -> int:
        for start, length, offset in chunks:
            if start <= logical < start + length:
                return offset + logical - start
        raise ValueError(f"btrfs logical address {logical} is in no DATA chunk")

    return to_device
