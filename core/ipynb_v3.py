"""Upgrade an nbformat 3 notebook (already parsed into python values) to the nbformat 4 shape.

This mirrors ``nbformat.v4.convert.upgrade`` (nbformat 5.11) applied to what nbformat's v3 reader
produces (``nbformat.v3.rwbase.rejoin_lines``), with these deliberate differences:

* cells get no ``id`` here: :mod:`core.ipynb` assigns the same stable, content-derived ids it gives
  every id-less cell (nbformat mints random ones);
* ``metadata.orig_nbformat`` / ``orig_nbformat_minor`` are not added: nbformat strips them again
  whenever it writes a file (``strip_transient``), so they never reach disk.
  ``ParsedNotebook.nbformat`` records the origin instead;
* the v3 ``pdf`` output key becomes ``application/pdf`` (nbformat's alias table lacks it and would
  leave a non-MIME ``pdf`` key in ``data``);
* where nbformat would crash (a ``level`` that is not an integer, a non-string ``input`` line,
  a ``metadata`` that is not an object, ...) we raise :class:`NotebookLoadError` naming the field;
  a v3 ``json`` output value that is not valid JSON text is kept as a string instead of failing
  the load (individual outputs never fail a load).

Everything else is nbformat's: worksheets are flattened in order; heading cells become markdown
``"#" * level + " " + " ".join(source.splitlines())``; ``html`` cells become markdown; code cells
drop ``language``, move ``collapsed`` into ``metadata``, rename ``input`` → ``source`` and
``prompt_number`` → ``execution_count``; ``pyout`` → ``execute_result`` (``prompt_number`` →
``execution_count``), ``pyerr`` → ``error``, ``stream.stream`` → ``stream.name`` (default
``stdout``); every other key of a ``pyout``/``display_data`` output moves into ``data`` with the v3
aliases renamed to MIME types (also inside the output's ``metadata``); notebook ``metadata.name``
and ``metadata.signature`` are dropped.
"""

from __future__ import annotations

from typing import Any

import jiter

from core.errors import NotebookLoadError
from core.json_values import check_tree, json_type

