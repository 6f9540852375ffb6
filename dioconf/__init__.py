"""dioconf: an executable reference model of Linux direct I/O and a conformance suite."""

__version__ = "0.1.0"
