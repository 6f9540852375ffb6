"""Usage errors name what is wrong, with the subcommand's own usage, and exit 2
(issue 12, conventions and usage errors)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dioconf.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dioconf", *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_version_and_python_dash_m() -> None:
    r = _run("--version")
    assert r.returncode == 0 and r.stdout.startswith("dioconf ")


@pytest.mark.parametrize("args, names", [
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "--jobs", "0"], "--jobs"),
    (["run", "--jobs", "-3"], "--jobs"),
    (["run", "--examples", "0"], "--examples"),
    (["check", "x:y", "--examples", "0"], "--examples"),
    (["record", "--random", "-3"], "--random"),
    (["record", "--ops", "0"], "--ops"),
])  # fmt: skip
def test_a_bad_option_is_a_usage_error_naming_it(
    args: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert names in err and f"usage: dioconf {args[0]}" in err


def test_a_deeply_nested_line_is_a_format_error(tmp_path) -> None:
    from pathlib import Path

    from dioconf.traces.format import TraceFormatError, read_trace

    header = next(iter(sorted(Path("traces/hand").glob("*.jsonl")))).read_text().splitlines()[0]
    path = tmp_path / "deep.jsonl"
    path.write_text(header + "\n" + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(TraceFormatError, match="nested too deeply"):
        read_trace(str(path))
