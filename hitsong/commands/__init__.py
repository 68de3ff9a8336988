"""The library's CLI sub-commands, one module each; the argument types and the command discovery they share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib.metadata import entry_points

from hitsong.errors import ConfigError


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number >= 1, with a message naming the bad value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def contributed(group: str) -> list[Callable[[argparse._SubParsersAction], object]]:
    """The ``register`` functions of entry-point ``group``, sorted by entry name.

    Raises
    ------
    ConfigError
        The group is empty: hitsong is not installed (its entry points live in its metadata).
    """
    entries = sorted(entry_points(group=group), key=lambda e: e.name)
    if not entries:
        raise ConfigError(
            f"no {group!r} entry points: hitsong is not installed in this environment; run `pip install -e .` "
            "(or `make install`) in the project folder"
        )
    return [e.load() for e in entries]
