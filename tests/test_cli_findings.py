"""`dioconf run` on the Python implementation: the seed's findings it meets are findings
(exit 1) unless ``--allow-finding`` accepts them, and are counted either way."""

from __future__ import annotations

import json

from dioconf.cli import main

RUN = ["run", "--profile", "ci", "--fs", "getblock", "--examples", "20", "--no-proofs", "--json"]


def _run(capsys, *extra: str) -> tuple[int, dict]:
    code = main([*RUN, *extra])
    return code, json.loads(capsys.readouterr().out)


def test_a_finding_met_exits_1_unless_allowed(capsys, tmp_path) -> None:
    out = ["--out", str(tmp_path)]
    code, doc = _run(capsys, *out)
    met = {f["name"]: f for f in doc["findings"]}
    assert code == 1 and not doc["ok"] and "legacy-zero-page-after-fault" in met
    f = met["legacy-zero-page-after-fault"]
    assert f["fs"] == ["getblock"] and f["count"] > 0 and not f["allowed"] and f["summary"]
    assert all(c["ok"] for c in doc["combos"])  # no divergence: the findings alone fail it

    code, doc = _run(capsys, *out, "--allow-finding", ",".join(met))
    assert code == 0 and doc["ok"] and all(f["allowed"] for f in doc["findings"])
    code, doc = _run(capsys, *out, "--allow-finding", "seed")  # the group
    assert code == 0 and {f["name"] for f in doc["findings"]} == set(met)

    others = [n for n in met if n != "legacy-zero-page-after-fault"]
    code, doc = _run(capsys, *out, *(a for n in others for a in ("--allow-finding", n)))
    assert code == 1 and not doc["ok"]  # one left out is enough


def test_an_unknown_finding_is_a_usage_error(capsys) -> None:
    assert main(["run", "--allow-finding", "nope", "--no-proofs", "-q"]) == 2
    assert "unknown finding 'nope'" in capsys.readouterr().err
