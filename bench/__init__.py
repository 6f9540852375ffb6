"""Benchmarks, reported as ratios and rates taken in one run (never timed assertions)."""
