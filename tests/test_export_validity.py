"""A hostile or buggy peer cannot make the notebook unsaveable, nor make the daemon write a file
that is invalid or that nbstream cannot reopen (issue 12, items 6 and 7).

Each row: a peer makes a hand-made Automerge change to the shared document over the real Unix
socket, then asks the daemon to ``save``. The outcome is either

* ``saved``: the file is valid nbformat (``nbformat.validate``) and our reader reopens it, the
  repaired element is as PROTOCOL.md 10.6 says, and the ``saved`` response's ``repairs`` names it;
* ``refused``: one ``error`` response naming the element (cell index and id, field), and the file
  on disk is byte-for-byte what it was.

Either way another peer of the room keeps working: it pings, sees the change, and — once the bad
element is undone where the save was refused — saves.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from automerge import core as am

from core.blob_store import MemoryBlobStore
from core.client import NotebookClient
from core.errors import CoreError
from core.ipynb import parse_notebook
from core.ipynb_export import export_for_save
from core.nbschema import SCHEMA_PATH
from core.notebook_doc import NotebookDoc

from .conftest import Harness, HarnessFactory, write_notebook
from .endpoint import WAIT

nbformat = pytest.importorskip("nbformat")

STR = am.ScalarType.Str
Change = Callable[[Any, bytes], None]  # (transaction, the cells list object)


def _cells() -> list[dict[str, Any]]:
    """c1 code with a stream output, c2 markdown, c3 code."""
    return [
        {
            "id": "c1",
            "source": "print(1)",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}],
        },
        {"id": "c2", "cell_type": "markdown", "source": "# title"},
        {"id": "c3", "source": "x = 3"},
    ]


def _cell(tx: Any, cells: bytes, index: int) -> bytes:
    return bytes(tx.get(cells, index)[1])


def _map(tx: Any, cells: bytes, index: int, key: str) -> bytes:
    return bytes(tx.get(_cell(tx, cells, index), key)[1])


def _put_output(text: str, index: int = 0) -> Change:
    """Append ``text`` (raw output JSON, as a peer may write it) to cell ``index``'s outputs."""

    def change(tx: Any, cells: bytes) -> None:
        outputs = _map(tx, cells, index, "outputs")
        tx.insert(outputs, tx.length(outputs), STR, text)

    return change


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


# --------------------------------------------------------------------------- the rows
@dataclass(frozen=True)
class Case:
    id: str
    change: Change
    outcome: Literal["saved", "refused"]
    message: str  # regex: searched in the error, or in one of the repairs
    check: Callable[[dict[str, Any]], None] | None = None  # on the saved notebook
    undo: Change | None = None  # makes a refused room saveable again
    cells: int = 3  # cells in the saved file
    extra: dict[str, Any] = field(default_factory=dict)


def _scalar_in_cells(kind: Any, value: Any) -> Change:
    return lambda tx, cells: tx.insert(cells, 1, kind, value)


def _delete_cell(index: int) -> Change:
    return lambda tx, cells: tx.delete(cells, index)


def _check_nan_null(nb: dict[str, Any]) -> None:
    output = nb["cells"][0]["outputs"][1]
    assert output["data"]["application/json"] == {"x": None, "y": [1, None]}


def _check_outputs(n: int) -> Callable[[dict[str, Any]], None]:
    def check(nb: dict[str, Any]) -> None:
        assert len(nb["cells"][0]["outputs"]) == n, nb["cells"][0]["outputs"]

    return check


def _check_ids(nb: dict[str, Any]) -> None:
    ids = [c["id"] for c in nb["cells"]]
    assert ids[0] == "c1" and len(set(ids)) == 3, ids
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", i) for i in ids)


def _set(index: int, key: str, kind: Any, value: Any) -> Change:
    return lambda tx, cells: tx.put(_cell(tx, cells, index), key, kind, value)


def _set_source_scalar(tx: Any, cells: bytes) -> None:
    tx.put(_cell(tx, cells, 2), "source", STR, "y = 'kept'")


