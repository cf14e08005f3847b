"""Write a :class:`NotebookDoc` as an ``.ipynb`` that is valid nbformat and that nbstream re-reads.

Peers can write anything into the shared document, so the export reads it through
:mod:`core.doc_tree` (every CRDT type kept apart) and judges each element. Each element is
either written faithfully, **repaired** by one of the rules below (the save succeeds and its
``saved`` response lists every repair, naming the element), or **refused**: the save fails with
one :class:`~core.errors.InvalidNotebook` naming every such element (cell index and id, field),
and the file on disk is left as it was. The rules (PROTOCOL.md 10.6 is the normative text):

Repaired — the element is not the user's to decide, or the repair loses nothing of theirs:

* an entry of ``cells`` that is not a map: left out (nothing of it can be a cell);
* a cell id that is missing, not a string, empty, not nbformat's pattern (1-64 of
  ``a-zA-Z0-9-_``) or a repeat of an earlier id: a fresh stable id (:func:`~core.ipynb.stable_id`);
* an ``execution_count`` that is not a count (``"abc"``, ``-1``, ``2.5``, a boolean): ``null``;
* ``attachments`` on a code cell (a markdown cell turned into code): not written (4.5 has no
  place for them); they stay in the document;
* a NaN or infinite number anywhere: ``null`` (JSON cannot hold it; JavaScript's rule);
* an output that is not valid nbformat (not an object, unknown ``output_type``, a missing or
  mistyped field), or that nests deeper than the file may (64 levels): left out; an output of a
  known type whose only fault is keys nbformat 4.5 does not allow: written without them;
  raw output JSON that does not parse: the ``[invalid output JSON]`` placeholder;
* keys nbstream does not model (``extra``, item 13) in a notebook of nbformat 4.5 or older:
  not written (4.5 forbids them); they stay in the document. A notebook of a newer minor
  (``nbformat_minor`` > 5) writes them back and keeps its minor, validated by nbformat's relaxed
  rules for newer minors, as nbformat itself does.

Refused — user content that cannot be written faithfully, which a person must fix:

* a ``cell_type`` that is missing, not a string, or (4.5) not ``code``/``markdown``/``raw``;
* a ``source`` that is neither Text nor a string;
* ``metadata`` (notebook or cell) or ``attachments`` that is not a map, a value in them nesting
  deeper than the file may, or holding a value JSON has no form for (Bytes, Counter, Timestamp);
* metadata or attachments that nbformat's schema rejects (e.g. ``collapsed: "yes"``) — unless
  the file being replaced (``previous``) holds the very same metadata: then it is written as it
  was, with a repair note (real notebooks carry such metadata: the corpus's ``Output.ipynb`` has a
  kernelspec without ``display_name``; refusing would make them unsaveable, and nbstream never
  rewrites a user's metadata);
* a ``cells`` that is not a list; a notebook larger than nbstream reads back (512 MiB).

Faithful conversions of wrong CRDT types (no report): a Str where Text is expected (source) and
Text where a Str is expected; an Int for ``execution_count``; in a metadata, attachment or extra
map, a Str or Text is JSON text (text that is not JSON is a string, as always) and any other
value — a nested Map or List, a number, a boolean, null — is taken as the JSON value it is.

Format: nbformat's own writer (``json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False)``
plus a newline); sources, stream text and ``text/*``, ``application/javascript`` and
``image/svg+xml`` strings of output and attachment bundles are split with
``str.splitlines(keepends=True)`` like ``nbformat.v4.rwbase.split_lines``. Validation against
nbformat's schema (each output once, each cell without its outputs) costs 0.08 s of a 1.7 s
build on the 3200-cell, 90 MB generated notebook (whole-notebook ``jsonschema``: 3.1 s).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jiter

from core.doc_tree import OtherScalar, TextValue
from core.errors import InvalidNotebook
from core.ipynb import MAX_NESTING_DEPTH, MAX_NOTEBOOK_BYTES, stable_id
from core.json_values import check_tree
from core.nbschema import OUTPUT_TYPES, cell_error, notebook_error, output_error, output_properties

if TYPE_CHECKING:
    from core.blob_store import BlobStore
    from core.notebook_doc import NotebookDoc

__all__ = [
    "Exported",
    "Previous",
    "export_for_save",
    "export_notebook",
    "export_notebook_dict",
    "read_previous",
    "split_lines",
]

log = logging.getLogger(__name__)

_SPLIT_MIMES = frozenset({"application/javascript", "image/svg+xml"})
_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # nbformat 4.5's cell_id
_MAX_LISTED = 8  # problems named in one error message
# File levels (the top-level object is level 1) of the values the export writes.
_TOP_EXTRA, _TOP_META, _CELL_EXTRA, _CELL_VALUE = 2, 3, 4, 5  # a cell's metadata/attachment/output


@dataclass(frozen=True, slots=True)
class Exported:
    """A save's bytes and the repairs made to write them (empty when none)."""

    data: bytes
    repairs: tuple[str, ...]


