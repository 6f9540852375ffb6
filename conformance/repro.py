"""A failing run as a ready-to-run Python script: the harness, the operations, the check.

A run over a third-party filesystem (``dioconf check pkg.module:factory``) names its
factory: the script imports it and builds the harness on it, with the callbacks checked
(`conformance.contract`) as they were in the run (``run_combo(repro_factory=...)``).
"""

from __future__ import annotations

import re
from pathlib import Path

from .failure import ConformanceFailure
from .ops import __all__ as OP_NAMES

TEMPLATE = '''\
"""Reproduces a dioconf conformance failure ({kind}).

{first}

Operations (shrunk):
{story}

Run it with:  python3 {name}
It exits 1 (and prints the failure) while the problem is there, 0 once it is fixed.
"""

import sys
import traceback

from dioconf.conformance.harness import ConformanceFailure, Harness
from dioconf.conformance.ops import {imports}  # noqa: F401
{plant_import}{factory_import}
CONFIG = {config!r}
{factory_config}OPS = [
{ops}
]


def main() -> int:
    with {plant_ctx}Harness(**CONFIG) as h:
        try:
            h.run(OPS)
            h.check_all()
        except ConformanceFailure as failure:
            if failure.kind == "crash" and failure.__cause__ is not None:
                traceback.print_exception(failure.__cause__)  # where the code raised
            print(failure)
            return 1
    print("no failure: the {kind} problem did not reproduce")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _factory_lines(spec: str, path_dir: str | None) -> tuple[str, str]:
    """The script's import of the factory, and the line that plugs it into CONFIG."""
    module, _, attr = spec.partition(":")
    lines = ["from dioconf.conformance.contract import checked"]
    if path_dir is not None:
        lines.insert(0, f"sys.path.insert(0, {path_dir!r})  # where the factory was imported from")
    if re.fullmatch(r"[A-Za-z_][\w.]*", module) and attr.isidentifier():
        alias = "" if attr == "factory" else " as factory"
        lines.append(f"from {module} import {attr}{alias}")
    else:
        lines += ["from dioconf.conformance.check import load_factory", "",
                  f"factory = load_factory({spec!r})"]  # fmt: skip
    config = 'CONFIG["fs_factory"] = checked(factory)  # the callbacks checked, as in the run\n'
    return "\n".join(lines) + "\n", config


def write_repro(path: Path, failure: ConformanceFailure, plant: str | None = None,
                factory: str | None = None, path_dir: str | None = None) -> Path:  # fmt: skip
    """Write the script; returns its path. ``factory`` ("pkg.module:attr", importable
    once ``path_dir`` is on sys.path) builds the filesystem instead of the reference one
    the failure's harness names."""
    names = sorted(OP_NAMES)
    first = failure.message.strip().splitlines()[0] if failure.message.strip() else ""
    factory_import, factory_config = _factory_lines(factory, path_dir) if factory else ("", "")
    story = "\n".join(f"  {i + 1:3}. {op.describe()}" for i, op in enumerate(failure.ops))
    text = TEMPLATE.format(
        kind=failure.kind,
        first=first.replace('"""', "'''"),
        story=story.replace('"""', "'''"),
        name=path.name,
        imports=", ".join(names),
        plant_import=("from dioconf.conformance.bugs import planted\n" if plant else ""),
        factory_import=factory_import,
        plant_ctx=(f"planted({plant!r}), " if plant else ""),
        config=failure.config,
        factory_config=factory_config,
        ops="\n".join(f"    {op!r}," for op in failure.ops),
    )
    path.write_text(text, encoding="utf-8")
    return path
