"""A divergence names the field that differs and the seed rule deciding that field
(issue 13, part 3): a wrong FUA bit is the FUA decision, a wrong zero flag the padding
rule, a wrong i_size ->end_io's extension; a wrong ``ret`` keeps the derivation the
model recorded for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dioconf.traces.replay import replay_file

HAND = Path(__file__).resolve().parent.parent / "traces" / "hand"


def _flip(tmp_path: Path, name: str, ev: str, key: str, change) -> dict:  # type: ignore[no-untyped-def]
    """Replay hand trace ``name`` with the first ``ev`` event's ``key`` changed."""
    lines = (HAND / name).read_text().splitlines()
    for i, line in enumerate(lines):
        obj = json.loads(line) if line.strip() else {}
        if obj.get("ev") == ev and key in obj:
            obj[key] = change(obj[key])
            lines[i] = json.dumps(obj)
            break
    else:
        raise AssertionError(f"no {ev} with {key} in {name}")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    result = replay_file(str(path))
    assert result.divergence is not None
    return result.divergence.to_dict()


@pytest.mark.parametrize(("name", "ev", "key", "seed"), [
    ("iomap-dsync-fua-device.jsonl", "bio", "fua", "iomap_dio_bio_iter L466-479"),
    ("iomap-bs16k-zeroing.jsonl", "bio", "zero", "iomap_dio_zero"),
])  # fmt: skip
def test_a_bio_field_names_its_deciding_rule(tmp_path, name, ev, key, seed):
    d = _flip(tmp_path, name, ev, key, lambda v: not v)
    assert d["field"] == key
    assert seed in d["rule"] and "model/iomap_bio.py" in d["rule"]
    assert d["derived"]  # the output's own rule is still shown


def test_a_wrong_i_size_names_end_io(tmp_path):
    d = _flip(tmp_path, "iomap-dsync-fua-device.jsonl", "complete", "i_size", lambda v: v + 4096)
    assert d["field"] == "i_size" and "->end_io" in d["rule"]


def test_a_wrong_ret_keeps_the_models_derivation(tmp_path):
    d = _flip(tmp_path, "iomap-dsync-fua-device.jsonl", "complete", "ret", lambda v: v + 512)
    assert d["field"] == "ret" and d["rule"].startswith("iomap_dio_complete")
    assert d["derived"] == ""