Previous = Callable[[], Any]
"""The notebook being replaced, parsed (or None); asked for only when metadata fails the schema."""


class _Unwritable(Exception):
    """A value cannot be written faithfully (the message says why)."""


def split_lines(text: str) -> list[str]:
    """nbformat's multi-line split: ``str.splitlines(keepends=True)``; ``"".join`` inverts it."""
    return text.splitlines(True)


def _split_bundle(bundle: Any) -> Any:
    """nbformat.v4.rwbase._split_mimebundle (on a copy)."""
    if type(bundle) is not dict:
        return bundle
    return {
        mime: split_lines(value)
        if type(value) is str and (mime.startswith("text/") or mime in _SPLIT_MIMES)
        else value
        for mime, value in bundle.items()
    }


def _split_output(output: dict[str, Any]) -> dict[str, Any]:
    """nbformat.v4.rwbase.split_lines for one output (on a copy)."""
    output = dict(output)
    output_type = output.get("output_type")
    if output_type == "stream" and type(output.get("text")) is str:
        output["text"] = split_lines(output["text"])
    elif output_type in ("execute_result", "display_data") and "data" in output:
        output["data"] = _split_bundle(output["data"])
    return output


def describe(value: Any) -> str:
    """A short name of a document value, for messages."""
    if isinstance(value, TextValue):
        return f"a Text {_short(value.text)}"
    if isinstance(value, OtherScalar):
        return "a value nested too deep" if value.kind == "too deep" else f"a {value.kind} value"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return f"the number {value!r}"


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _text(value: Any) -> str | None:
    """A Str or a Text as a string; None for anything else."""
    if isinstance(value, str):
        return value
    return value.text if isinstance(value, TextValue) else None


def _finite(value: Any, where: str, repairs: list[str]) -> Any:
    """``value`` with every NaN/infinity replaced by null (each replacement reported)."""
    if isinstance(value, float) and not math.isfinite(value):
        repairs.append(f"{where}: {value!r} is not a JSON number: written as null")
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}.{k}", repairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v, f"{where}[{i}]", repairs) for i, v in enumerate(value)]
    return value


def _bounded(value: Any, where: str, level: int, repairs: list[str]) -> Any:
    """``value`` (written at file ``level``) made finite; _Unwritable if it nests too deep."""
    problem = check_tree(value, MAX_NESTING_DEPTH + 1 - level)
    if problem == "inf":
        value = _finite(value, where, repairs)
        problem = check_tree(value, MAX_NESTING_DEPTH + 1 - level)
    if problem == "depth":
        raise _Unwritable(
            f"{where} nests deeper than the {MAX_NESTING_DEPTH} levels a notebook file may have"
        )
    return value


