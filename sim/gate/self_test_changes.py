"""The code changes the gate's self-test must catch: real edits of ``core/``, kept as data.

Each :class:`CodeChange` is a list of exact text replacements in files of ``core/`` — the kind of
change a pull request makes, not a knob of the measuring code. :func:`patched_tree` copies the
tree's ``core/`` into a scratch directory and applies one change there; every replacement's
anchor must occur **exactly once** in today's file, so a refactor of ``core/`` that moves an
anchor fails the self-test loudly (:class:`ChangeError`) instead of silently testing nothing.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CHANGES", "ChangeError", "CodeChange", "Edit", "patched_tree"]


class ChangeError(ValueError):
    """A change no longer applies to this tree (its anchor is gone or not unique)."""


@dataclass(frozen=True, slots=True)
class Edit:
    path: str  # relative to the tree, e.g. "core/loader.py"
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class CodeChange:
    name: str
    what: str  # one line: what the change does and why it is a regression
    edits: tuple[Edit, ...]


_INSERT = """        if options.insert_path == "full":
            new = doc.add_cells_full(at, snapshots)"""

CHANGES: tuple[CodeChange, ...] = (
    CodeChange("unchanged", "no change (a copy of the tree): must pass", ()),
    CodeChange(
        "quadratic",
        "the loader skips ids already in the document by listing every cell before each batch "
        "(O(n) per batch, O(n^2) per load; not through find_cell_index, so no scan counter)",
        (
            Edit(
                "core/loader.py",
                _INSERT,
                """        present = {cell.id for cell in doc.get_cells()}  # never insert an id twice
        snapshots = [snap for snap in snapshots if snap.id not in present]
"""
                + _INSERT,
            ),
        ),
    ),
    CodeChange(
        "cpu_slowdown",
        "the loader fingerprints every cell's output data (SHA-512) before inserting it: "
        "constant extra CPU per cell, +4.3-5.0 % of a load's instructions (12 and 25 cells)",
        (
            Edit(
                "core/loader.py",
                "    snapshots = [record_to_cell(r, ref) for r, ref in zip(batch, refs, strict=True)]\n",
                "    snapshots = [record_to_cell(r, ref) for r, ref in zip(batch, refs, strict=True)]\n"
                "    digests = []  # a content fingerprint per cell, for the load's log\n"
                "    for record in batch:\n"
                "        digest = hashlib.sha512()\n"
                "        for output in record.outputs:\n"
                "            for value in (output.get('data') or {}).values():\n"
                "                if isinstance(value, str):\n"
                "                    digest.update(value.encode())\n"
                "        digests.append(digest.hexdigest())\n",
            ),
            Edit("core/loader.py", "import asyncio\n", "import asyncio\nimport hashlib\n"),
        ),
    ),
    CodeChange(
        "memory_growth",
        "the loader keeps the last 20 parsed cell records (outputs included) for a retry, "
        "instead of dropping each batch once inserted: +22 % peak Python heap at 100 cells",
        (
            Edit(
                "core/loader.py",
                "        index = 0\n",
                "        index = 0\n"
                "        recent = collections.deque(maxlen=20)  # parsed records, for a retry\n",
            ),
            Edit(
                "core/loader.py",
                "            index += 1\n",
                "            recent.extend(batch.records)\n            index += 1\n",
            ),
            Edit("core/loader.py", "import asyncio\n", "import asyncio\nimport collections\n"),
        ),
    ),
    CodeChange(
        "large_only",
        "once the document passes 400 cells the loader re-checks every cell id after each "
        "batch: invisible at the gate's main size (200), O(n) per batch above it",
        (
            Edit(
                "core/loader.py",
                "    report.cells = start + len(batch)\n",
                "    report.cells = start + len(batch)\n"
                "    if report.cells > 400:  # large notebooks: ids must stay unique\n"
                "        ids = [cell.id for cell in doc.get_cells()]\n"
                "        if len(set(ids)) != len(ids):\n"
                "            raise RuntimeError('duplicate cell ids')\n",
            ),
        ),
    ),
    CodeChange(
        "client_side",
        "the client counts cells by materialising them after every frame (O(n) per frame, "
        "in the peer, not the daemon)",
        (
            Edit(
                "core/client.py",
                "        count = self.doc.cell_count()\n",
                "        count = len(self.doc.get_cells())\n",
            ),
        ),
    ),
)


def patched_tree(root: Path, change: CodeChange, into: Path) -> Path:
    """``into`` with a copy of ``root/core`` and ``change`` applied; the new tree's root."""
    shutil.copytree(root / "core", into / "core", ignore=shutil.ignore_patterns("__pycache__"))
    for edit in change.edits:
        target = into / edit.path
        text = target.read_text(encoding="utf-8")
        found = text.count(edit.old)
        if found != 1:
            where = "not found" if found == 0 else f"found {found} times"
            raise ChangeError(
                f"self-test change {change.name!r}: its anchor in {edit.path} is {where} "
                f"(core/ changed: update sim/gate/self_test_changes.py): {edit.old.strip()[:60]!r}"
            )
        target.write_text(text.replace(edit.old, edit.new), encoding="utf-8")
    return into
