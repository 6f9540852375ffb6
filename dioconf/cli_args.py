"""Argument types shared by the subcommands: numbers checked where they are parsed, so
a bad one is a usage error (exit 2) naming the option, before any work starts."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(low: int) -> Callable[[str], int]:
    """An ``int`` argument type that refuses values below ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive = at_least(1)
natural = at_least(0)