def _check_source(nb: dict[str, Any]) -> None:
    assert nb["cells"][2]["source"] == ["y = 'kept'"]


def _metadata_as_list(tx: Any, _cells: bytes) -> None:
    tx.put_object(am.ROOT, "metadata", am.ObjType.List)


def _metadata_back(tx: Any, _cells: bytes) -> None:
    meta = tx.put_object(am.ROOT, "metadata", am.ObjType.Map)
    tx.put(meta, "kernelspec", STR, '{"display_name":"Python 3","name":"python3"}')


def _deep_native_metadata(tx: Any, cells: bytes) -> None:
    obj = _map(tx, cells, 0, "metadata")
    obj = tx.put_object(obj, "deep", am.ObjType.Map)
    for _ in range(900):
        obj = tx.put_object(obj, "d", am.ObjType.Map)


def _del_meta(key: str) -> Change:
    return lambda tx, cells: tx.delete(_map(tx, cells, 0, "metadata"), key)


def _native_metadata_values(tx: Any, cells: bytes) -> None:
    meta = _map(tx, cells, 0, "metadata")
    tx.put(meta, "n", am.ScalarType.Int, 5)
    tx.put(meta, "f", am.ScalarType.F64, math.nan)
    nested = tx.put_object(meta, "m", am.ObjType.Map)
    tx.put(nested, "s", STR, "plain string")
    tx.put(nested, "b", am.ScalarType.Boolean, True)


def _check_native_metadata(nb: dict[str, Any]) -> None:
    assert nb["cells"][0]["metadata"] == {
        "n": 5,
        "f": None,
        "m": {"s": "plain string", "b": True},
    }


def _markdown_with_attachment_to_code(tx: Any, cells: bytes) -> None:
    att = tx.put_object(_cell(tx, cells, 1), "attachments", am.ObjType.Map)
    tx.put(att, "a.png", STR, '{"image/png":"iVBORw0KGgo="}')
    tx.put(_cell(tx, cells, 1), "cell_type", STR, "code")


def _exec_count(nb: dict[str, Any]) -> Any:
    return nb["cells"][0]["execution_count"]


