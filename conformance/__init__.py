"""Hypothesis state machines and z3 checks comparing model and impl (not built yet: issue 5)."""
