"""Read ``.ipynb`` bytes into cell records (the export is :mod:`core.ipynb_export`).

Parsing (:func:`parse_notebook`) uses jiter for the whole file, then validates the few fields the
notebook document needs. The load reads through :mod:`core.ipynb_stream` instead, which gives the
same cells cell by cell and falls back to this function wherever it cannot be exact. Every
malformed input raises :class:`NotebookLoadError` with a precise message. Decisions:

* **Size** is checked first (``max_bytes``). A leading UTF-8 **BOM** is accepted and stripped
  (Windows editors write one; JSON forbids it but Jupyter's readers tolerate it); byte offsets
  in messages count from the start of the file, BOM included. The bytes must be valid UTF-8 (checked
  up front so the message gives the exact byte). NaN/Infinity literals are rejected, and so are
  numbers that overflow to infinity (``1e999``): neither can be written back as JSON.
* **Nesting** deeper than ``max_depth`` (64) is rejected with ``nesting too deep (> 64 levels) at
  byte N``. jiter itself stops at ~200 levels (a fast, recursion-free error we map to the same
  message), so hostile input such as 100 000 ``[`` fails in microseconds; depths between 65 and 200
  are caught by one level-by-level pass over the parsed containers (no recursion), which also finds
  overflowed floats. Only on failure is the file scanned for the byte offset.
* **Duplicate object keys**: the last one wins (jiter and Python's ``json`` agree; so does
  nbformat).
* **Versions**: nbformat 4 with any minor (a minor above 5 is read as 4.5 and noted in
  ``ParsedNotebook.notes``; a missing minor reads as 0); nbformat 3 is upgraded to v4
  (:mod:`core.ipynb_v3`, mirroring ``nbformat.v4.convert.upgrade``); anything else is rejected.
* **Cells**: ``cells`` absent → zero cells. ``cell_type`` must be a string (any value is kept).
  ``source`` absent → ``""``; a list of strings is joined with ``""``. For code cells
  ``execution_count`` must be an integer or null and ``outputs`` an array (kept as raw python
  values: the manifest module decides per output). ``metadata`` must be an object,
  ``attachments`` an object when present.
* **Unknown keys are kept**, as nbformat keeps them: every top-level key but :data:`TOP_KEYS`
  (``ParsedNotebook.extra``) and every cell key but :data:`CELL_KEYS` (code cells:
  :data:`CODE_CELL_KEYS`) — so ``execution_count``/``outputs`` of a markdown, raw or unknown-type
  cell too — go unchecked into ``CellRecord.extra`` (None when there are none). The export writes
  them back for a notebook of a newer minor (> 5), which nbformat validates with relaxed rules.
* **Ids**: a non-empty string id is kept verbatim (no pattern check here: the export gives an id
  that nbformat 4.5 would reject a fresh one, and says so — PROTOCOL.md 10.6);
  a non-string id is an error. A missing or empty id (nbformat < 4.5, v3) gets a stable id,
  ``"cell-" + sha256(f"{index}:{cell_type}:{source}")[:8]`` (re-hashed with a ``:n`` suffix on the
  rare collision), so the same file always gets the same ids. A duplicate id keeps its first
  occurrence; later ones get a fresh stable id the same way (nbformat's repair), counted in
  ``ParsedNotebook.repaired_ids``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jiter

from core.errors import NotebookLoadError
from core.ipynb_v3 import upgrade_v3
from core.json_values import check_tree, inf_path, json_text, json_type

if TYPE_CHECKING:
    from core.notebook_doc import CellSnapshot

MAX_NOTEBOOK_BYTES = 512 * 1024 * 1024
MAX_NESTING_DEPTH = 64

_BOM = b"\xef\xbb\xbf"
_UNSUPPORTED = (
    "unsupported nbformat {}: nbstream reads nbformat 4 (and upgrades 3); convert it with "
    "`jupyter nbconvert --to notebook --nbformat 4`"
)
_JITER_POSITION = re.compile(r"^(.*) at line (\d+) column (\d+)$", re.DOTALL)
# A JSON string (escapes included) or one bracket; used only to locate a too-deep nesting.
_DEPTH_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_NON_FINITE = (b"NaN", b"Infinity", b"-Infinity", b"+Infinity")
# The keys nbstream models; every other key is kept as it was (``extra``), as nbformat keeps it.
TOP_KEYS = frozenset({"cells", "metadata", "nbformat", "nbformat_minor"})
CELL_KEYS = frozenset({"id", "cell_type", "source", "metadata", "attachments"})
CODE_CELL_KEYS = CELL_KEYS | {"execution_count", "outputs"}


@dataclass(frozen=True, slots=True)
class CellRecord:
    """One cell as read from the file, in nbformat 4 terms."""

    index: int  # position in the (v4) cells array
    id: str
    cell_type: str
    source: str  # list sources joined with ""
    execution_count: str  # "5" or "null"
    outputs: tuple[Any, ...]  # raw nbformat-4 output objects (python values)
    metadata: dict[str, Any]
    attachments: dict[str, Any] | None
    extra: dict[str, Any] | None = None  # keys nbstream does not model for this cell type


@dataclass(frozen=True, slots=True)
class ParsedNotebook:
    """A parsed notebook: cells in order plus the top-level metadata."""

    cells: tuple[CellRecord, ...]
    metadata: dict[str, Any]
    nbformat: int  # as found in the file (3 or 4)
    nbformat_minor: int  # as found in the file (0 when absent)
    generated_ids: int = 0  # cells that had no (or an empty) id
    repaired_ids: int = 0  # later duplicates of an id, given a fresh one
    notes: tuple[str, ...] = ()  # non-fatal remarks (e.g. a newer minor read as 4.5)
    extra: dict[str, Any] = field(default_factory=dict)  # top-level keys nbstream does not model


def _depth_exceeded_at(data: bytes, max_depth: int) -> int | None:
    """Byte offset of the bracket that first opens level ``max_depth + 1`` (error path only)."""
    depth = 0
    for match in _DEPTH_TOKEN.finditer(data):
        char = data[match.start()]
        if char == 0x22:  # a string
            continue
        if char in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                return match.start()
        else:
            depth -= 1
    return None


def _line_start(data: bytes, line: int) -> int:
    pos = 0
    for _ in range(line - 1):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        pos = nl + 1
    return pos


def _jiter_error(data: bytes, error: ValueError, bom: int, max_depth: int) -> NotebookLoadError:
    text = str(error)
    match = _JITER_POSITION.match(text)
    if match is None:
        return NotebookLoadError(f"invalid JSON: {text}")
    reason, line, column = match.group(1), int(match.group(2)), int(match.group(3))
    start = _line_start(data, line)
    offset = min(start + max(column - 1, 0), len(data))
    char_column = len(data[start:offset].decode("utf-8", "replace")) + 1
    where = f"line {line} column {char_column} (byte {offset + bom})"
    if reason == "recursion limit exceeded":
        at = _depth_exceeded_at(data, max_depth)
        if at is not None:
            return NotebookLoadError(f"nesting too deep (> {max_depth} levels) at byte {at + bom}")
        return NotebookLoadError(f"nesting too deep (JSON parser limit) at {where}")
    if data.startswith(_NON_FINITE, offset) or data.startswith(b"-Infinity", max(offset - 1, 0)):
        return NotebookLoadError(f"NaN/Infinity are not valid JSON (at {where})")
    return NotebookLoadError(f"invalid JSON at {where}: {reason}")


def _parse_json(data: bytes, max_bytes: int, max_depth: int) -> Any:
    if len(data) > max_bytes:
        raise NotebookLoadError(f"notebook is {len(data)} bytes, over the limit of {max_bytes}")
    bom = 0
    if data.startswith(_BOM):
        data, bom = data[len(_BOM) :], len(_BOM)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise NotebookLoadError(
            f"invalid UTF-8 at byte {e.start + bom} (line {line}): {e.reason}"
        ) from None
    try:
        root = jiter.from_json(data, allow_inf_nan=False, cache_mode="keys")
    except ValueError as e:
        raise _jiter_error(data, e, bom, max_depth) from None
    problem = check_tree(root, max_depth)
    if problem == "depth":
        at = _depth_exceeded_at(data, max_depth)
        raise NotebookLoadError(
            f"nesting too deep (> {max_depth} levels) at byte {(at or 0) + bom}"
        )
    if problem == "inf":
        raise NotebookLoadError(
            f"number out of range at {inf_path(root)}: it overflows to infinity, "
            "which JSON cannot represent"
        )
    return root


# --------------------------------------------------------------------------- parsing
def parse_notebook(
    data: bytes, *, max_bytes: int = MAX_NOTEBOOK_BYTES, max_depth: int = MAX_NESTING_DEPTH
) -> ParsedNotebook:
    """Parse ``.ipynb`` bytes (nbformat 4, or 3 upgraded to 4); see the module docstring."""
    root = _parse_json(bytes(data), max_bytes, max_depth)
    if type(root) is not dict:
        raise NotebookLoadError(f"top level must be a JSON object (got {json_type(root)})")
    header = check_header(root)
    if header.nbformat == 4:
        raw_cells = root.get("cells", [])
        if type(raw_cells) is not list:
            raise NotebookLoadError(f"'cells' must be an array (got {json_type(raw_cells)})")
        labelled = [(f"cells[{i}]", cell) for i, cell in enumerate(raw_cells)]
        metadata, notes = header.metadata, header.notes
    else:
        labelled, metadata = upgrade_v3(root, max_depth=max_depth)
        notes = (*header.notes, f"nbformat 3.{header.nbformat_minor} upgraded to 4.5")
    fields = [cell_fields(where, cell) for where, cell in labelled]
    ids = IdAssigner({f.id for f in fields if f.id is not None})
    cells = tuple(ids.record(index, f) for index, f in enumerate(fields))
    return ParsedNotebook(
        cells=cells,
        metadata=metadata,
        nbformat=header.nbformat,
        nbformat_minor=header.nbformat_minor,
        generated_ids=ids.generated,
        repaired_ids=ids.repaired,
        notes=notes,
        extra=header.extra,
    )


@dataclass(frozen=True, slots=True)
class NotebookHeader:
    """The top-level fields of a notebook, checked (cells apart)."""

    nbformat: int  # 3 or 4
    nbformat_minor: int
    metadata: dict[str, Any]  # nbformat 4 only ({} for 3: upgrade_v3 reads its own)
    notes: tuple[str, ...]
    extra: dict[str, Any]  # nbformat 4 only: the top-level keys other than TOP_KEYS


def check_header(root: dict[str, Any]) -> NotebookHeader:
    """Check ``nbformat``, ``nbformat_minor`` and (for nbformat 4) ``metadata`` of the top level."""
    if "nbformat" not in root:
        raise NotebookLoadError("not a notebook: the 'nbformat' key is missing")
    major = root["nbformat"]
    if type(major) is not int:
        raise NotebookLoadError(f"'nbformat' must be an integer (got {json_type(major)})")
    minor = root.get("nbformat_minor", 0)
    if type(minor) is not int:
        raise NotebookLoadError(f"'nbformat_minor' must be an integer (got {json_type(minor)})")
    if major == 3:
        return NotebookHeader(3, minor, {}, (), {})
    if major != 4:
        raise NotebookLoadError(_UNSUPPORTED.format(major))
    notes: tuple[str, ...] = ()
    if "nbformat_minor" not in root:
        notes = ("no nbformat_minor: read as nbformat 4.0",)
    elif minor > 5:
        notes = (f"nbformat 4.{minor} is newer than 4.5: read as 4.5",)
    metadata = root.get("metadata", {})
    if type(metadata) is not dict:
        raise NotebookLoadError(f"'metadata' must be an object (got {json_type(metadata)})")
    extra = (
        {} if TOP_KEYS.issuperset(root) else {k: v for k, v in root.items() if k not in TOP_KEYS}
    )
    return NotebookHeader(4, minor, metadata, notes, extra)


def _source(cell: dict[str, Any], where: str) -> str:
    source = cell.get("source", "")
    if type(source) is str:
        return source
    if type(source) is list:
        for k, item in enumerate(source):
            if type(item) is not str:
                raise NotebookLoadError(
                    f"{where}.source must be a string or a list of strings "
                    f"(got {json_type(item)} at item {k})"
                )
        return "".join(source)
    raise NotebookLoadError(
        f"{where}.source must be a string or a list of strings (got {json_type(source)})"
    )


@dataclass(frozen=True, slots=True)
class CellFields:
    """One cell's checked fields, before its id is settled (``id`` None: none or empty)."""

    id: str | None
    cell_type: str
    source: str
    execution_count: str
    outputs: tuple[Any, ...]
    metadata: dict[str, Any]
    attachments: dict[str, Any] | None
    extra: dict[str, Any] | None  # None when the cell has no key outside CELL_KEYS


