"""Keys nbstream does not understand survive a load and a save through the daemon (issue 12, item
13), as nbformat keeps them.

The fixture ``fixtures/nbformat-4.7-unknown-keys.ipynb`` is a notebook of a newer minor (4.7),
written the way nbformat writes: a top-level key, cell keys on every cell type, a cell type
nbformat 4.5 does not know (with its own ``outputs``), outputs with extra keys and an output type
nbformat 4.5 does not know. It must come back **byte-identical** from load + save. The same
notebook claiming nbformat 4.5 (where those keys are invalid) saves a valid 4.5 file without
them, each named in the ``saved`` response's repairs, and the document still holds them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from core.ipynb import parse_notebook
from core.ipynb_stream import parse_notebook_chunks

from .conftest import HarnessFactory
from .endpoint import WAIT

nbformat = pytest.importorskip("nbformat")

FIXTURE = Path(__file__).with_name("fixtures") / "nbformat-4.7-unknown-keys.ipynb"


def test_the_fixture_is_what_nbformat_reads_and_writes() -> None:
    data = FIXTURE.read_bytes()
    node = nbformat.reads(data.decode(), as_version=nbformat.NO_CONVERT)
    nbformat.validate(node)  # valid by nbformat's rules for a newer minor
    assert (nbformat.writes(node) + "\n").encode() == data  # nbformat keeps every key


def test_parse_and_stream_keep_the_unknown_keys() -> None:
    data = FIXTURE.read_bytes()
    parsed = parse_notebook(data)
    assert parsed == parse_notebook_chunks([data[i : i + 97] for i in range(0, len(data), 97)])
    assert parsed.extra == {"x_provenance": {"tool": "future-lab", "version": "9.0"}}
    intro, compute, query, notes = parsed.cells
    assert intro.extra == {"x_review": {"by": ["ana", "raj"], "status": "approved"}}
    assert compute.extra == {"x_lineage": ["load", "clean"]}
    assert query.cell_type == "sql" and query.outputs == ()
    assert query.extra == {
        "dialect": "duckdb",
        "execution_count": 1,
        "outputs": [{"output_type": "x-table", "rows": [[1, "a"], [2, None]]}],
    }
    assert notes.extra == {"x_flag": True}


async def _load_and_save(make_harness: HarnessFactory, path: Path) -> tuple[Any, Any, Any]:
    h = await make_harness("unix")
    client = await h.connect(path)
    await asyncio.wait_for(client.wait_loaded(), WAIT)
    saved = await asyncio.wait_for(client.save(), WAIT)
    room = h.daemon.rooms.rooms()[0]
    return saved, room, client


async def test_a_newer_minor_round_trips_byte_identical_through_the_daemon(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    path = tmp_path / "future.ipynb"
    path.write_bytes(FIXTURE.read_bytes())
    saved, room, client = await _load_and_save(make_harness, path)
    assert saved.repairs == ()
    assert path.read_bytes() == FIXTURE.read_bytes()
    # where the document keeps them (PROTOCOL.md 10.1): JSON texts in "extra" maps
    cells = room.doc.get_cells()
    assert cells[0].extra == {"x_review": '{"by":["ana","raj"],"status":"approved"}'}
    assert cells[2].cell_type == "sql" and cells[2].extra is not None
    assert set(cells[2].extra) == {"dialect", "execution_count", "outputs"}
    assert cells[1].extra == {"x_lineage": '["load","clean"]'}
    extra = ({"x_provenance": '{"tool":"future-lab","version":"9.0"}'}, "7")
    assert room.doc.get_notebook_extra() == extra
    assert client.doc.get_notebook_extra() == extra  # a peer gets them by sync like the rest
    # and a second round trip is a fixed point
    saved = await asyncio.wait_for(client.save(), WAIT)
    assert path.read_bytes() == FIXTURE.read_bytes()


async def test_in_a_45_notebook_they_stay_in_the_document_and_the_file_is_valid(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    notebook = json.loads(FIXTURE.read_bytes())
    notebook["nbformat_minor"] = 5
    del notebook["cells"][2]  # a 4.5 file cannot hold an unknown cell type: that save is refused
    path = tmp_path / "nb45.ipynb"
    path.write_text(json.dumps(notebook, indent=1))
    saved, room, _ = await _load_and_save(make_harness, path)
    written = json.loads(path.read_bytes())
    nbformat.validate(nbformat.from_dict(written))
    parse_notebook(path.read_bytes())
    assert "x_provenance" not in written and written["nbformat_minor"] == 5
    assert [sorted(c) for c in written["cells"]] == [
        ["cell_type", "id", "metadata", "source"],
        ["cell_type", "execution_count", "id", "metadata", "outputs", "source"],
        ["attachments", "cell_type", "id", "metadata", "source"],
    ]
    outputs = written["cells"][1]["outputs"]
    assert [o["output_type"] for o in outputs] == ["stream", "execute_result", "display_data"]
    assert "x_timing" not in outputs[0] and "x_origin" not in outputs[1]
    repairs = "\n".join(saved.repairs)
    for name in ("'x_provenance'", "'x_review'", "'x_lineage'", "'x_flag'", "'x_timing'"):
        assert name in repairs, repairs
    assert "x-widget-state" in repairs  # the unknown output type is left out, and said so
    # nothing was lost from the document
    assert room.doc.get_notebook_extra()[0] == {
        "x_provenance": '{"tool":"future-lab","version":"9.0"}'
    }
    assert room.doc.get_cells()[0].extra == {"x_review": '{"by":["ana","raj"],"status":"approved"}'}
