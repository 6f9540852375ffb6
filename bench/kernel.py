"""``dioconf bench kernel``: the kernel runner's speed, as ratios taken in one run.

On one freshly made filesystem (xfs by default): the same seeded operation lists
performed three ways — raw (the same syscalls through the kernel backend, no oracle, no
read-back), checked (``--fast``: every result, size and touched range checked against
the oracle) — and the Hypothesis runner's steps/s; every known finding allowed, so that
runs go to their end.
"""

from __future__ import annotations

import time
from typing import Any


def run(fs: str = "xfs", runs: int = 10, ops: int = 500, examples: int = 200) -> dict[str, Any]:
    from ..conformance.fast import _Runs, run_seed
    from ..conformance.file_check import FileRun, perform_unchecked
    from ..conformance.file_hyp import run_hypothesis
    from ..conformance.file_ops_gen import draw_ops
    from ..conformance.findings import FINDINGS
    from ..impl.kernel.backend import KernelBackend
    from ..impl.kernel.cleanup import signals_raise
    from ..impl.kernel.fixture import default_image_dir, kernel_fs

    allow = frozenset(FINDINGS) | {f"unexplained-{k}" for k in
                                   ("result", "size", "mismatch", "stale", "lost")}  # fmt: skip
    where = default_image_dir()  # as dioconf run --kernel puts its images
    with signals_raise(), kernel_fs(fs, workdir=where) as m:
        b = KernelBackend(m)
        try:
            lists = [draw_ops(run_seed(1, r), ops, b.caps) for r in range(runs)]
            performer = _Runs(b, allow)

            def raw(todo: list[Any]) -> Any:
                def perform(run: FileRun) -> None:
                    for op in todo:
                        perform_unchecked(run, op)

                return perform

            t0 = time.perf_counter()
            for todo in lists:
                performer.run_with(raw(todo))
            raw_s = time.perf_counter() - t0
            syscalls_raw = b.syscalls
            t0 = time.perf_counter()
            steps = 0
            for todo in lists:
                _, r = performer.perform(todo)
                steps += r.steps
            checked_s = time.perf_counter() - t0
            syscalls_checked = b.syscalls - syscalls_raw
            hyp = run_hypothesis(b, seed=0, examples=examples, ops=100, derandomize=True,
                                 allow=allow)  # fmt: skip
        finally:
            b.close()
    total = runs * ops
    return {
        "fs": fs, "image_dir": str(where or "temporary directory"), "operations": total,
        "raw_ops_per_s": round(total / raw_s),
        "checked_ops_per_s": round(steps / checked_s),
        "checked_steps": steps,
        "checked_over_raw": round((steps / checked_s) / (total / raw_s), 3),
        "syscalls_per_op_raw": round(syscalls_raw / total, 2),
        "syscalls_per_op_checked": round(syscalls_checked / max(steps, 1), 2),
        "hypothesis_steps_per_s": round(hyp.steps / hyp.seconds) if hyp.seconds else 0,
        "hypothesis_steps": hyp.steps,
    }  # fmt: skip
