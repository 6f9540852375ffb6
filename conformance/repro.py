"""A failing run as a ready-to-run Python script: the harness, the operations, the check."""

from __future__ import annotations

from pathlib import Path

from .harness import ConformanceFailure
from .ops import __all__ as OP_NAMES

TEMPLATE = '''\
"""Reproduces a dioconf conformance failure ({kind}).

{first}

Run it with:  python3 {name}
It exits 1 (and prints the failure) while the problem is there, 0 once it is fixed.
"""

import sys

from dioconf.conformance.harness import ConformanceFailure, Harness
from dioconf.conformance.ops import {imports}  # noqa: F401
{plant_import}
CONFIG = {config!r}
OPS = [
{ops}
]


def main() -> int:
    with {plant_ctx}Harness(**CONFIG) as h:
        try:
            h.run(OPS)
            h.check_all()
        except ConformanceFailure as failure:
            print(failure)
            return 1
    print("no failure: the {kind} problem did not reproduce")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_repro(path: Path, failure: ConformanceFailure, plant: str | None = None) -> Path:
    """Write the script; returns its path."""
    names = sorted(OP_NAMES)
    first = failure.message.strip().splitlines()[0] if failure.message.strip() else ""
    text = TEMPLATE.format(
        kind=failure.kind,
        first=first.replace('"""', "'''"),
        name=path.name,
        imports=", ".join(names),
        plant_import=("from dioconf.conformance.bugs import planted\n" if plant else ""),
        plant_ctx=(f"planted({plant!r}), " if plant else ""),
        config=failure.config,
        ops="\n".join(f"    {op!r}," for op in failure.ops),
    )
    path.write_text(text, encoding="utf-8")
    return path
