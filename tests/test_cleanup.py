"""Acquire-and-release for the recorder (impl/kernel/cleanup.py), no root needed:
signals are deferred inside critical sections, releases retry, run in reverse order,
cannot be cut by a second signal, and what could not be undone is named."""

from __future__ import annotations

import os
import signal

import pytest
from dioconf.impl.kernel import cleanup
from dioconf.impl.kernel.cleanup import CleanupFailed, Undo, critical, signals_raise


@pytest.fixture(autouse=True)
def _no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup, "RETRY_WAIT", 0)


def test_a_signal_inside_a_critical_section_takes_effect_at_its_end():
    steps = []
    with signals_raise() as state, pytest.raises(KeyboardInterrupt):
        with critical():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")  # not cut short
        steps.append("after the section")  # never reached
    assert steps == ["after the signal"]
    assert state.received == signal.SIGINT


def test_sigterm_outside_a_critical_section_is_system_exit_143():
    with signals_raise(), pytest.raises(SystemExit) as exc:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at the next bytecode
            pass
    assert exc.value.code == 143


def test_each_install_starts_without_a_received_signal():
    with signals_raise(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    with signals_raise() as state:
        assert state.received is None


def test_releases_run_in_reverse_and_a_failing_one_is_named():
    done = []
    undo = Undo()
    undo.push("first", lambda: done.append("first"))

    def broken() -> None:
        raise RuntimeError("device busy")

    undo.push("unmount /x", broken)
    undo.push("third", lambda: done.append("third"))
    with pytest.raises(CleanupFailed) as exc:
        undo.close()
    assert done == ["third", "first"]  # the failure did not stop the others
    assert exc.value.steps == ["unmount /x (device busy)"]
    assert "could not undo: unmount /x (device busy)" in str(exc.value)


def test_a_release_that_fails_once_is_retried():
    attempts = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(16, "Device or resource busy")

    undo = Undo()
    undo.push("flaky", flaky)
    undo.close()
    assert len(attempts) == 2


def test_a_second_signal_does_not_cut_a_release_in_half():
    done = []

    def release() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        done.append("released")

    undo = Undo()
    undo.push("a", lambda: done.append("a"))
    undo.push("b", release)
    with signals_raise(), pytest.raises(SystemExit):
        undo.close()
    assert done == ["released", "a"]


def test_acquire_registers_what_it_made():
    undo = Undo()
    made = undo.acquire("thing", lambda: 42, lambda v: released.append(v))
    released: list[int] = []
    undo.close()
    assert (made, released) == (42, [42])


def test_an_interrupt_swallowed_in_a_del_is_kept_not_printed(capsys):
    """Python prints an exception raised in ``__del__`` ("Exception ignored") and goes
    on; the stop must not be lost: it takes effect at the next critical section's end."""

    class Finalised:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler raises here, inside __del__
                pass

    with signals_raise() as state, pytest.raises(KeyboardInterrupt):
        Finalised()  # dropped at once
        assert state.pending == signal.SIGINT
        with critical():
            pass
    assert "Exception ignored" not in capsys.readouterr().err
