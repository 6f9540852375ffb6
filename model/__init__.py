"""Pure, sans-IO reference model of the Linux direct-I/O engines.

No file descriptors, threads, clocks or randomness live here. See ``types.py`` for the
values exchanged with an engine and ``engine.py`` for the driving protocol.
"""
