"""Option value types shared by every ``nbstream`` command: a bad value is one line
(``argparse`` adds ``nbstream X: argument --opt: …``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from sim.cli.output import UsageError

__all__ = ["float_at_least", "int_at_least", "parse_shard"]


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer option that must be ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def float_at_least(minimum: float) -> Callable[[str], float]:
    """A finite number option that must be ``>= minimum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and value >= minimum):
            raise argparse.ArgumentTypeError(f"must be a number >= {minimum:g}, got {text}")
        return value

    return parse


def parse_shard(text: str | None) -> tuple[int, int]:
    """``--shard I/N`` (``explore``, ``scale``) as (I, N); None: (0, 1). A bad value is a
    :class:`UsageError` (one line, exit 2)."""
    if text is None:
        return 0, 1
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return i, n
