"""Subprocess side of ``dioconf bench fidelity``: replay trace files, report divergences.

Run as ``python3 -m dioconf.bench.fidelity_worker`` inside a copied (and possibly
mutated) source tree, with that tree first on ``sys.path``. Reads a JSON job from stdin:
``{"root": TREE, "corpora": {NAME: [FILE, ...]}}``; writes JSON to stdout: for each
corpus, the files that diverged (``divergence``) or made the model raise (``crash``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def replay_all(files: list[str]) -> list[dict[str, Any]]:
    """The files that do not replay clean, each with its first divergence (or crash)."""
    from ..traces.replay import replay_file

    bad: list[dict[str, Any]] = []
    for f in files:
        try:
            result = replay_file(f)
        except Exception as exc:  # a mutant may break the model itself: that kills it too
            bad.append({"path": f, "crash": f"{type(exc).__name__}: {exc}"})
            continue
        if result.divergence is not None:
            bad.append({"path": f, "divergence": result.divergence.to_dict()})
    return bad


def main() -> int:
    job = json.load(sys.stdin)
    from .. import model

    here = Path(model.__path__[0]).resolve()
    if not here.is_relative_to(Path(job["root"]).resolve()):  # an installed dioconf won
        print(f"fidelity worker: imported the model from {here}, not the copy", file=sys.stderr)
        return 2
    json.dump({name: replay_all(files) for name, files in job["corpora"].items()}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