def cell_fields(where: str, cell: Any) -> CellFields:
    """Check one nbformat-4 cell (``where`` names it in errors, e.g. ``cells[3]``)."""
    if type(cell) is not dict:
        raise NotebookLoadError(f"{where} is not an object (got {json_type(cell)})")
    if "cell_type" not in cell:
        raise NotebookLoadError(f"{where} has no cell_type")
    cell_type = cell["cell_type"]
    if type(cell_type) is not str:
        raise NotebookLoadError(f"{where}.cell_type must be a string (got {json_type(cell_type)})")
    source = _source(cell, where)
    cell_id = cell.get("id")
    if cell_id is not None or "id" in cell:
        if type(cell_id) is not str:
            raise NotebookLoadError(f"{where}.id must be a string (got {json_type(cell_id)})")
        cell_id = cell_id or None
    metadata = cell.get("metadata", {})
    if type(metadata) is not dict:
        raise NotebookLoadError(f"{where}.metadata must be an object (got {json_type(metadata)})")
    attachments = cell.get("attachments")
    if "attachments" in cell and type(attachments) is not dict:
        raise NotebookLoadError(
            f"{where}.attachments must be an object (got {json_type(attachments)})"
        )
    count, outputs = "null", ()
    if cell_type == "code":
        raw_count = cell.get("execution_count")
        if type(raw_count) is int:
            count = str(raw_count)
        elif raw_count is not None:
            raise NotebookLoadError(
                f"{where}.execution_count must be an integer or null (got {json_type(raw_count)})"
            )
        raw_outputs = cell.get("outputs", [])
        if type(raw_outputs) is not list:
            raise NotebookLoadError(
                f"{where}.outputs must be an array (got {json_type(raw_outputs)})"
            )
        outputs = tuple(raw_outputs)
        known = CODE_CELL_KEYS
    else:
        known = CELL_KEYS
    extra = None if known.issuperset(cell) else {k: v for k, v in cell.items() if k not in known}
    return CellFields(cell_id, cell_type, source, count, outputs, metadata, attachments, extra)


