"""Fixtures for the pytest-benchmark suites: seeded data built once per session, outside timing.

The data and the load runner are the asv suites' (``benchmarks/common.py``), so both harnesses
measure the same notebooks the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.logger import PytestBenchmarkWarning

from benchmarks.common import cell_snapshots
from sim.workload.generator import (
    DEFAULT_NOTEBOOK_SHA256,
    default_notebook_path,
    notebook_fingerprint,
)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Keep ``--benchmark-compare`` usable with no saved baseline yet (a first run).

    pytest-benchmark warns "Can't compare. No benchmark files ..." from its own
    ``pytest_configure``, where pyproject's ``filterwarnings = ["error"]`` is already in force,
    so the warning would abort the session with an INTERNALERROR. It stays a visible warning.
    """
    warnings.filterwarnings("default", message="Can't compare", category=PytestBenchmarkWarning)


@pytest.fixture(scope="session")
def reference_notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default 50-cell reference notebook (seed 0), its sha256 checked against the pin."""
    path = default_notebook_path(cache_dir=tmp_path_factory.mktemp("reference"))
    assert notebook_fingerprint(path.read_bytes()) == DEFAULT_NOTEBOOK_SHA256
    return path


@pytest.fixture(scope="session")
def snapshots() -> Callable[[int], list[Any]]:
    """``snapshots(n)``: the n-cell seeded notebook as CellSnapshots (manifests already built)."""
    cache: dict[int, list[Any]] = {}

    def get(cells: int) -> list[Any]:
        if cells not in cache:
            cache[cells] = cell_snapshots(cells)
        return cache[cells]

    return get
