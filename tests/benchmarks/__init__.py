"""pytest-benchmark suites (CI gating). Not collected by the default ``pytest`` run: see
docs/benchmarks.md for ``pytest tests/benchmarks``."""

from __future__ import annotations
