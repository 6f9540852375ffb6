"""``dioconf bench fidelity``: the mutation catalogue follows the model, the unmutated copy
replays every kernel trace clean, and a mutation the kernel traces can see is killed."""

from pathlib import Path

import pytest
from dioconf.bench.fidelity import corpora, mutated_text, run_mutant, snapshot, source_file
from dioconf.bench.mutations import MUTATIONS

SEEDS = {"iomap-direct-io.c", "legacy-direct-io.c", "btrfs-direct-io.c", "iomap-operations.rst"}


def test_catalogue_has_30_single_rule_mutations_with_names_rules_and_seeds():
    assert len(MUTATIONS) >= 30
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)
    for m in MUTATIONS:
        assert m.rule and m.seed and m.old != m.new, m.name
        # the seed file and function the rule comes from (or the kernel evidence)
        assert m.seed.split()[0] in SEEDS or "DIVERGENCES.md" in m.seed, m.name


@pytest.mark.parametrize("m", MUTATIONS, ids=lambda m: m.name)
def test_each_mutation_still_applies_to_the_model_once(m):
    # its snippet occurs exactly once in today's source, and the mutant still compiles
    text = source_file(m.file).read_text()
    assert text.count(m.old) == 1, f"{m.name}: update its snippet in bench/mutations.py"
    compile(mutated_text(text, m), m.file, "exec")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot(tmp_path_factory.mktemp("fidelity") / "base")


def test_unmutated_copy_replays_every_kernel_and_hand_trace_clean(base, tmp_path):
    files = corpora()
    assert len(files["kernel"]) >= 50 and len(files["hand"]) >= 40
    row = run_mutant(None, base, tmp_path, files)
    assert "error" not in row, row.get("error")
    assert row["kernel_traces_diverging"] == 0, row["first_kernel_divergence"]
    assert row["hand_traces_diverging"] == 0, row["first_hand_divergence"]


def test_dropping_the_short_read_cap_is_killed_by_the_kernel_traces(base, tmp_path):
    (m,) = [m for m in MUTATIONS if m.name == "no-short-read-cap"]
    row = run_mutant(m, base, tmp_path, {"kernel": corpora()["kernel"]})
    assert "error" not in row, row.get("error")
    assert row["killed_by_kernel"] is True
    first = row["first_kernel_divergence"]
    assert first["path"].startswith("kernel/") and "complete ret=" in first["trace_says"]


# mutations only the newer observations can kill, and what the trace says where
OBSERVED_BY = {
    "no-flush-at-completion": "flush",  # an O_DSYNC write's flush (dsync-cache-on)
    "unwritten-no-end-io-flag": "end_io=[UNWRITTEN]",  # xfs_unwritten_convert
    "shared-no-cow-flag": "end_io=[COW]",  # xfs_reflink_end_cow (reflink-cow)
    "tail-zeroing-strictly-past-eof": "len=3584",  # eof-zeroing: the tail pad to 8 KiB
    "done-before-dropped": "complete ret=",  # partial-faults: btrfs's retry
}


@pytest.mark.parametrize("name", sorted(OBSERVED_BY))
def test_the_newer_observations_kill_their_mutations(name, base, tmp_path):
    (m,) = [m for m in MUTATIONS if m.name == name]
    assert not m.blind  # a survivor's reason must go when the kernel traces kill it
    row = run_mutant(m, base, tmp_path, {"kernel": corpora()["kernel"]})
    assert "error" not in row, row.get("error")
    assert row["killed_by_kernel"] is True
    first = row["first_kernel_divergence"]
    assert OBSERVED_BY[name] in first["trace_says"], first


def test_what_the_machine_lacks_is_reported_apart_from_what_was_not_recorded():
    from dioconf.bench.fidelity import _report
    from dioconf.bench.mutations import FUA_DEVICE, LEGACY_FS

    assert all(m.blind for m in MUTATIONS if m.needs)  # out of reach: still explained
    assert {m.needs for m in MUTATIONS if m.file.startswith("model/legacy")} == {LEGACY_FS}
    legacy, fua, plain = (next(m for m in MUTATIONS if m.needs == need)
                          for need in (LEGACY_FS, FUA_DEVICE, ""))  # fmt: skip
    killed = next(m for m in MUTATIONS if not m.needs and m is not plain)
    chosen = [legacy, fua, plain, killed]
    rows = [{"name": m.name, "rule": m.rule, "seed": m.seed, "killed_by_hand": True,
             "killed_by_kernel": m is killed} for m in chosen]  # fmt: skip
    report = _report(chosen, rows, {"kernel": [], "hand": []}, {}, 1, 0.0)
    assert report["killed"] == 1 and report["total"] == 4
    assert report["kernel_kill_ratio"] == 0.25
    assert report["out_of_reach"] == {FUA_DEVICE: [fua.name], LEGACY_FS: [legacy.name]}
    assert report["kernel_kill_ratio_within_reach"] == 0.5  # 1 of the 2 this machine runs
