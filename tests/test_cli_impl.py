"""dioconf impl: run an implementation example, write its trace, replay it."""

from __future__ import annotations

from dioconf.traces.format import read_trace

from dioconf.cli import main


def test_impl_run_writes_a_trace_that_the_model_accepts(tmp_path, capsys):
    trace = tmp_path / "run.jsonl"
    code = main(["impl", "--fs", "reflink", "--example", "reflink", "--trace", str(trace)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out
    t = read_trace(trace)
    assert t.header.raw["source"] == "impl" and t.header.raw["fs"] == "reflink"
    assert sum(e.ev == "begin" for e in t.events) >= 3


def test_impl_rejects_unknown_examples_and_filesystems(capsys):
    assert main(["impl", "--example", "nope"]) == 2
    assert "unknown example" in capsys.readouterr().err
    assert main(["impl", "--fs", "getblock", "--example", "faults"]) == 2
    assert "runs on" in capsys.readouterr().err


def test_impl_list_names_every_example(capsys):
    from dioconf.impl.examples import EXAMPLES

    assert main(["impl", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXAMPLES)
