"""Tests for core.ipynb: parse errors (one per message), ids, v3 upgrade, file reading, export."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from core.errors import NotebookLoadError
from core.ipynb import (
    MAX_NESTING_DEPTH,
    CellRecord,
    ParsedNotebook,
    check_tree,
    notebook_metadata_to_doc,
    parse_notebook,
)
from core.ipynb_export import split_lines
from core.notebook_file import read_notebook_file

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "notebooks"
V3_CORPUS = sorted(CORPUS.glob("ipython-2.4.1__*.ipynb")) if CORPUS.is_dir() else []
UNSUPPORTED = (
    "unsupported nbformat {}: nbstream reads nbformat 4 (and upgrades 3); convert it with "
    "`jupyter nbconvert --to notebook --nbformat 4`"
)


def nb4(*cells: Any, **top: Any) -> bytes:
    """A v4.5 notebook with the given cells (and top-level overrides) as JSON bytes."""
    doc: dict[str, Any] = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}
    doc.update(top)
    return json.dumps(doc).encode()


def nb3(*cells: Any, **top: Any) -> bytes:
    doc: dict[str, Any] = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "x"},
        "worksheets": [{"cells": list(cells), "metadata": {}}],
    }
    doc.update(top)
    return json.dumps(doc).encode()


def code(**fields: Any) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_type": "code",
        "id": "c",
        "metadata": {},
        "source": "",
        "execution_count": None,
        "outputs": [],
    }
    cell.update(fields)
    return cell


def nested(levels: int) -> bytes:
    """A valid notebook whose deepest container is at nesting level ``levels`` (top = 1)."""
    inner = "[" * (levels - 2) + "]" * (levels - 2)
    return f'{{"nbformat": 4, "metadata": {{"x": {inner}}}}}'.encode()


# --------------------------------------------------------------------------- error messages
ERRORS: list[tuple[str, bytes, str]] = [
    ("empty", b"", "invalid JSON at line 1 column 1 (byte 0): EOF while parsing a value"),
    ("syntax", b'{\n "nbformat": 4,,\n}', "invalid JSON at line 2 column 16 (byte 17): "),
    ("trailing", b'{"nbformat": 4} x', "invalid JSON at line 1 column 17 (byte 16): trailing"),
    (
        "bad-utf8",
        b'{"nbformat": 4, "x": "\xff"}',
        "invalid UTF-8 at byte 22 (line 1): invalid start",
    ),
    (
        "bad-utf8-line",
        b'{\n\n"x": "\xc3"}',
        "invalid UTF-8 at byte 9 (line 3): invalid continuation",
    ),
    ("surrogate-utf8", b'{"x": "\xed\xa0\x80"}', "invalid UTF-8 at byte 7 (line 1)"),
    ("nan", b'{"nbformat": 4, "x": NaN}', "NaN/Infinity are not valid JSON (at line 1 column 22"),
    ("inf", b'{"x": Infinity}', "NaN/Infinity are not valid JSON (at line 1 column 7 (byte 6))"),
    ("-inf", b'{"x": [1, -Infinity]}', "NaN/Infinity are not valid JSON (at line 1 column 1"),
    (
        "overflow",
        b'{"nbformat": 4, "metadata": {"a b": [1e999]}}',
        'at metadata["a b"][0]: it over',
    ),
    ("deep-hostile", b"[" * 100_000, "nesting too deep (> 64 levels) at byte 64"),
    ("deep-valid", nested(65), "nesting too deep (> 64 levels) at byte 96"),
    ("top-array", b"[]", "top level must be a JSON object (got array)"),
    ("top-string", b'"nb"', "top level must be a JSON object (got string)"),
    ("top-null", b"null", "top level must be a JSON object (got null)"),
    ("no-nbformat", b'{"cells": []}', "not a notebook: the 'nbformat' key is missing"),
    ("nbformat-str", b'{"nbformat": "4"}', "'nbformat' must be an integer (got string)"),
    ("nbformat-float", b'{"nbformat": 4.0}', "'nbformat' must be an integer (got number)"),
    ("nbformat-bool", b'{"nbformat": true}', "'nbformat' must be an integer (got boolean)"),
    ("nbformat-1", b'{"nbformat": 1}', UNSUPPORTED.format(1)),
    ("nbformat-2", b'{"nbformat": 2, "worksheets": []}', UNSUPPORTED.format(2)),
    ("nbformat-5", b'{"nbformat": 5, "cells": []}', UNSUPPORTED.format(5)),
    ("minor-str", b'{"nbformat": 4, "nbformat_minor": "5"}', "'nbformat_minor' must be an intege"),
    ("metadata", nb4(metadata=[]), "'metadata' must be an object (got array)"),
    ("cells-object", nb4(cells={}), "'cells' must be an array (got object)"),
    ("cell-array", nb4(code(id="a"), code(id="b"), code(id="c"), code(id="d"), []), "cells[4] is "),
    ("cell-null", nb4(None), "cells[0] is not an object (got null)"),
    ("no-cell-type", nb4({"source": ""}), "cells[0] has no cell_type"),
    ("cell-type-num", nb4(code(cell_type=3)), "cells[0].cell_type must be a string (got number)"),
    ("source-num", nb4(code(id="a"), code(id="b"), code(source=5)), "cells[2].source must be a s"),
    ("source-null", nb4(code(source=None)), "or a list of strings (got null)"),
    ("source-item", nb4(code(source=["a", 1])), "list of strings (got number at item 1)"),
    ("id-num", nb4(code(id=7)), "cells[0].id must be a string (got number)"),
    ("id-null", nb4(code(id=None)), "cells[0].id must be a string (got null)"),
    ("count-str", nb4(code(execution_count="1")), "execution_count must be an integer or null (g"),
    ("count-float", nb4(code(execution_count=1.0)), "integer or null (got number)"),
    ("count-bool", nb4(code(execution_count=True)), "integer or null (got boolean)"),
    ("outputs-obj", nb4(code(outputs={})), "cells[0].outputs must be an array (got object)"),
    ("outputs-null", nb4(code(outputs=None)), "cells[0].outputs must be an array (got null)"),
    ("cell-meta", nb4(code(metadata="x")), "cells[0].metadata must be an object (got string)"),
    ("attach-list", nb4(code(attachments=[])), "cells[0].attachments must be an object (got arr"),
    ("attach-null", nb4(code(attachments=None)), "cells[0].attachments must be an object (got nul"),
    ("v3-worksheets", nb3(worksheets={}), "'worksheets' must be an array (got object)"),
    ("v3-worksheet", nb3(worksheets=[1]), "worksheets[0] is not an object (got number)"),
    (
        "v3-ws-cells",
        nb3(worksheets=[{"cells": "x"}]),
        "worksheets[0].cells must be an array (got s",
    ),
    ("v3-cell", nb3({"cell_type": "raw", "source": ""}, "x"), "worksheets[0].cells[1] is not an "),
    ("v3-cell-type", nb3({"source": ""}), "worksheets[0].cells[0] has no cell_type"),
    ("v3-input", nb3({"cell_type": "code", "input": [1]}), "cells[0].input must be a string or a"),
    ("v3-source", nb3({"cell_type": "markdown", "source": 5}), "cells[0].source must be a string"),
    ("v3-level", nb3({"cell_type": "heading", "level": "2"}), "level must be an integer (got str"),
    ("v3-meta", nb3({"cell_type": "raw", "metadata": []}), "cells[0].metadata must be an object"),
    ("v3-count", nb3({"cell_type": "code", "prompt_number": "*"}), "execution_count must be an in"),
    ("v3-outputs", nb3({"cell_type": "code", "outputs": 1}), "cells[0].outputs must be an array"),
    ("v3-metadata", nb3(metadata=1), "'metadata' must be an object (got number)"),
]


@pytest.mark.parametrize(("data", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_parse_error_messages(data: bytes, message: str) -> None:
    with pytest.raises(NotebookLoadError) as info:
        parse_notebook(data)
    assert message in str(info.value)


def test_size_is_checked_first() -> None:
    with pytest.raises(NotebookLoadError, match=r"^notebook is 9 bytes, over the limit of 8$"):
        parse_notebook(b"\xff" * 9, max_bytes=8)
    assert parse_notebook(b'{"nbformat":4}', max_bytes=14).cells == ()


def test_depth_limit_boundary_and_override() -> None:
    assert parse_notebook(nested(MAX_NESTING_DEPTH)).metadata["x"] is not None
    data = nested(65)
    first = data.index(b"[")  # opens level 3
    assert data[first + 62 : first + 63] == b"["  # opens level 65: byte 96
    with pytest.raises(NotebookLoadError, match=r"nesting too deep \(> 64 levels\) at byte 96$"):
        parse_notebook(data)
    with pytest.raises(NotebookLoadError, match=r"nesting too deep \(> 10 levels\) at byte 42$"):
        parse_notebook(nested(11), max_depth=10)
    # strings containing brackets do not count; the offset is exact
    data = b'{"nbformat": 4, "metadata": {"s": "[[[{{{\\"[[", "x": [[[]]]}}'
    at = data.index(b'"x": ') + 7  # the third "[" of x opens level 5
    assert data[at - 2 : at + 1] == b"[[["
    with pytest.raises(NotebookLoadError, match=rf"\(> 4 levels\) at byte {at}$"):
        parse_notebook(data, max_depth=4)
    # beyond jiter's own recursion limit (~200) the same message, offsets counted with the BOM
    with pytest.raises(NotebookLoadError, match=r"\(> 64 levels\) at byte 67$"):
        parse_notebook(b"\xef\xbb\xbf" + b"[" * 300 + b"]" * 300)


def test_check_tree() -> None:
    assert check_tree({"a": [1, "x", {"b": None}]}, 3) is None
    assert check_tree({"a": [1, "x", {"b": None}]}, 2) == "depth"
    assert check_tree([1.5, [float("inf")]], 64) == "inf"
    assert check_tree(float("-inf"), 64) == "inf"
    assert check_tree("x", 0) is None


def test_bom_is_accepted_and_stripped() -> None:
    data = nb4(code(source="x"))
    assert parse_notebook(b"\xef\xbb\xbf" + data) == parse_notebook(data)
    with pytest.raises(NotebookLoadError, match=r"invalid UTF-8 at byte 25 \(line 1\)"):
        parse_notebook(b'\xef\xbb\xbf{"nbformat": 4, "x": "\xff"}')


def test_duplicate_keys_last_wins() -> None:
    parsed = parse_notebook(b'{"nbformat": 3, "nbformat": 4, "cells": [], "cells": []}')
    assert parsed.nbformat == 4


# --------------------------------------------------------------------------- cells and fields
def test_fields() -> None:
    big = 10**30
    parsed = parse_notebook(
        nb4(
            code(id="a", source=["x = 1\n", "y"], execution_count=big, outputs=[1, {"a": 2}]),
            {"cell_type": "markdown", "id": "b", "source": "# t", "attachments": {"i.png": {}}},
            {"cell_type": "raw", "id": "c", "execution_count": "x", "outputs": 3},
            code(id="d", execution_count=0),
            {"cell_type": "code", "id": "e", "extra": 1},
        )
    )
    a, b, c, d, e = parsed.cells
    assert a == CellRecord(0, "a", "code", "x = 1\ny", str(big), (1, {"a": 2}), {}, None)
    assert b == CellRecord(1, "b", "markdown", "# t", "null", (), {}, {"i.png": {}})
    # non-code: execution_count/outputs are not read, but kept unchecked as unknown keys
    extra = {"execution_count": "x", "outputs": 3}
    assert c == CellRecord(2, "c", "raw", "", "null", (), {}, None, extra)
    assert d.execution_count == "0"
    assert e == CellRecord(4, "e", "code", "", "null", (), {}, None, {"extra": 1})
    assert parsed.nbformat == 4 and parsed.nbformat_minor == 5 and parsed.notes == ()


def test_missing_cells_and_minor() -> None:
    parsed = parse_notebook(b'{"nbformat": 4}')
    assert parsed == ParsedNotebook(
        (), {}, 4, 0, notes=("no nbformat_minor: read as nbformat 4.0",)
    )
    newer = parse_notebook(b'{"nbformat": 4, "nbformat_minor": 9, "cells": [], "metadata": {}}')
    assert newer.nbformat_minor == 9
    assert newer.notes == ("nbformat 4.9 is newer than 4.5: read as 4.5",)


# --------------------------------------------------------------------------- ids
_ID_RE = re.compile(r"^cell-[0-9a-f]{8}$")


def test_generated_ids_are_stable_and_unique() -> None:
    cells = [{"cell_type": "markdown", "source": "same"} for _ in range(50)]
    data = json.dumps({"nbformat": 4, "nbformat_minor": 4, "cells": cells}).encode()
    first, second = parse_notebook(data), parse_notebook(data)
    ids = [c.id for c in first.cells]
    assert ids == [c.id for c in second.cells]
    assert len(set(ids)) == 50 and all(_ID_RE.match(i) for i in ids)
    assert first.generated_ids == 50 and first.repaired_ids == 0
    assert ids[0] == "cell-" + hashlib.sha256(b"0:markdown:same").hexdigest()[:8]


def test_duplicate_ids_repaired() -> None:
    parsed = parse_notebook(
        nb4(code(id="x"), code(id="y"), code(id="x", source="2"), code(id="x"), code(id=""))
    )
    ids = [c.id for c in parsed.cells]
    assert ids[:2] == ["x", "y"]  # the first occurrence keeps its id
    assert len(set(ids)) == 5 and all(_ID_RE.match(i) for i in ids[2:])
    assert parsed.repaired_ids == 2 and parsed.generated_ids == 1  # "" counts as missing


def test_generated_ids_avoid_explicit_ids() -> None:
    clash = "cell-" + hashlib.sha256(b"0:code:").hexdigest()[:8]
    parsed = parse_notebook(nb4({"cell_type": "code"}, code(id=clash)))
    assert parsed.cells[1].id == clash
    assert parsed.cells[0].id != clash and _ID_RE.match(parsed.cells[0].id)


def test_ids_kept_verbatim() -> None:
    odd = "not a valid/nbformat id " + "x" * 100
    assert parse_notebook(nb4(code(id=odd))).cells[0].id == odd


# --------------------------------------------------------------------------- nbformat 3
def _v4_cells(parsed: ParsedNotebook) -> list[dict[str, Any]]:
    """The parsed cells as nbformat 4 dicts (ids omitted)."""
    cells = []
    for r in parsed.cells:
        cell: dict[str, Any] = {
            "cell_type": r.cell_type,
            "metadata": r.metadata,
            "source": r.source,
        }
        if r.attachments is not None:
            cell["attachments"] = r.attachments
        if r.cell_type == "code":
            cell["execution_count"] = (
                None if r.execution_count == "null" else int(r.execution_count)
            )
            cell["outputs"] = list(r.outputs)
        cells.append(cell)
    return cells


def _nbformat_upgrade(data: bytes) -> dict[str, Any]:
    """The oracle: nbformat's v3 reader + ``nbformat.v4.upgrade``, as plain JSON values."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.upgrade(nbformat.v3.reads_json(data.decode()))
    nb = json.loads(json.dumps(nb))
    for key in ("orig_nbformat", "orig_nbformat_minor"):  # stripped by nbformat's writer
        nb["metadata"].pop(key)
    for cell in nb["cells"]:
        del cell["id"]  # random in nbformat, stable in ours
    return nb


