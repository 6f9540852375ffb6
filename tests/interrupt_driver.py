"""Run ``dioconf record`` (or ``dioconf run --kernel``) and send a signal to its own
process group at the K-th Python call made in the code of impl/kernel and traces (and
conformance, for ``run``), optionally after a delay so
that it lands inside whatever runs then (a helper program, a system call).

    python3 tests/interrupt_driver.py K SIGNUM DELAY_S CALIBRATION_JSON -- ARGS...

K = 0 sends nothing and writes, to CALIBRATION_JSON, how many calls there were and at
which call each recorder function was first entered (the phases of a recording).
Used by tests/test_recorder_interrupts.py.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any


def main(argv: list[str]) -> int:
    k, signum, delay, calibration = int(argv[0]), int(argv[1]), float(argv[2]), argv[3]
    args = argv[5:]  # after "--"
    # our pid (which names the recorder's tracefs instance), for the leftover check
    Path(calibration).with_name("pid").write_text(str(os.getpid()))
    import dioconf.conformance as conformance
    import dioconf.impl.kernel as kernel
    import dioconf.traces as traces

    # the kernel runner's code is in conformance too; the recorder's phases are not
    packages = (kernel, traces, conformance) if args[:1] == ["run"] else (kernel, traces)
    roots = tuple(str(Path(p.__file__).parent) + os.sep for p in packages)
    count = 0
    first: dict[str, int] = {}
    timer: list[threading.Timer] = []

    def send() -> None:
        os.killpg(os.getpgrp(), signum)

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        nonlocal count
        if event != "call" or not frame.f_code.co_filename.startswith(roots):
            return
        count += 1
        if not k:
            key = f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"
            first.setdefault(key, count)
        elif count == k:
            sys.setprofile(None)
            if delay:
                t = threading.Timer(delay, send)
                t.daemon = True
                timer.append(t)
                t.start()
            else:
                send()

    from dioconf.cli import main as cli

    sys.setprofile(profile)
    code = cli(args)
    sys.setprofile(None)
    for t in timer:
        t.cancel()
    if not k:
        Path(calibration).write_text(json.dumps({"calls": count, "first": first}))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
