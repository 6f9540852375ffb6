"""``dioconf bench quality``: does the conformance suite catch known engine bugs, and how
fast? One run of `conformance.bugs.quality_report` as a JSON-ready document.

For every planted bug (`conformance.bugs.BUGS`): caught or not, seconds until caught
(shrinking included), operations in the shrunk counterexample, the failure's kind, and
whether the saved trace alone replays with a divergence (``trace_diverges``; False
means only the file-level oracle saw the bug). Bugs the machine's strategies cannot
reach yet are listed under ``unreached`` with what would reach them.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

from ..conformance.bugs import BUGS, UNREACHED
from ..conformance.quality import quality_report


def run(profile: str = "ci", names: Sequence[str] | None = None, jobs: int | None = None,
        **run_args: Any) -> dict[str, Any]:  # fmt: skip
    """The quality report of ``names`` (default: every bug) under ``profile``, ``jobs``
    bugs at once (default: one per CPU). ``run_args`` go to `run_suite` (``examples``,
    ``seed``, ``image_dir``)."""
    jobs = jobs if jobs is not None else os.cpu_count() or 1
    start = time.perf_counter()
    rows = quality_report(profile, names, jobs=jobs, **run_args)
    seconds = time.perf_counter() - start
    caught = [r for r in rows if r["caught"]]
    return {
        "profile": profile,
        "jobs": jobs,
        "python": platform.python_version(),
        "bugs": len(rows),
        "caught": len(caught),
        "missed": [r["name"] for r in rows if not r["caught"]],
        "file_level_only": [r["name"] for r in caught if r["trace_diverges"] is False],
        "errors": {r["name"]: r["error"] for r in rows if r.get("error")},
        "unreached": {n: why for n, why in UNREACHED.items() if n in {r["name"] for r in rows}},
        "seconds": round(seconds, 2),
        "rows": [{**r, "summary": BUGS[r["name"]].summary} for r in rows],
    }


def main() -> None:  # pragma: no cover - a convenience for running it by hand
    import json
    import sys

    print(json.dumps(run(*(sys.argv[1:2] or ["ci"])), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