@pytest.mark.skipif(not V3_CORPUS, reason="v3 corpus notebooks not found at " + str(CORPUS))
@pytest.mark.parametrize("path", V3_CORPUS, ids=[p.name for p in V3_CORPUS])
def test_v3_upgrade_matches_nbformat(path: Path) -> None:
    data = path.read_bytes()
    parsed = parse_notebook(data)
    expected = _nbformat_upgrade(data)
    assert (parsed.nbformat, parsed.nbformat_minor) == (3, 0)
    assert parsed.notes == ("nbformat 3.0 upgraded to 4.5",)
    assert parsed.metadata == expected["metadata"]
    assert _v4_cells(parsed) == expected["cells"]
    assert parsed.generated_ids == len(parsed.cells)


def test_v3_upgrade_synthetic() -> None:
    data = nb3(
        {"cell_type": "heading", "level": 2, "source": ["Big\n", "Title"], "metadata": {}},
        {"cell_type": "heading", "source": "a\rb"},
        {"cell_type": "html", "source": "<b>x</b>"},
        {"cell_type": "markdown", "source": ["old", "style"], "rendered": "x"},
        {
            "cell_type": "code",
            "language": "python",
            "collapsed": True,
            "input": ["x\n", "y"],
            "prompt_number": 3,
            "metadata": {"k": 1},
            "outputs": [
                {"output_type": "pyout", "prompt_number": 3, "text": ["1", "2"], "png": "AA"},
                {"output_type": "display_data", "pdf": "JVBE", "json": '{"a": [1]}'},
                {"output_type": "display_data", "json": "{not json", "metadata": {"png": {}}},
                {"output_type": "stream", "stream": "stderr", "text": "e"},
                {"output_type": "stream", "text": "o"},
                {"output_type": "pyerr", "ename": "E", "evalue": "v", "traceback": []},
                "not an object",
            ],
        },
        metadata={"name": "n", "signature": "s", "kernel": 1},
    )
    parsed = parse_notebook(data)
    assert parsed.metadata == {"kernel": 1}
    cells = _v4_cells(parsed)
    assert [c["cell_type"] for c in cells] == ["markdown"] * 4 + ["code"]
    assert [c["source"] for c in cells[:4]] == ["## Big Title", "# a b", "<b>x</b>", "old\nstyle"]
    assert cells[4]["source"] == "x\ny" and cells[4]["execution_count"] == 3
    assert cells[4]["metadata"] == {"k": 1, "collapsed": True}
    assert cells[4]["outputs"] == [
        {
            "output_type": "execute_result",
            "execution_count": 3,
            "metadata": {},
            "data": {"text/plain": "1\n2", "image/png": "AA"},
        },
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"application/pdf": "JVBE", "application/json": {"a": [1]}},
        },
        {
            "output_type": "display_data",
            "metadata": {"image/png": {}},
            "data": {"application/json": "{not json"},
        },
        {"output_type": "stream", "name": "stderr", "text": "e"},
        {"output_type": "stream", "name": "stdout", "text": "o"},
        {"output_type": "error", "ename": "E", "evalue": "v", "traceback": []},
        "not an object",
    ]