class IdAssigner:
    """Settles cell ids in file order: explicit ids kept, missing ones and repeats made stable.

    ``taken`` holds the explicit ids the generated ones must avoid: every explicit id in the file
    for a whole-file parse. A streaming parse knows only those read so far; it must check
    :meth:`clashes` for each later explicit id (a clash means the whole-file answer differs).
    """

    def __init__(self, taken: set[str] | None = None) -> None:
        self._taken: set[str] = set(taken or ())
        self._seen: set[str] = set()
        self._made: set[str] = set()
        self.generated = 0  # cells that had no (or an empty) id
        self.repaired = 0  # later duplicates of an id, given a fresh one

    def clashes(self, explicit: str) -> bool:
        """Did an earlier cell get ``explicit`` as a generated id?"""
        return explicit in self._made

    def record(self, index: int, fields: CellFields) -> CellRecord:
        """The cell at ``index`` with its id settled."""
        cell_id = fields.id
        if cell_id is not None:
            self._taken.add(cell_id)
        if cell_id is None or cell_id in self._seen:
            if cell_id is None:
                self.generated += 1
            else:
                self.repaired += 1
            cell_id = stable_id(index, fields.cell_type, fields.source, self._taken)
            self._taken.add(cell_id)
            self._made.add(cell_id)
        self._seen.add(cell_id)
        return CellRecord(
            index,
            cell_id,
            fields.cell_type,
            fields.source,
            fields.execution_count,
            fields.outputs,
            fields.metadata,
            fields.attachments,
            fields.extra,
        )


