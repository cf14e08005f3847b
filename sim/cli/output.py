"""What every ``nbstream`` command shares on the way out: the usage error (exit 2, one line),
the JSON result written to stdout and to ``--output`` with its ``machine`` and ``git`` blocks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "emit_json", "finish", "output_option"]


class UsageError(Exception):
    """Bad usage or bad input: exit 2 with this one-line message."""


def finish(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The result with its ``machine`` and ``git`` blocks, written to ``--output`` if asked."""
    from sim.cli.provenance import stamp, write_result

    data = stamp(data)
    if args.output is not None:
        try:
            write_result(args.output, data)
        except OSError as exc:
            raise UsageError(f"--output {args.output}: {exc.strerror or exc}") from None
    return data


def output_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="also write the result (JSON, with machine and git) to FILE; "
        "compare two with `nbstream compare`",
    )


def emit_json(data: dict[str, Any]) -> None:
    json.dump(data, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