def test_v3_synthetic_matches_nbformat_except_pdf() -> None:
    cells = [
        {"cell_type": "heading", "level": 3, "source": "T"},
        {"cell_type": "markdown", "source": ["a\n", "b"]},
        {
            "cell_type": "code",
            "input": "1",
            "language": "python",
            "collapsed": False,
            "outputs": [
                {"output_type": "pyout", "prompt_number": 1, "text": "1", "html": ["<b>", "</b>"]},
                {"output_type": "stream", "stream": "stdout", "text": ["a\n", "b"]},
            ],
        },
    ]
    data = nb3(*[{**c, "metadata": {}} for c in cells])
    assert _v4_cells(parse_notebook(data)) == _nbformat_upgrade(data)["cells"]


# --------------------------------------------------------------------------- to the document
def test_json_text_rule() -> None:
    texts = notebook_metadata_to_doc({"k": {"b": [1, "é"], "a": None}, "n": 1.5})
    assert texts == {"k": '{"a":null,"b":[1,"é"]}', "n": "1.5"}


def test_record_to_cell() -> None:
    pytest.importorskip("core.notebook_doc")
    from core.ipynb import record_to_cell

    record = CellRecord(0, "i", "markdown", "s", "null", (), {"z": {"y": 1, "x": 2}}, {"a": {}})
    cell = record_to_cell(record, ["ref"])
    assert (cell.id, cell.cell_type, cell.source, cell.execution_count) == (
        "i",
        "markdown",
        "s",
        "null",
    )
    assert cell.outputs == ("ref",)
    assert dict(cell.metadata) == {"z": '{"x":2,"y":1}'}
    assert cell.attachments is not None and dict(cell.attachments) == {"a": "{}"}
    assert (
        record_to_cell(CellRecord(0, "i", "raw", "", "null", (), {}, None), []).attachments is None
    )