NAN_OUTPUT = (
    '{"output_type":"execute_result","execution_count":1,"metadata":{},'
    '"data":{"application/json":{"x":NaN,"y":[1,-Infinity]}}}'
)
CASES = [
    # ---- item 6: one peer made every save fail ("internal error")
    Case(
        "scalar-string-in-cells",
        _scalar_in_cells(STR, "boom"),
        "saved",
        r"^cells\[1\]: the string 'boom' is not a cell: left out$",
    ),
    Case(
        "scalar-int-in-cells",
        _scalar_in_cells(am.ScalarType.Int, 7),
        "saved",
        r"^cells\[1\]: the number 7 is not a cell: left out$",
    ),
    Case(
        "list-in-cells",
        lambda tx, cells: tx.insert_object(cells, 0, am.ObjType.List),
        "saved",
        r"^cells\[0\]: a list is not a cell: left out$",
    ),
    Case(
        "nan-in-an-output",
        _put_output(NAN_OUTPUT),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[1\]\.data\.application/json\.x: nan is not a JSON "
        r"number: written as null$",
        check=_check_nan_null,
    ),
    # ---- item 7: the daemon wrote what nbstream cannot reopen, or invalid .ipynb
    Case(
        "output-nested-900-deep",
        _put_output(
            '{"output_type":"display_data","metadata":{},"data":{"application/json":'
            + _nested(900)
            + "}}"
        ),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[1\] nests deeper than the 64 levels a notebook file "
        r"may have: the output is left out$",
        check=_check_outputs(1),
    ),
    Case(
        "output-nested-100-deep",
        _put_output(
            '{"output_type":"display_data","metadata":{},"data":{"application/json":'
            + _nested(100)
            + "}}"
        ),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[1\] nests deeper than the 64 levels a notebook file "
        r"may have: the output is left out$",
        check=_check_outputs(1),
    ),
    Case(
        "metadata-nested-100-deep-json-text",
        lambda tx, cells: tx.put(_map(tx, cells, 0, "metadata"), "deep", STR, _nested(100)),
        "refused",
        r"cells\[0\] \(id 'c1'\)\.metadata\.deep nests deeper than the 64 levels",
        undo=_del_meta("deep"),
    ),
    Case(
        "metadata-nested-900-deep-crdt-maps",
        _deep_native_metadata,
        "refused",
        r"cells\[0\] \(id 'c1'\)\.metadata\.deep(\.d)* nests deeper than the 64 levels",
        undo=_del_meta("deep"),
    ),
    Case(
        "cell-type-evil",
        _set(1, "cell_type", STR, "evil"),
        "refused",
        r"cells\[1\] \(id 'c2'\)\.cell_type 'evil' is not one of 'code', 'markdown', 'raw'",
        undo=_set(1, "cell_type", STR, "markdown"),
    ),
    Case(
        "cell-type-not-a-string",
        _set(1, "cell_type", am.ScalarType.Int, 3),
        "refused",
        r"cells\[1\] \(id 'c2'\)\.cell_type is the number 3",
        undo=_set(1, "cell_type", STR, "markdown"),
    ),
    Case(
        "markdown-with-attachments-turned-into-code",
        _markdown_with_attachment_to_code,
        "saved",
        r"^cells\[1\] \(id 'c2'\)\.attachments not written: nbformat 4\.5 does not allow them "
        r"on a code cell",
        check=lambda nb: "attachments" not in nb["cells"][1] or pytest.fail("written"),
    ),
    Case(
        "duplicate-id",
        _set(2, "id", STR, "c1"),
        "saved",
        r"^cells\[2\]: id 'c1' repeats the id of cells\[0\]: written as 'cell-[0-9a-f]{8}'$",
        check=_check_ids,
    ),
    Case(
        "empty-id",
        _set(1, "id", STR, ""),
        "saved",
        r"^cells\[1\]: id '' is empty: written as 'cell-[0-9a-f]{8}'$",
        check=_check_ids,
    ),
    Case(
        "id-not-nbformat-pattern",
        _set(1, "id", STR, "has spaces/and slashes"),
        "saved",
        r"^cells\[1\]: id 'has spaces/and slashes' is not a valid cell id",
        check=_check_ids,
    ),
    Case(
        "id-not-a-string",
        _set(1, "id", am.ScalarType.Int, 12),
        "saved",
        r"^cells\[1\]: id None is missing or not a string: written as 'cell-[0-9a-f]{8}'$",
        check=_check_ids,
    ),
    Case(
        "output-missing-required-key",
        _put_output('{"output_type":"stream","name":"stdout"}'),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[1\] must contain \['text'\] properties: "
        r"the output is left out$",
        check=_check_outputs(1),
    ),
    Case(
        "output-unknown-type",
        _put_output('{"output_type":"evil","payload":1}'),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[1\]\.output_type 'evil' is not one of",
        check=_check_outputs(1),
    ),
    Case(
        "output-extra-key",
        _put_output('{"output_type":"stream","name":"stdout","text":"t","x":1}'),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[1\]: key\(s\) 'x' not written: nbformat 4\.5 does "
        r"not allow them on a stream output",
        check=lambda nb: (
            _check_outputs(2)(nb),
            nb["cells"][0]["outputs"][1]
            == {"output_type": "stream", "name": "stdout", "text": ["t"]}
            or pytest.fail("extra key written"),
        ),
    ),
    Case(
        "output-not-json",
        _put_output("not json at all"),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[1\] is not valid JSON .*: written as "
        r"'\[invalid output JSON\]'$",
        check=_check_outputs(2),
    ),
    Case(
        "output-entry-not-a-string",
        lambda tx, cells: tx.insert(_map(tx, cells, 0, "outputs"), 0, am.ScalarType.Int, 1),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.outputs\[0\]: the number 1 is not an output: left out$",
        check=_check_outputs(1),
    ),
    # ---- item 7: wrong CRDT types were silently emptied
    Case(
        "notebook-metadata-is-a-list",
        _metadata_as_list,
        "refused",
        r"metadata is a list, not a map",
        undo=_metadata_back,
    ),
    Case(
        "cell-metadata-is-a-string",
        _set(0, "metadata", STR, '{"a":1}'),
        "refused",
        r"cells\[0\] \(id 'c1'\)\.metadata is the string '\{\"a\":1\}', not a map",
        undo=lambda tx, cells: tx.put_object(_cell(tx, cells, 0), "metadata", am.ObjType.Map),
    ),
    Case(
        "source-is-a-str-scalar",
        _set_source_scalar,
        "saved",
        "",  # a faithful conversion: no repair
        check=_check_source,
    ),
    Case(
        "source-is-a-number",
        _set(2, "source", am.ScalarType.Int, 5),
        "refused",
        r"cells\[2\] \(id 'c3'\)\.source is the number 5, not text",
        undo=_set_source_scalar,
    ),
    Case(
        "execution-count-is-an-int",
        _set(0, "execution_count", am.ScalarType.Int, 7),
        "saved",
        "",
        check=lambda nb: _exec_count(nb) == 7 or pytest.fail(str(_exec_count(nb))),
    ),
    Case(
        "execution-count-is-garbage",
        _set(0, "execution_count", STR, "abc"),
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.execution_count: the string 'abc' is not a count: "
        r"written as null$",
        check=lambda nb: _exec_count(nb) is None or pytest.fail(str(_exec_count(nb))),
    ),
    Case(
        "metadata-values-of-other-types",
        _native_metadata_values,
        "saved",
        r"^cells\[0\] \(id 'c1'\)\.metadata\.f: nan is not a JSON number: written as null$",
        check=_check_native_metadata,
    ),
    Case(
        "metadata-schema-violation",
        lambda tx, cells: tx.put(_map(tx, cells, 0, "metadata"), "collapsed", STR, '"yes"'),
        "refused",
        r"cells\[0\] \(id 'c1'\)\.metadata\.collapsed must be boolean",
        undo=_del_meta("collapsed"),
    ),
    Case(
        "metadata-bytes-value",
        lambda tx, cells: tx.put(_map(tx, cells, 0, "metadata"), "b", am.ScalarType.Bytes, b"x"),
        "refused",
        r"cells\[0\] \(id 'c1'\)\.metadata\.b is a Bytes value, which JSON has no form for",
        undo=_del_meta("b"),
    ),
]


