"""Did every peer end up with the same notebook as the server, and as the source file?

A divergence is reported as a readable unified diff of the two materialized documents (JSON,
one key per line), truncated so a 3000-cell mismatch still prints something a person can read.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.blob_store import MemoryBlobStore
from core.ipynb import ParsedNotebook, notebook_metadata_to_doc, record_to_cell
from core.manifest import outputs_to_refs

__all__ = ["ConvergenceReport", "check_convergence", "diff_docs", "expected_document"]

MAX_DIFF_LINES = 40


@dataclass(slots=True)
class ConvergenceReport:
    ok: bool
    checked: list[str] = field(default_factory=list)
    diffs: dict[str, list[str]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.ok:
            return f"converged: {len(self.checked)} peers equal the server and the source"
        lines = [f"DIVERGED: {', '.join(sorted(self.diffs))}"]
        for name, diff in sorted(self.diffs.items()):
            lines.append(f"--- {name}")
            lines.extend(diff)
        return "\n".join(lines)


def expected_document(parsed: ParsedNotebook, notebook_id: str) -> dict[str, Any]:
    """What a correct load of ``parsed`` materializes to (manifests are content-addressed, so
    building them again in a scratch store gives the same hashes the daemon wrote)."""
    store = MemoryBlobStore()
    cells = [record_to_cell(r, outputs_to_refs(r.outputs, store)).to_dict() for r in parsed.cells]
    return {
        "notebook_id": notebook_id,
        "cells": cells,
        "metadata": notebook_metadata_to_doc(parsed.metadata),
    }


def empty_document(notebook_id: str) -> dict[str, Any]:
    return {"notebook_id": notebook_id, "cells": [], "metadata": {}}


def diff_docs(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    *,
    label: str,
    expected_label: str = "expected",
) -> list[str]:
    """A unified diff (at most MAX_DIFF_LINES lines); empty when equal."""
    if expected == actual:
        return []
    a = json.dumps(_summarize(expected), indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    b = json.dumps(_summarize(actual), indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    diff = list(difflib.unified_diff(a, b, expected_label, label, n=1, lineterm=""))
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... ({len(diff) - MAX_DIFF_LINES} more diff lines)"]
    return diff or ["(documents differ but serialize identically)"]


def _summarize(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Shorten long strings so a diff stays readable."""

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > 120:
            return f"{value[:100]}… ({len(value)} chars)"
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    return {"cell_count": len(doc.get("cells", [])), **{k: cut(v) for k, v in doc.items()}}


def check_convergence(
    server: Mapping[str, Any],
    peers: Mapping[str, Mapping[str, Any]],
    *,
    expected: Mapping[str, Any] | None = None,
    skip: Sequence[str] = (),
) -> ConvergenceReport:
    """Every peer equals the server; the server equals ``expected`` (the source) when given."""
    report = ConvergenceReport(ok=True)
    if expected is not None:
        diff = diff_docs(expected, server, label="server", expected_label="source notebook")
        if diff:
            report.diffs["server"] = diff
    for name, doc in peers.items():
        if name in skip:
            continue
        report.checked.append(name)
        diff = diff_docs(server, doc, label=name, expected_label="server")
        if diff:
            report.diffs[name] = diff
    report.ok = not report.diffs
    return report
