"""asv benchmark suites for nbstream (configured by ../asv.conf.json; see docs/benchmarks.md)."""

from __future__ import annotations