async def _room_has(client: NotebookClient, h: Harness) -> None:
    """Wait until the room holds what ``client`` holds: a ping is answered after every frame sent
    before it was read (a change that needs no answer sends the client no frame to wake on)."""
    room = h.daemon.rooms.rooms()[0]
    for _ in range(100):
        if room.doc.heads() == client.doc.heads():
            return
        await asyncio.wait_for(client.ping(), WAIT)
    raise AssertionError("the room never caught up with the client")


async def _edit(client: NotebookClient, h: Harness, change: Change) -> None:
    """A hand-made Automerge change, made by ``client`` and synced to the daemon."""
    raw = client.doc._doc
    with raw.transaction() as tx:
        change(tx, bytes(tx.get(am.ROOT, "cells")[1]))
    client.sync_now()
    await _room_has(client, h)


def _reopens(data: bytes) -> dict[str, Any]:
    """The saved bytes: our reader reopens them and nbformat finds them valid."""
    parse_notebook(data)
    notebook: dict[str, Any] = json.loads(data)
    nbformat.validate(nbformat.from_dict(notebook))
    return notebook


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_change_then_save(
    case: Case, make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix")
    path = write_notebook(tmp_path / "nb.ipynb", _cells())
    hostile = await h.connect(path)
    bystander = await h.connect(path)
    for client in (hostile, bystander):
        await asyncio.wait_for(client.wait_loaded(), WAIT)
    before = path.read_bytes()
    await _edit(hostile, h, case.change)

    if case.outcome == "saved":
        saved = await asyncio.wait_for(hostile.save(), WAIT)
        if case.message:
            assert any(re.search(case.message, r) for r in saved.repairs), saved.repairs
        else:
            assert saved.repairs == ()
        notebook = _reopens(path.read_bytes())
        assert len(notebook["cells"]) == case.cells
        if case.check is not None:
            case.check(notebook)
    else:
        with pytest.raises(CoreError) as refused:
            await asyncio.wait_for(hostile.save(), WAIT)
        message = str(refused.value)
        assert message.startswith("save refused: "), message
        assert re.search(case.message, message), message
        assert "internal error" not in message
        assert path.read_bytes() == before  # the file is left as it was

    # the room keeps serving everyone: the other peer sees the change, pings, and saves
    await bystander.ping()
    await _room_has(bystander, h)
    if case.undo is not None:
        await _edit(bystander, h, case.undo)
    saved = await asyncio.wait_for(bystander.save(), WAIT)
    _reopens(path.read_bytes())
    assert saved.bytes_written == path.stat().st_size


async def test_cells_not_a_list_is_refused_naming_it(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix")
    # an empty file: with cells on disk the empty-room rule refuses first ("the room is empty")
    path = write_notebook(tmp_path / "nb.ipynb", [])
    hostile = await h.connect(path)
    await asyncio.wait_for(hostile.wait_loaded(), WAIT)
    before = path.read_bytes()
    raw = hostile.doc._doc
    with raw.transaction() as tx:
        tx.put(am.ROOT, "cells", STR, "gone")
    hostile.sync_now()
    await _room_has(hostile, h)
    with pytest.raises(CoreError, match=r"cells is the string 'gone', not a list"):
        await asyncio.wait_for(hostile.save(), WAIT)
    assert path.read_bytes() == before
    await hostile.ping()


async def test_many_problems_are_named_in_one_error(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await make_harness("unix")
    path = write_notebook(tmp_path / "nb.ipynb", [{"id": f"c{i}"} for i in range(12)])
    hostile = await h.connect(path)
    await asyncio.wait_for(hostile.wait_loaded(), WAIT)

    def evil_everywhere(tx: Any, cells: bytes) -> None:
        for index in range(12):
            tx.put(_cell(tx, cells, index), "cell_type", STR, "evil")

    await _edit(hostile, h, evil_everywhere)
    with pytest.raises(CoreError) as refused:
        await asyncio.wait_for(hostile.save(), WAIT)
    message = str(refused.value)
    assert message.startswith("save refused: 12 element(s) cannot be written as valid nbformat")
    assert message.count("is not one of") == 8 and message.endswith("; and 4 more")


def test_metadata_the_file_already_had_is_written_as_it_was(tmp_path: Path) -> None:
    """A schema violation in metadata that the replaced file holds too does not block a save
    (the corpus's Output.ipynb has a kernelspec without display_name); a new one does."""
    from core.errors import InvalidNotebook

    doc = NotebookDoc("x")
    doc.update_notebook_metadata({"kernelspec": '{"name":"python3"}'})
    previous = {"metadata": {"kernelspec": {"name": "python3"}}, "cells": []}
    exported = export_for_save(doc, MemoryBlobStore(), lambda: previous)
    assert json.loads(exported.data)["metadata"] == previous["metadata"]
    assert any("written as it is in the file being replaced" in r for r in exported.repairs)
    with pytest.raises(InvalidNotebook, match="kernelspec must contain"):
        export_for_save(doc, MemoryBlobStore(), lambda: {"metadata": {}})
    with pytest.raises(InvalidNotebook, match="kernelspec must contain"):
        export_for_save(doc, MemoryBlobStore())


def test_vendored_schema_is_nbformats() -> None:
    """core/nbformat.v4.5.schema.json is nbformat's own file, unchanged."""
    from importlib.resources import files

    installed = files("nbformat.v4").joinpath("nbformat.v4.5.schema.json").read_bytes()
    assert SCHEMA_PATH.read_bytes() == installed