def stable_id(index: int, cell_type: str, source: str, taken: set[str]) -> str:
    key = f"{index}:{cell_type}:{source}"
    attempt = 0
    while True:
        text = key if attempt == 0 else f"{key}:{attempt}"
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        candidate = f"cell-{digest[:8]}"
        if candidate not in taken:
            return candidate
        attempt += 1


# --------------------------------------------------------------------------- to the document
def notebook_metadata_to_doc(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Notebook metadata → ``{top-level key: JSON text of its value}``."""
    return {key: json_text(value) for key, value in metadata.items()}


def record_to_cell(record: CellRecord, output_refs: Sequence[str]) -> CellSnapshot:
    """A parsed cell plus its output refs (from ``manifest.outputs_to_refs``) → a CellSnapshot."""
    from core.notebook_doc import CellSnapshot  # lazy: parsing needs no automerge

    attachments = record.attachments
    return CellSnapshot(
        id=record.id,
        cell_type=record.cell_type,
        source=record.source,
        execution_count=record.execution_count,
        outputs=tuple(output_refs),
        metadata={key: json_text(value) for key, value in record.metadata.items()},
        attachments=None
        if attachments is None
        else {key: json_text(value) for key, value in attachments.items()},
        extra=None if record.extra is None else notebook_metadata_to_doc(record.extra),
    )