@pytest.mark.parametrize(
    "text",
    ["", "a", "a\n", "a\nb", "a\r\nb\r\n", "a\rb\r", "\n\n", "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g"],
)
def test_split_lines_joins_back_exactly(text: str) -> None:
    lines = split_lines(text)
    assert "".join(lines) == text
    assert lines == text.splitlines(True)  # what nbformat writes


# --------------------------------------------------------------------------- read_notebook_file
def test_read_regular_file_and_symlink(tmp_path: Path) -> None:
    path = tmp_path / "a.ipynb"
    path.write_bytes(b"{}")
    assert read_notebook_file(path) == b"{}"
    assert read_notebook_file(str(path), max_bytes=2) == b"{}"
    link = tmp_path / "link.ipynb"
    link.symlink_to(path)
    assert read_notebook_file(link) == b"{}"


def _expect_read_error(path: Any, message: str, **kwargs: Any) -> None:
    with pytest.raises(NotebookLoadError) as info:
        read_notebook_file(path, **kwargs)
    assert str(info.value) == message


def test_read_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.ipynb"
    _expect_read_error(missing, f"{missing}: no such file")
    _expect_read_error(tmp_path, f"{tmp_path}: is a directory")
    fifo = tmp_path / "fifo.ipynb"
    os.mkfifo(fifo)
    _expect_read_error(fifo, f"{fifo}: not a regular file (FIFO)")
    dangling = tmp_path / "dangling.ipynb"
    dangling.symlink_to(missing)
    _expect_read_error(dangling, f"{dangling}: no such file (dangling symbolic link)")
    big = tmp_path / "big.ipynb"
    big.write_bytes(b" " * 11)
    _expect_read_error(big, f"{big}: file is 11 bytes, over the limit of 10", max_bytes=10)
    _expect_read_error("rel/a.ipynb", "'rel/a.ipynb': the notebook path must be absolute")
    under_file = big / "x.ipynb"
    _expect_read_error(under_file, f"{under_file}: a component of the path is not a directory")


def test_read_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(NotebookLoadError, match=r"not a regular file \(socket"):
            read_notebook_file(path)


def test_read_device() -> None:
    _expect_read_error("/dev/null", "/dev/null: not a regular file (character device)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_read_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.ipynb"
    path.write_bytes(b"{}")
    path.chmod(0)
    try:
        _expect_read_error(path, f"{path}: permission denied")
    finally:
        path.chmod(0o600)


def test_corpus_parses() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")
    for path in sorted(CORPUS.glob("*.ipynb")):
        parsed = parse_notebook(read_notebook_file(path.resolve()))
        assert len({c.id for c in parsed.cells}) == len(parsed.cells), path.name
        assert copy.deepcopy(parsed) == parsed
