"""Acquire machine resources (temporary directories, loop devices, mounts, tracefs
instances) so that every one is released again, whenever a signal comes.

Two rules close the windows between acquiring a resource and registering its release:

- a resource whose identity is known beforehand (the loop devices backing *our* image,
  whatever is mounted on *our* mount point) gets an idempotent release registered
  first, then is acquired;
- a resource named only by its acquisition (``mkdtemp``'s name, the old value of a sysfs
  switch) is acquired and registered inside ``critical()``, where stop signals are
  deferred to its end.

``Undo.close()`` releases in reverse order, itself inside ``critical()`` (a second
Ctrl-C cannot cut a release in half), retries each step, and raises ``CleanupFailed``
naming every step it could not complete. Helper programs run in their own session, so a
signal sent to the terminal's process group never kills ``losetup`` or ``umount`` halfway.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any, TypeVar

T = TypeVar("T")
F = TypeVar("F")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RETRIES = 3
RETRY_WAIT = 0.2  # seconds between attempts (a busy mount is released by a closing fd)


class CleanupFailed(RuntimeError):
    """Some resources could not be released; ``steps`` names each, with the reason."""

    def __init__(self, steps: list[str]) -> None:
        super().__init__("could not undo: " + "; ".join(steps))
        self.steps = steps


class _Signals:
    """Stop signals received, and how deep in ``critical()`` sections the main thread is."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: int | None = None
        self.received: int | None = None  # the first stop signal since installed
        self.installed = 0  # nesting of signals_raise()

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if self.depth or _releasing(frame):
            self.pending = self.pending or signum
            return
        _raise_for(signum)


STATE = _Signals()

# Code that releases resources. A signal that arrives while any of it is on the stack is
# deferred, whichever bytecode it lands on: also at the very first instruction of a
# release function, or in ``contextlib``'s ``__exit__`` before it resumes one of the
# generators below, where no ``critical()`` section could have been entered yet.
RELEASING: set[CodeType] = set()
_CM_EXIT = contextlib._GeneratorContextManager.__exit__.__code__


def releasing(fn: F) -> F:
    """Mark ``fn`` (a function or generator function) as release code."""
    RELEASING.add(fn.__code__)  # type: ignore[attr-defined]
    return fn


def _releasing(frame: FrameType | None) -> bool:
    while frame is not None:
        code = frame.f_code
        if code in RELEASING:
            return True
        if code is _CM_EXIT:
            gen = getattr(frame.f_locals.get("self"), "gen", None)
            if getattr(gen, "gi_code", None) in RELEASING:
                return True
        frame = frame.f_back
    return False


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
@releasing
def critical() -> Iterator[None]:
    """Stop signals that arrive inside the block take effect at its end (main thread;
    elsewhere signals are not delivered anyway)."""
    if not _main_thread():
        yield
        return
    STATE.depth += 1
    try:
        yield
    finally:
        STATE.depth -= 1
        _raise_pending()


def _raise_pending() -> None:
    """A stop signal deferred while critical takes effect once no section is open."""
    if not STATE.depth and STATE.pending is not None:
        signum, STATE.pending = STATE.pending, None
        _raise_for(signum)


@contextlib.contextmanager
def signals_raise() -> Iterator[_Signals]:
    """Turn SIGTERM and SIGHUP into SystemExit(128 + n) and SIGINT into KeyboardInterrupt
    (even when the process started with SIGINT ignored, as a shell's background job
    does), deferred inside ``critical()``, so that ``with`` blocks unwind and clean up.
    ``received`` stays set: an interrupt swallowed where Python ignores exceptions (a
    ``__del__``) is still seen by the caller."""
    if not STATE.installed:
        STATE.received = STATE.pending = None
    STATE.installed += 1
    old_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(old_hook)
    old = {s: signal.signal(s, STATE.handler) for s in STOP_SIGNALS}
    try:
        yield STATE
    finally:
        STATE.depth += 1  # no raise while the handlers are put back: ``received`` says it
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = old_hook
        STATE.depth -= 1
        STATE.installed -= 1
        STATE.pending = None


def _unraisable(
    old: Callable[[Any], object],
) -> Callable[[Any], object]:
    """Our stop exception raised where Python cannot propagate it (a ``__del__``, a
    generator's finalisation) is kept pending, silently, instead of printed as
    "Exception ignored" and lost: it takes effect at the next ``critical()`` end or
    ``undo_stack()`` end."""

    def hook(info: Any) -> object:
        if info.exc_type in (KeyboardInterrupt, SystemExit) and STATE.received is not None:
            STATE.pending = STATE.pending or STATE.received
            return None
        return old(info)

    return hook


def run_helper(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """A helper program in a session of its own: the terminal's Ctrl-C, sent to our
    process group, does not reach it, so it is never killed halfway."""
    return subprocess.run(cmd, capture_output=True, text=True, check=False, start_new_session=True)


def check_helper(cmd: list[str]) -> str:
    """``run_helper`` that raises RuntimeError with the program's last message line."""
    proc = run_helper(cmd)
    if proc.returncode:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"{' '.join(cmd)} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout


class Undo:
    """Release steps, run in reverse order by ``close()``."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, name: str, release: Callable[[], None]) -> None:
        self.steps.append((name, release))

    def acquire(self, name: str, make: Callable[[], T], release: Callable[[T], None]) -> T:
        """``make()`` and register ``release(result)`` with signals deferred."""
        with critical():
            value = make()
            self.push(name, lambda: release(value))
        return value

    @releasing
    def close(self) -> None:
        failed = []
        with critical():
            while self.steps:
                name, release = self.steps.pop()
                problem = _retry(release)
                if problem:
                    failed.append(f"{name} ({problem})")
        if failed:
            raise CleanupFailed(failed)


@releasing
def _retry(release: Callable[[], None]) -> str:
    """'' when ``release`` succeeded within RETRIES attempts, else its last error."""
    problem = ""
    for attempt in range(RETRIES):
        try:
            release()
            return ""
        except (OSError, RuntimeError) as exc:
            problem = str(exc) or type(exc).__name__
        if attempt + 1 < RETRIES:
            time.sleep(RETRY_WAIT)
    return problem


@contextlib.contextmanager
@releasing
def undo_stack() -> Iterator[Undo]:
    """An ``Undo`` closed when the block ends, however it ends; a stop signal that came
    while it was releasing takes effect after."""
    undo = Undo()
    try:
        yield undo
    finally:
        undo.close()
        _raise_pending()
