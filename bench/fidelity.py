"""``dioconf bench fidelity``: which model rules do the recorded kernel traces pin down?

Every mutation of ``bench/mutations.py`` changes one rule of the model. Each is applied
as a text replacement to a copy of the sources (the ``dioconf`` package with ``model``,
``traces`` and the replay worker, laid out as installed, in a temporary folder; nothing
is installed), and the copy replays every trace under ``traces/kernel`` and, for
comparison, ``traces/hand``, in a subprocess (``bench/fidelity_worker.py``) whose
``sys.path`` starts with the copy. A mutation is *killed* by a corpus when at least one
of its traces diverges (or the mutated model raises); a *survivor* of the kernel traces
is a rule they cannot tell from its mutation, reported with the mutation's reason.

The sources are copied once, at the start, so that every mutant (and the unmutated
baseline) starts from the same text even while the working tree changes. Traces the
unmutated copy does not replay clean are left out of both corpora and listed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dioconf

from .. import bench as _bench
from .. import model as _model
from .. import traces as _traces
from .mutations import MUTATIONS, Mutation

Corpora = dict[str, list[str]]
WORKER = "dioconf.bench.fidelity_worker"
TIMEOUT = 300  # seconds for one replay of both corpora (it takes about one)


class FidelityError(Exception):
    """A copy that cannot be mutated or replayed (stale snippet, worker failure)."""


def source_dirs() -> dict[str, Path]:
    """Where the sources of each part of the package are ('' is ``dioconf`` itself)."""
    return {
        "": Path(dioconf.__path__[0]),
        "model": Path(_model.__path__[0]),
        "traces": Path(_traces.__path__[0]),
        "bench": Path(_bench.__path__[0]),
    }


def source_file(rel: str) -> Path:
    """The live source file of a catalogue path such as ``model/iomap.py``."""
    part, _, name = rel.partition("/")
    return source_dirs()[part] / name


def snapshot(dest: Path) -> Path:
    """Copy what a replay needs into ``dest/dioconf`` (as installed); returns ``dest``."""
    for part, src in source_dirs().items():
        out = dest / "dioconf" / part
        out.mkdir(parents=True, exist_ok=True)
        if part == "":
            shutil.copy2(src / "__init__.py", out / "__init__.py")
        elif part == "bench":
            for name in ("__init__.py", "fidelity_worker.py"):
                shutil.copy2(src / name, out / name)
        else:
            for f in src.glob("*.py"):
                shutil.copy2(f, out / f.name)
    return dest


def mutated_text(text: str, m: Mutation) -> str:
    """``text`` with the mutation applied (FidelityError unless ``old`` occurs once)."""
    n = text.count(m.old)
    if n != 1:
        raise FidelityError(f"{m.name}: its snippet occurs {n} times in {m.file}, not once")
    return text.replace(m.old, m.new)


def apply(root: Path, m: Mutation) -> None:
    """Apply ``m`` to the copy at ``root``."""
    path = root / "dioconf" / m.file
    path.write_text(mutated_text(path.read_text(), m))


def corpora() -> Corpora:
    """The recorded kernel traces and the hand-written ones."""
    base = Path(_traces.__path__[0])
    return {
        "kernel": sorted(str(f) for f in (base / "kernel").rglob("*.jsonl")),
        "hand": sorted(str(f) for f in (base / "hand").glob("*.jsonl")),
    }


def replay_in(root: Path, files: Corpora, timeout: float = TIMEOUT) -> dict[str, list[dict]]:
    """Replay ``files`` with the model of the copy at ``root``, in a subprocess: for each
    corpus, the files that diverged."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    job = json.dumps({"root": str(root), "corpora": files})
    try:
        proc = subprocess.run(
            [sys.executable, "-m", WORKER], input=job, capture_output=True, text=True,
            cwd=root, env=env, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise FidelityError(f"the replay took more than {timeout} s") from None
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise FidelityError(f"worker exit {proc.returncode}: {' | '.join(tail)}")
    return json.loads(proc.stdout)


def _first(bad: list[dict], base: Path) -> dict[str, Any] | None:
    if not bad:
        return None
    row = bad[0]
    f = Path(row["path"])
    path = str(f.relative_to(base)) if f.is_relative_to(base) else str(f)
    if "crash" in row:
        return {"path": path, "crash": row["crash"]}
    d = row["divergence"]
    keys = ("line", "req", "trace_says", "model_predicts", "rule")
    return {"path": path, **{k: d[k] for k in keys}}


def run_mutant(m: Mutation | None, base: Path, work: Path, files: Corpora) -> dict[str, Any]:
    """Replay ``files`` with ``m`` applied to a copy of the snapshot ``base`` (``None``:
    unmutated); one row of the report."""
    name = m.name if m else "identity"
    root = work / name
    shutil.copytree(base, root)
    row: dict[str, Any] = {"name": name}
    if m is not None:
        row.update(rule=m.rule, seed=m.seed, file=m.file)
    try:
        if m is not None:
            apply(root, m)
        bad = replay_in(root, files)
    except FidelityError as exc:
        return {**row, "error": str(exc)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    traces_dir = Path(_traces.__path__[0])
    for corpus in files:
        row[f"killed_by_{corpus}"] = bool(bad[corpus])
        row[f"{corpus}_traces_diverging"] = len(bad[corpus])
        row[f"first_{corpus}_divergence"] = _first(bad[corpus], traces_dir)
    return row


def run(names: Sequence[str] | None = None, jobs: int | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """The fidelity report of the mutations ``names`` (default: all), ``jobs`` at once."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    chosen = [m for m in MUTATIONS if names is None or m.name in names]
    unknown = sorted(set(names or ()) - {m.name for m in chosen})
    if unknown:
        raise FidelityError(f"unknown mutations: {', '.join(unknown)}")
    jobs = jobs or os.cpu_count() or 1
    start = time.perf_counter()
    files = corpora()
    with tempfile.TemporaryDirectory(prefix="dioconf-fidelity-") as tmp:
        base = snapshot(Path(tmp) / "base")
        baseline = replay_in(base, files)
        left_out = {c: [Path(r["path"]).name for r in bad] for c, bad in baseline.items() if bad}
        clean = {c: [f for f in fs if f not in {r["path"] for r in baseline[c]}]
                 for c, fs in files.items()}  # fmt: skip
        say(f"fidelity: {len(chosen)} mutations x {sum(map(len, clean.values()))} traces, "
            f"{jobs} at once")  # fmt: skip
        rows: list[dict[str, Any]] = []

        def one(m: Mutation) -> dict[str, Any]:
            row = run_mutant(m, base, Path(tmp), clean)
            rows.append(row)
            if "error" in row:
                say(f"[{len(rows)}/{len(chosen)}] {m.name}: ERROR {row['error']}")
            else:
                word = {True: "killed", False: "survived"}
                k, h = word[row["killed_by_kernel"]], word[row["killed_by_hand"]]
                say(f"[{len(rows)}/{len(chosen)}] {m.name}: kernel {k}, hand {h}")
            return row

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            ordered = list(pool.map(one, chosen))
    return _report(chosen, ordered, clean, left_out, jobs, time.perf_counter() - start)


def _report(
    chosen: list[Mutation],
    rows: list[dict[str, Any]],
    clean: Corpora,
    left_out: dict[str, list[str]],
    jobs: int,
    seconds: float,
) -> dict[str, Any]:
    by_name = {m.name: m for m in chosen}
    ok = [r for r in rows if "error" not in r]
    survivors = [r for r in ok if not r["killed_by_kernel"]]
    killed = len(ok) - len(survivors)
    return {
        "kernel_traces": len(clean["kernel"]),
        "hand_traces": len(clean["hand"]),
        "left_out_unmutated_diverging": left_out,
        "total": len(ok),
        "killed": killed,
        "killed_by_hand": sum(r["killed_by_hand"] for r in ok),
        "killed_by_either": sum(r["killed_by_kernel"] or r["killed_by_hand"] for r in ok),
        "kernel_kill_ratio": round(killed / len(ok), 3) if ok else None,
        # survivors whose rule this machine cannot run at all, and the ratio without them
        "out_of_reach": {
            need: sorted(r["name"] for r in survivors if by_name[r["name"]].needs == need)
            for need in sorted({by_name[r["name"]].needs for r in survivors} - {""})
        },
        "kernel_kill_ratio_within_reach": (
            round(killed / reachable, 3)
            if (reachable := len(ok) - sum(bool(by_name[r["name"]].needs) for r in survivors))
            else None
        ),
        "survivors": [
            {
                "name": r["name"],
                "rule": r["rule"],
                "seed": r["seed"],
                "reason": by_name[r["name"]].blind or "(no reason written: see bench/mutations.py)",
                "needs": by_name[r["name"]].needs,
                "killed_by_hand": r["killed_by_hand"],
            }
            for r in survivors
        ],
        "hand_survivors": [r["name"] for r in ok if not r["killed_by_hand"]],
        "errors": {r["name"]: r["error"] for r in rows if "error" in r},
        "jobs": jobs,
        "seconds": round(seconds, 2),
        "mutations": rows,
    }
