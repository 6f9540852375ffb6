"""A fast ``evolve`` for the model's internal engine states.

Engine states are attrs ``@frozen(slots=False)`` classes: immutable through attribute
assignment, and backed by an instance ``__dict__``. ``attrs.evolve`` rebuilds an
instance field by field through ``__init__`` (and dominated replay time); this copies
the dict instead. Validators are not run: engine states are built only by the model
itself. Measured with ``dioconf bench replay``.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def evolve(inst: T, **changes: Any) -> T:
    """A copy of ``inst`` with ``changes`` applied (like ``attrs.evolve``)."""
    new = object.__new__(type(inst))
    d = new.__dict__
    d.update(inst.__dict__)
    n = len(d)
    d.update(changes)
    if len(d) != n:  # a key that is not a field was added
        unknown = sorted(set(changes) - set(inst.__dict__))
        raise TypeError(f"{type(inst).__name__} has no field(s) {unknown}")
    return new
