"""Concrete direct-I/O engine on a real sparse image file (not built yet: issue 4)."""
