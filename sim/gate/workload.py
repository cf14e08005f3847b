"""The notebooks a gate run loads, written once and loaded alike by both sides.

By default they are generated (:mod:`sim.workload.generator`, ``--seed``). With ``--notebook
PATH`` (repeatable) they are the user's own: the first notebook seeds every size of the run —
the sweep, the instruction counts and the large load are built from its own cells, repeated
with fresh ids past its length (:class:`sim.workload.sweep.NotebookSweep`, as ``scale
--notebook`` does) — and its main load is the file itself when ``--cells`` is its length. Every
further notebook is loaded as it is, beside the main one: its exact counters are judged
separately (keys ``<counter>@<name>``) and the timed pairs cycle through all of them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.gate.instructions import instruction_plan, warm_up_size
from sim.gate.settings import GateSettings
from sim.gate.workers import GateError
from sim.workload.generator import write_notebook
from sim.workload.sweep import NotebookSweep, SweepError

__all__ = ["Load", "Workload", "make_workload", "notebook_cells"]


@dataclass(frozen=True, slots=True)
class Load:
    """One notebook both sides load: a label (for counter keys and messages), its cells, its
    file."""

    label: str
    cells: int
    path: Path


@dataclass(frozen=True, slots=True)
class Workload:
    cells: int
    main: Path
    sweep: tuple[tuple[int, Path], ...]
    files: Mapping[int, Path] = dataclasses.field(default_factory=dict)  # every size, by cells
    extra: tuple[Load, ...] = ()  # --notebook beyond the first, loaded as they are
    sources: tuple[Mapping[str, Any], ...] = ()  # path, cells, bytes, sha256 of each --notebook

    @property
    def mains(self) -> tuple[Load, ...]:
        """Every notebook loaded at full size: the main one, then the extra ones."""
        return (Load("main", self.cells, self.main), *self.extra)


def notebook_cells(path: Path) -> int:
    """The cell count of ``--notebook PATH`` (GateError, one line, when it cannot be read)."""
    return _sweep(path).cells


def make_workload(directory: Path, settings: GateSettings) -> Workload:
    """Write the notebooks both sides load (once; the sweep's largest is the main one)."""
    sizes = {*settings.sweep_sizes(), settings.cells, *instruction_plan(settings.cells)}
    sizes.add(warm_up_size(settings.cells))
    if settings.large_cells:
        sizes.add(settings.large_cells)
    paths: dict[int, Path] = {}
    sources: list[Mapping[str, Any]] = []
    extra: list[Load] = []
    if not settings.notebooks:
        for n in sorted(sizes):
            paths[n] = directory / f"gate-{n}-cells-seed{settings.seed}.ipynb"
            write_notebook(paths[n], n, settings.seed)
    else:
        sweeps = [_sweep(p) for p in settings.notebooks]
        first = sweeps[0]
        for n in sorted(sizes):
            if n == first.cells:
                paths[n] = first.path  # the user's file itself, as it is
            else:
                paths[n] = directory / f"gate-{n}-cells-from-{first.path.stem}.ipynb"
                paths[n].write_bytes(first.notebook_bytes(n))
        sources = [s.source for s in sweeps]
        names = _labels([s.path for s in sweeps])
        extra = [Load(name, s.cells, s.path) for name, s in zip(names[1:], sweeps[1:], strict=True)]
    sweep = tuple((n, paths[n]) for n in sorted({*settings.sweep_sizes(), settings.cells}))
    return Workload(
        settings.cells,
        paths[settings.cells],
        sweep,
        paths,
        extra=tuple(extra),
        sources=tuple(sources),
    )


def _sweep(path: Path) -> NotebookSweep:
    """The notebook's sweep, parsed once per run: the options are checked (notebook_cells)
    before the workload is written (make_workload), and a file changed in between (size or
    mtime) is parsed again."""
    try:
        st = path.stat()
        key: tuple[str, int, int] | None = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None  # the sweep says why it cannot read it
    try:
        return NotebookSweep(path) if key is None else _parsed(*key)
    except SweepError as exc:
        raise GateError(str(exc)) from None


@functools.lru_cache(maxsize=8)
def _parsed(path: str, size: int, mtime_ns: int) -> NotebookSweep:
    del size, mtime_ns  # the cache key: a changed file is parsed again
    return NotebookSweep(Path(path))


def _labels(paths: Sequence[Path]) -> list[str]:
    """Each notebook's file stem, with ``#<position>`` where two notebooks share a stem."""
    stems = [p.stem for p in paths]
    return [f"{s}#{i}" if stems.count(s) > 1 else s for i, s in enumerate(stems)]