def _native(value: Any, where: str) -> Any:
    """A document value (doc_tree form) as the JSON value it is; _Unwritable if it has none."""
    if isinstance(value, TextValue):
        return value.text
    if isinstance(value, OtherScalar):
        if value.kind == "too deep":
            raise _Unwritable(
                f"{where} nests deeper than the {MAX_NESTING_DEPTH} levels a notebook file may have"
            )
        raise _Unwritable(f"{where} is {describe(value)}, which JSON has no form for")
    if isinstance(value, dict):
        return {k: _native(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _json_value(value: Any, where: str) -> Any:
    """A map value: a Str/Text holds JSON text (non-JSON text is a string); others are native."""
    text = _text(value)
    if text is None:
        return _native(value, where)
    try:
        return jiter.from_json(text.encode("utf-8"), allow_inf_nan=False)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise _Unwritable(
                f"{where} nests deeper than the {MAX_NESTING_DEPTH} levels a notebook file may have"
            ) from None
        return text


class _Export:
    """One export: the repairs made and the problems found so far."""

    def __init__(self, store: BlobStore, relaxed: bool, previous: Previous | None) -> None:
        self.store = store
        self.relaxed = relaxed
        self.repairs: list[str] = []
        self.problems: list[str] = []
        self._previous = previous
        self._previous_read = False
        self._on_disk: Any = None

    def on_disk(self) -> dict[str, Any]:
        """The notebook being replaced ({} when unknown or unreadable), read at most once."""
        if not self._previous_read and self._previous is not None:
            self._previous_read = True
            try:
                self._on_disk = self._previous()
            except Exception as exc:  # unreadable: nothing is tolerated
                log.info("cannot read the notebook being replaced: %s", exc)
        return self._on_disk if isinstance(self._on_disk, dict) else {}

    def schema_error(self, error: str, metadata: Any, on_disk: Callable[[], list[Any]]) -> None:
        """A schema error: tolerated (noted) if only ``metadata`` is at fault and it is on disk."""
        if metadata is not None and any(metadata == m for m in on_disk()):
            self.repairs.append(f"{error}: written as it is in the file being replaced")
        else:
            self.problems.append(error)

    def previous_cell_metadata(self) -> list[Any]:
        cells = self.on_disk().get("cells")
        if not isinstance(cells, list):
            return []
        return [c.get("metadata") for c in cells if isinstance(c, dict)]

    # ------------------------------------------------------------------ values
    def json_map(self, node: Any, where: str, level: int) -> dict[str, Any]:
        """A map of JSON values (metadata, attachments, extra) whose values sit at ``level``."""
        if not isinstance(node, dict):
            self.problems.append(f"{where} is {describe(node)}, not a map")
            return {}
        out: dict[str, Any] = {}
        for key, value in node.items():
            label = f"{where}.{key}"
            try:
                out[key] = _bounded(_json_value(value, label), label, level, self.repairs)
            except _Unwritable as exc:
                self.problems.append(str(exc))
        return out

    def extras(self, node: Any, where: str, written: dict[str, Any], level: int) -> None:
        """Write the keys nbstream does not model into ``written`` (newer minors only)."""
        if node is None:
            return
        values = self.json_map(node, f"{where}.extra" if where else "extra", level)
        if not values:
            return
        owner = where or "the notebook"
        keys = ", ".join(repr(k) for k in sorted(values))
        if not self.relaxed:
            self.repairs.append(
                f"{owner}: key(s) {keys} not written: nbformat 4.5 does not allow them (they stay "
                "in the document; a notebook of nbformat 4.6 or later keeps them)"
            )
            return
        for key, value in values.items():
            if key in written:
                self.repairs.append(f"{owner}: extra key {key!r} not written: it is a field")
            else:
                written[key] = value

    def count(self, node: Any, where: str) -> int | None:
        value = _text(node) if isinstance(node, TextValue) else node
        if value is None or value == "null":
            return None
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
        if type(value) is int and value >= 0:
            return value
        if type(value) is float and value.is_integer() and value >= 0:
            return int(value)
        self.repairs.append(
            f"{where}.execution_count: {describe(node)} is not a count: written as null"
        )
        return None

    # ------------------------------------------------------------------ outputs
    def resolve(self, ref: str, where: str) -> dict[str, Any]:
        from core.blob_store import is_blob_id
        from core.errors import BlobCorrupt
        from core.manifest import INVALID_OUTPUT_TEXT, resolve_ref

        if is_blob_id(ref):
            try:
                return resolve_ref(ref, self.store)
            except BlobCorrupt as exc:  # the output existed: never written as a placeholder
                raise BlobCorrupt(
                    f"save refused: {where} cannot be exported: {exc}; the notebook was not "
                    "written (reopening it reloads the output from the file)"
                ) from exc
        try:  # raw output JSON: read as our reader reads files (NaN kept, then repaired)
            value = jiter.from_json(ref.encode("utf-8"), allow_inf_nan=True)
        except ValueError as exc:
            if "recursion limit" in str(exc):  # jiter stops at ~200 levels; the file allows 64
                raise _Unwritable(
                    f"{where} nests deeper than the {MAX_NESTING_DEPTH} levels "
                    "a notebook file may have"
                ) from None
            why = f"is not valid JSON ({exc})"
        else:
            if isinstance(value, dict):
                return value
            why = f"is JSON {type(value).__name__}, not an object"
        self.repairs.append(f"{where} {why}: written as {INVALID_OUTPUT_TEXT!r}")
        return {"output_type": "stream", "name": "stderr", "text": INVALID_OUTPUT_TEXT}

    def output(self, ref: Any, where: str) -> dict[str, Any] | None:
        ref_text = _text(ref)
        if ref_text is None:
            self.repairs.append(f"{where}: {describe(ref)} is not an output: left out")
            return None
        try:
            output = _bounded(
                _split_output(self.resolve(ref_text, where)), where, _CELL_VALUE, self.repairs
            )
        except _Unwritable as exc:
            self.repairs.append(f"{exc}: the output is left out")
            return None
        error = output_error(output, where, relaxed=self.relaxed)
        output_type = output.get("output_type")
        if error is not None and not self.relaxed and output_type in OUTPUT_TYPES:
            allowed = output_properties(output_type)
            unknown = sorted(set(output) - allowed)
            stripped = {k: v for k, v in output.items() if k in allowed}
            if unknown and output_error(stripped, where) is None:
                keys = ", ".join(repr(k) for k in unknown)
                self.repairs.append(
                    f"{where}: key(s) {keys} not written: nbformat 4.5 does not allow them on "
                    f"a {output_type} output (they stay in the document)"
                )
                return stripped
        if error is not None:
            self.repairs.append(f"{error}: the output is left out")
            return None
        written: dict[str, Any] = output
        return written

    def outputs(self, node: Any, where: str) -> list[dict[str, Any]]:
        if node is None:
            return []
        if not isinstance(node, list):
            self.repairs.append(f"{where}.outputs is {describe(node)}, not a list: written as []")
            return []
        written = (self.output(ref, f"{where}.outputs[{k}]") for k, ref in enumerate(node))
        return [output for output in written if output is not None]

    # ------------------------------------------------------------------ cells
    def cell(self, index: int, node: Any) -> dict[str, Any] | None:
        if not isinstance(node, dict):
            self.repairs.append(f"cells[{index}]: {describe(node)} is not a cell: left out")
            return None
        cell_id = _text(node.get("id"))
        where = f"cells[{index}]" + (f" (id {cell_id!r})" if cell_id else "")
        cell_type = _text(node.get("cell_type"))
        if cell_type is None:
            self.problems.append(f"{where}.cell_type is {describe(node.get('cell_type'))}")
            cell_type = ""
        source = _text(node.get("source", ""))
        if source is None:
            self.problems.append(f"{where}.source is {describe(node['source'])}, not text")
            source = ""
        cell: dict[str, Any] = {
            "id": cell_id,
            "cell_type": cell_type,
            "metadata": self.json_map(node.get("metadata", {}), f"{where}.metadata", _CELL_VALUE),
            "source": split_lines(source),
        }
        if "attachments" in node and cell_type == "code" and not self.relaxed:
            # e.g. a markdown cell with attachments turned into code: 4.5 has no place for them
            self.repairs.append(
                f"{where}.attachments not written: nbformat 4.5 does not allow them on a code "
                "cell (they stay in the document)"
            )
        elif "attachments" in node:
            attachments = self.json_map(node["attachments"], f"{where}.attachments", _CELL_VALUE)
            cell["attachments"] = {}
            for name, bundle in attachments.items():
                label = f"{where}.attachments.{name}"
                try:
                    cell["attachments"][name] = _bounded(
                        _split_bundle(bundle), label, _CELL_VALUE, self.repairs
                    )
                except _Unwritable as exc:
                    self.problems.append(str(exc))
        if cell_type == "code":
            cell["execution_count"] = self.count(node.get("execution_count"), where)
            cell["outputs"] = self.outputs(node.get("outputs"), where)
        self.extras(node.get("extra"), where, cell, _CELL_EXTRA)
        return cell

    def settle_ids(self, cells: list[tuple[int, dict[str, Any]]]) -> None:
        """nbformat's id rules: every id valid and unique (the first of a repeat keeps it)."""
        taken = {c["id"] for _, c in cells if isinstance(c["id"], str) and _ID.fullmatch(c["id"])}
        seen: dict[str, int] = {}
        for index, cell in cells:
            old = cell["id"]
            if old is None:
                why = "is missing or not a string"
            elif old == "":
                why = "is empty"
            elif not _ID.fullmatch(old):
                why = "is not a valid cell id (1 to 64 of a-z, A-Z, 0-9, '-', '_')"
            elif old in seen:
                why = f"repeats the id of cells[{seen[old]}]"
            else:
                seen[old] = index
                continue
            new = stable_id(index, cell["cell_type"], "".join(cell["source"]), taken)
            taken.add(new)
            seen[new] = index
            cell["id"] = new
            self.repairs.append(f"cells[{index}]: id {old!r} {why}: written as {new!r}")


def _minor(node: Any, repairs: list[str]) -> int:
    """The ``nbformat_minor`` to write: the file's when above 5, else 5."""
    value = _text(node) if isinstance(node, TextValue) else node
    if value is None:
        return 5
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return max(5, int(value))
    if type(value) is int:
        return max(5, value)
    repairs.append(f"nbformat_minor: {describe(node)} is not a number: written as 5")
    return 5


def _build(
    doc: NotebookDoc, store: BlobStore, previous: Previous | None
) -> tuple[dict[str, Any], list[str]]:
    tree = doc.read_tree()
    repairs: list[str] = []
    minor = _minor(tree.get("nbformat_minor"), repairs)
    ex = _Export(store, minor > 5, previous)
    ex.repairs = repairs
    cells_node = tree.get("cells", [])
    cells: list[tuple[int, dict[str, Any]]] = []
    if isinstance(cells_node, list):
        for index, node in enumerate(cells_node):
            cell = ex.cell(index, node)
            if cell is not None:
                cells.append((index, cell))
    else:
        ex.problems.append(f"cells is {describe(cells_node)}, not a list")
    ex.settle_ids(cells)
    for index, cell in cells:
        if cell["cell_type"]:
            where = f"cells[{index}] (id {cell['id']!r})"
            checked = {**cell, "outputs": []} if "outputs" in cell else cell
            error = cell_error(checked, where, relaxed=ex.relaxed)
            if error is not None:
                bare = cell_error({**checked, "metadata": {}}, where, relaxed=ex.relaxed)
                only_metadata = cell["metadata"] if bare is None else None
                ex.schema_error(error, only_metadata, ex.previous_cell_metadata)
    notebook: dict[str, Any] = {
        "cells": [cell for _, cell in cells],
        "metadata": ex.json_map(tree.get("metadata", {}), "metadata", _TOP_META),
        "nbformat": 4,
        "nbformat_minor": minor,
    }
    ex.extras(tree.get("extra"), "", notebook, _TOP_EXTRA)
    error = notebook_error({**notebook, "cells": []}, relaxed=ex.relaxed)
    if error is not None:
        bare = notebook_error({**notebook, "cells": [], "metadata": {}}, relaxed=ex.relaxed)
        only_metadata = notebook["metadata"] if bare is None else None
        ex.schema_error(error, only_metadata, lambda: [ex.on_disk().get("metadata")])
    if ex.problems:
        raise _refusal(ex.problems, minor)
    return notebook, ex.repairs


def _refusal(problems: list[str], minor: int) -> InvalidNotebook:
    listed = "; ".join(problems[:_MAX_LISTED])
    if len(problems) > _MAX_LISTED:
        listed += f"; and {len(problems) - _MAX_LISTED} more"
    return InvalidNotebook(
        f"save refused: {len(problems)} element(s) cannot be written as valid nbformat "
        f"4.{minor}: {listed}"
    )


def _encode(notebook: dict[str, Any]) -> bytes:
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
    try:
        data = (text + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: neither UTF-8 nor readable JSON
        raise InvalidNotebook(
            f"save refused: a string cannot be written as UTF-8 ({exc})"
        ) from None
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(
            f"save refused: the notebook would be {len(data)} bytes, over the "
            f"{MAX_NOTEBOOK_BYTES} bytes nbstream reads back"
        )
    return data


def export_for_save(
    doc: NotebookDoc, store: BlobStore, previous: Previous | None = None
) -> Exported:
    """The document as valid, re-readable ``.ipynb`` bytes, and the repairs made.

    ``previous`` gives the notebook the bytes will replace (parsed JSON), asked for only when
    metadata fails nbformat's schema (see the module docstring).

    Raises:
        InvalidNotebook: elements that cannot be written faithfully (each named).
        BlobStoreError: the blob store could not be read.
    """
    notebook, repairs = _build(doc, store, previous)
    data = _encode(notebook)
    for repair in repairs:
        log.info("export of %s: %s", doc.notebook_id, repair)
    return Exported(data, tuple(repairs))


def export_notebook_dict(
    doc: NotebookDoc, store: BlobStore, previous: Previous | None = None
) -> dict[str, Any]:
    """The document as a valid nbformat notebook dict (repairs applied; InvalidNotebook)."""
    return _build(doc, store, previous)[0]


def export_notebook(doc: NotebookDoc, store: BlobStore, previous: Previous | None = None) -> bytes:
    """The document as ``.ipynb`` bytes, formatted exactly like nbformat writes nbformat 4.5."""
    return export_for_save(doc, store, previous).data


def read_previous(path: str | os.PathLike[str]) -> Previous:
    """A :data:`Previous` that parses the file at ``path`` when asked (None if it cannot)."""

    def read() -> Any:
        with open(path, "rb") as handle:
            data = handle.read(MAX_NOTEBOOK_BYTES + 1)
        if len(data) > MAX_NOTEBOOK_BYTES:
            return None
        return jiter.from_json(data.removeprefix(b"\xef\xbb\xbf"))

    return read
