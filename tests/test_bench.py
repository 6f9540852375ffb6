"""The benchmark's generated trace must itself conform (its patterns are hand-worked)."""

from dioconf.bench.replay import generate_lines, run
from dioconf.traces.format import parse_trace
from dioconf.traces.replay import replay_trace


def test_generated_trace_conforms_near_zero_and_near_2_62():
    for base in (0, 1 << 62):
        result = replay_trace(parse_trace(generate_lines(400, base=base), "<bench>"))
        assert result.ok, result.divergence
        assert result.events >= 400


def test_bench_report_has_the_promised_fields():
    doc = run(events=1000)
    assert doc["conforms"] is True
    assert doc["events"] >= 1000
    for key in ("events_per_s", "peak_bytes_offset_0", "peak_bytes_offset_2^62"):
        assert doc[key] > 0


def test_bench_report_has_the_bio_scale_figures():
    doc = run(events=100, scale_sizes=(4, 64))
    assert doc["conforms"] is True
    for how in ("implied", "recorded"):
        for n in (4, 64):
            assert doc[f"{how}_{n}_bios_per_s"] > 0
    assert doc["implied_2^62_bytes_bios"] == 1 << 42
    assert doc["implied_2^62_bytes_seconds"] >= 0