# nbformat.v4.convert._mime_map (same order), plus pdf.
_MIME_MAP: tuple[tuple[str, str], ...] = (
    ("text", "text/plain"),
    ("html", "text/html"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpeg", "image/jpeg"),
    ("latex", "text/latex"),
    ("json", "application/json"),
    ("javascript", "application/javascript"),
    ("pdf", "application/pdf"),
)
# nbformat.v3.rwbase._multiline_outputs
_MULTILINE_OUTPUTS = ("text", "html", "svg", "latex", "javascript", "json")
_OUTPUT_TOP_KEYS = frozenset({"output_type", "execution_count", "metadata"})


def upgrade_v3(
    root: dict[str, Any], *, max_depth: int
) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """Return ``([(label, v4-shaped cell), ...], notebook metadata)`` for a v3 notebook.

    ``label`` names the cell in the original file (``worksheets[0].cells[3]``) for error messages.
    """
    metadata = root.get("metadata", {})
    if type(metadata) is not dict:
        raise NotebookLoadError(f"'metadata' must be an object (got {json_type(metadata)})")
    metadata = dict(metadata)
    metadata.pop("name", None)
    metadata.pop("signature", None)

    worksheets = root.get("worksheets", [])
    if type(worksheets) is not list:
        raise NotebookLoadError(f"'worksheets' must be an array (got {json_type(worksheets)})")
    cells: list[tuple[str, Any]] = []
    for w, ws in enumerate(worksheets):
        if type(ws) is not dict:
            raise NotebookLoadError(f"worksheets[{w}] is not an object (got {json_type(ws)})")
        ws_cells = ws.get("cells", [])
        if type(ws_cells) is not list:
            raise NotebookLoadError(
                f"worksheets[{w}].cells must be an array (got {json_type(ws_cells)})"
            )
        for j, cell in enumerate(ws_cells):
            where = f"worksheets[{w}].cells[{j}]"
            cells.append((where, _upgrade_cell(cell, where, max_depth)))
    return cells, metadata


def _join_lines(lines: list[Any], where: str) -> str:
    """nbformat.v3.rwbase._join_lines, rejecting non-string items."""
    for k, line in enumerate(lines):
        if type(line) is not str:
            raise NotebookLoadError(
                f"{where} must be a string or a list of strings (got {json_type(line)} at item {k})"
            )
    if lines and lines[0].endswith(("\n", "\r")):
        return "".join(lines)  # written by splitlines(True)
    return "\n".join(lines)  # written by an old splitlines()


def _text_field(cell: dict[str, Any], key: str, where: str) -> str:
    value = cell.get(key, "")
    if type(value) is list:
        return _join_lines(value, f"{where}.{key}")
    if type(value) is not str:
        raise NotebookLoadError(
            f"{where}.{key} must be a string or a list of strings (got {json_type(value)})"
        )
    return value


def _upgrade_cell(raw: Any, where: str, max_depth: int) -> Any:
    if type(raw) is not dict or type(raw.get("cell_type")) is not str:
        return raw  # core.ipynb reports it with the v4 rules and this label
    cell = dict(raw)
    cell.pop("id", None)  # nbformat replaces any id; we derive a stable one later
    metadata = cell.setdefault("metadata", {})
    if type(metadata) is not dict:
        raise NotebookLoadError(f"{where}.metadata must be an object (got {json_type(metadata)})")
    cell["metadata"] = metadata = dict(metadata)
    cell_type = cell["cell_type"]
    if cell_type == "code":
        cell.pop("language", None)
        if "collapsed" in cell:
            metadata["collapsed"] = cell.pop("collapsed")
        cell["source"] = _text_field(cell, "input", where)
        cell.pop("input", None)
        cell["execution_count"] = cell.pop("prompt_number", None)
        outputs = cell.get("outputs", [])
        if type(outputs) is list:
            cell["outputs"] = [_upgrade_output(o, max_depth) for o in outputs]
        return cell
    source = _text_field(cell, "source", where)
    if cell_type == "heading":
        level = cell.pop("level", 1)
        if type(level) is not int:
            raise NotebookLoadError(f"{where}.level must be an integer (got {json_type(level)})")
        cell["cell_type"] = "markdown"
        source = "#" * level + " " + " ".join(source.splitlines())
    elif cell_type == "html":
        cell["cell_type"] = "markdown"
    cell["source"] = source
    return cell


def _to_mime_key(d: dict[str, Any]) -> dict[str, Any]:
    for alias, mime in _MIME_MAP:
        if alias in d:
            d[mime] = d.pop(alias)
    return d


def _upgrade_output(raw: Any, max_depth: int) -> Any:
    if type(raw) is not dict:
        return raw  # the manifest keeps it as raw JSON
    output = dict(raw)
    for key in _MULTILINE_OUTPUTS:  # v3 reader: rejoin_lines
        item = output.get(key)
        if type(item) is list and all(type(line) is str for line in item):
            output[key] = _join_lines(item, "")
    output_type = output.get("output_type")
    if output_type in ("pyout", "display_data"):
        output.setdefault("metadata", {})
        if output_type == "pyout":
            output["output_type"] = "execute_result"
            output["execution_count"] = output.pop("prompt_number", None)
        data = {key: output.pop(key) for key in list(output) if key not in _OUTPUT_TOP_KEYS}
        _to_mime_key(data)
        output["data"] = data
        if type(output["metadata"]) is dict:
            output["metadata"] = _to_mime_key(dict(output["metadata"]))
        json_text = data.get("application/json")
        if type(json_text) is str:
            try:
                value = jiter.from_json(json_text.encode(), allow_inf_nan=False)
            except ValueError:
                pass  # not JSON text: keep the string
            else:
                if check_tree(value, max_depth) is None:
                    data["application/json"] = value
    elif output_type == "pyerr":
        output["output_type"] = "error"
    elif output_type == "stream":
        output["name"] = output.pop("stream", "stdout")
    return output
