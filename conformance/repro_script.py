"""A standalone reproducer for any failure of ``dioconf run --kernel``.

``write_script`` writes a Python file (standard library and ctypes only) that formats a
scratch device (or a temporary loop device) as the run's target, performs the shrunk
operations with the same data, and prints BUG when what the failing operation left is
still not what the contract allows (``Failure.expect``), OK otherwise. Requests the run
had in flight together are performed one after the other; a failure that depends on
what freed blocks held (stale data) may need the run's history of deleted files and
print OK.
"""

from __future__ import annotations

import pprint
from pathlib import Path
from typing import Any

from .file_check import Failure
from .file_ops_gen import FILES, Op
from .repro_template import BODY, ENTRY


def _absolute(op: Op, base: int) -> dict[str, Any]:
    """``op`` as the script performs it: write ids as the run wrote them."""
    d = op.to_json()
    if op.wid:
        d["wid"] = base + op.wid
    if op.batch:
        d["batch"] = [_absolute(b, base) for b in op.batch]
    return d


def script_text(target: Any, ops: list[Op], failure: Failure, story: list[str]) -> str:
    from ..impl.kernel.fixture import MKFS
    from .catalogue import kernel_mkfs_options

    opts = kernel_mkfs_options(target.fs, target.geometry, target.sector_size)
    data = {
        "title": f"{failure.name} on {target.label}: {failure.message.splitlines()[0]}",
        "fs": target.fs,
        "mkfs": [*MKFS[target.fs], *opts],
        "losetup": [] if target.sector_size == 512 else ["--sector-size",
                                                         str(target.sector_size)],
        "nocow": target.fs == "btrfs" and target.geometry != "cow",
        "files": [f"f{i}" for i in range(FILES)],
        "ops": [_absolute(op, failure.wid_base) for op in ops],
        "story": [line.split(": ", 1)[-1] for line in story],
        "expect": failure.expect or {"kind": "result", "bad": None, "why": "unknown"},
    }  # fmt: skip
    head = (f'"""Reproduces {failure.name} ({target.label}), found by dioconf run --kernel.\n\n'
            f"{failure.message}\n\n"
            "Run as root: python3 THIS_FILE DEVICE (a scratch block device: it is "
            "reformatted)\nor python3 THIS_FILE --loop-image. Prints BUG or OK (exit 1/0).\n"
            '"""\n')  # fmt: skip
    literal = pprint.pformat(data, width=88, sort_dicts=False)
    return f"{head}{BODY.rstrip()}\n\n\nDATA = {literal}\n\n{ENTRY}"


def write_script(path: Path, target: Any, ops: list[Op], failure: Failure,
                 story: list[str]) -> Path:  # fmt: skip
    path.write_text(script_text(target, ops, failure, story))
    path.chmod(0o755)
    return path

