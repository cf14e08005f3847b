from __future__ import annotations

import random

import pytest
from automerge import core as am

from core.errors import DocError, MessageError
from core.notebook_doc import CellSnapshot, NotebookDoc, object_key


def _cell(i: int, **kw: object) -> CellSnapshot:
    base: dict[str, object] = {
        "id": f"c{i}",
        "cell_type": "code" if i % 3 else "markdown",
        "source": f"print({i})\nx = 'é🎉'\n" if i % 4 else "",
        "execution_count": str(i) if i % 3 else "null",
        "outputs": tuple(f"{i:02d}" * 32 for _ in range(i % 3)),
        "metadata": {"tags": '["a"]'} if i % 2 else {},
        "attachments": {"img.png": '{"image/png":"AAAA"}'} if i % 5 == 0 else None,
    }
    base.update(kw)
    return CellSnapshot(**base)  # type: ignore[arg-type]


def sync_pair(a: NotebookDoc, b: NotebookDoc) -> int:
    """Run the Automerge sync loop between two docs until quiet; returns messages exchanged."""
    sa, sb = am.SyncState(), am.SyncState()
    count = 0
    while True:
        progressed = False
        msg = a.generate_sync_message(sa)
        if msg is not None:
            b.receive_sync_message(sb, msg)
            progressed = True
            count += 1
        msg = b.generate_sync_message(sb)
        if msg is not None:
            a.receive_sync_message(sa, msg)
            progressed = True
            count += 1
        if not progressed:
            return count


# ---------------------------------------------------------------- the reference's four unit tests
def test_add_cell_full_reads_back_every_field() -> None:
    doc = NotebookDoc("nb")
    doc.add_cell_full(
        0,
        CellSnapshot(
            id="cell-full",
            cell_type="code",
            source="print('hello')",
            execution_count="42",
            outputs=("hash1", "hash2"),
        ),
    )
    assert doc.cell_count() == 1
    (cell,) = doc.get_cells()
    assert cell.id == "cell-full"
    assert cell.cell_type == "code"
    assert cell.source == "print('hello')"
    assert cell.execution_count == "42"
    assert cell.outputs == ("hash1", "hash2")


def test_add_cell_full_empty_source() -> None:
    doc = NotebookDoc("nb")
    doc.add_cell_full(0, CellSnapshot(id="e", cell_type="code"))
    (cell,) = doc.get_cells()
    assert cell.source == ""
    assert cell.execution_count == "null"
    assert cell.outputs == ()
    # No splice for an empty source: 7 ops = map, id, type, text, count, outputs list, metadata map.
    assert doc.statistics().ops == 3 + 7


def test_add_cell_full_ordering() -> None:
    doc = NotebookDoc("nb")
    for i, (cid, src) in enumerate([("a", "first"), ("b", "second"), ("c", "third")]):
        doc.add_cell_full(i, CellSnapshot(id=cid, cell_type="code", source=src))
    cells = doc.get_cells()
    assert [c.id for c in cells] == ["a", "b", "c"]
    assert [c.source for c in cells] == ["first", "second", "third"]


def test_deleting_every_cell_keeps_notebook_id() -> None:
    doc = NotebookDoc("nb-clear")
    for i in range(3):
        doc.add_cell(i, f"c{i}", "code")
    assert doc.delete_cells(doc.cell_keys()) == 3
    assert doc.cell_count() == 0
    assert doc.get_cells() == []
    assert doc.notebook_id == "nb-clear"
    assert doc.delete_cells(doc.cell_keys()) == 0


# ---------------------------------------------------------------- naive path vs add_cell_full
@pytest.mark.parametrize("n", [1, 7, 40])
def test_naive_and_full_paths_materialize_equal(n: int) -> None:
    full, naive = NotebookDoc("nb"), NotebookDoc("nb")
    cells = [_cell(i) for i in range(n)]
    full.add_cells_full(0, cells)
    for i, cell in enumerate(cells):
        naive.add_cell_naive(i, cell)
    assert full.materialize() == naive.materialize()
    assert full.get_cells() == cells


@pytest.mark.parametrize("n", [10, 50, 120])
def test_scan_steps_quadratic_for_naive_zero_for_full(n: int) -> None:
    full, naive = NotebookDoc("nb"), NotebookDoc("nb")
    cells = [_cell(i, source="x", metadata={}, attachments=None) for i in range(n)]
    for i, cell in enumerate(cells):
        full.add_cell_full(i, cell)
        naive.add_cell_naive(i, cell)
    assert full.statistics().scan_steps == 0
    # update_source, set_outputs and set_execution_count each scan i+1 cells for cell i.
    assert naive.statistics().scan_steps == 3 * n * (n + 1) // 2
    assert full.statistics().cells_inserted == naive.statistics().cells_inserted == n


def test_batched_insert_is_one_transaction_and_counts_ops() -> None:
    doc = NotebookDoc("nb")
    before = doc.statistics()
    doc.add_cells_full(
        0, [CellSnapshot(id=f"c{i}", cell_type="code", source="ab") for i in range(5)]
    )
    after = doc.statistics()
    assert after.transactions - before.transactions == 1
    # per cell: map, id, type, text, 2 chars, count, outputs, metadata = 9 ops
    assert after.ops - before.ops == 45


def test_index_is_clamped() -> None:
    doc = NotebookDoc("nb")
    doc.add_cell_full(99, CellSnapshot(id="a", cell_type="code"))
    doc.add_cell_full(-5, CellSnapshot(id="b", cell_type="code"))
    assert [c.id for c in doc.get_cells()] == ["b", "a"]


# ---------------------------------------------------------------- single-cell operations
def test_update_source_minimal_splice_and_unicode() -> None:
    doc = NotebookDoc("nb")
    doc.add_cell_full(0, CellSnapshot(id="a", cell_type="code", source="héllo 🎉 world"))
    ops = doc.statistics().ops
    assert doc.update_source("a", "héllo 🎉 big world")
    assert doc.get_cells()[0].source == "héllo 🎉 big world"
    assert doc.statistics().ops - ops == 4  # only "big " inserted
    assert doc.update_source("a", "")
    assert doc.get_cells()[0].source == ""
    assert not doc.update_source("missing", "x")


def test_set_outputs_execution_count_metadata_delete() -> None:
    doc = NotebookDoc("nb")
    doc.add_cells_full(0, [_cell(1), _cell(2)])
    assert doc.set_outputs("c1", ["h"])
    assert doc.set_execution_count("c1", "7")
    assert doc.set_cell_metadata("c1", {"k": "1"}, {"a.png": "{}"})
    c1 = doc.get_cells()[0]
    assert (c1.outputs, c1.execution_count, dict(c1.metadata)) == (("h",), "7", {"k": "1"})
    assert c1.attachments == {"a.png": "{}"}
    assert doc.delete_cell("c1")
    assert [c.id for c in doc.get_cells()] == ["c2"]
    assert not doc.delete_cell("c1")
    assert not doc.set_outputs("nope", [])
    assert not doc.set_execution_count("nope", "1")
    assert not doc.set_cell_metadata("nope", {})
    assert doc.find_cell_index("nope") is None


def test_notebook_metadata_roundtrip() -> None:
    doc = NotebookDoc("nb")
    doc.update_notebook_metadata({"kernelspec": '{"name":"python3"}', "x": "1"})
    doc.update_notebook_metadata({"x": "2"})
    assert doc.get_notebook_metadata() == {"kernelspec": '{"name":"python3"}', "x": "2"}
    assert doc.remove_notebook_metadata({"x": "1", "kernelspec": '{"name":"python3"}'}) == 1
    assert doc.get_notebook_metadata() == {"x": "2"}  # a key changed since stays


def test_save_load_roundtrip() -> None:
    doc = NotebookDoc("nb")
    doc.add_cells_full(0, [_cell(i) for i in range(6)])
    doc.update_notebook_metadata({"a": "[1]"})
    loaded = NotebookDoc.load(doc.save())
    assert loaded.materialize() == doc.materialize()
    with pytest.raises(DocError, match="cannot load Automerge document"):
        NotebookDoc.load(b"not automerge")


def test_empty_doc_bootstraps_by_sync() -> None:
    server = NotebookDoc("nb-sync")
    server.add_cells_full(0, [_cell(i) for i in range(4)])
    client = NotebookDoc.empty()
    assert client.cell_count() == 0 and client.notebook_id == ""
    assert sync_pair(server, client) > 0
    assert client.materialize() == server.materialize()
    # Clearing on the server propagates; the id survives.
    server.delete_cells(server.cell_keys())
    sync_pair(server, client)
    assert client.cell_count() == 0 and client.notebook_id == "nb-sync"


def test_bad_sync_messages_raise_message_error() -> None:
    doc = NotebookDoc("nb")
    with pytest.raises(MessageError, match="undecodable"):
        doc.receive_sync_message(am.SyncState(), b"garbage")
    assert doc.statistics().sync_messages_received == 0


def test_missing_cells_list_is_reported() -> None:
    doc = NotebookDoc.empty()
    assert (
        doc.cell_count() == 0 and doc.get_cells() == [] and doc.delete_cells(doc.cell_keys()) == 0
    )
    with pytest.raises(DocError, match="no 'cells' list"):
        doc.add_cell_full(0, CellSnapshot(id="a", cell_type="code"))


# ---------------------------------------------------------------- analytic op counters
_ALPHABET = "ab \n\té😀\U0001d54f\u0301中"  # BMP, astral (two UTF-16 units) and combining chars


def _text(rng: random.Random, most: int = 12) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, most)))


def _random_cell(rng: random.Random, n: int) -> CellSnapshot:
    return CellSnapshot(
        id=f"r{n}",
        cell_type=rng.choice(["code", "markdown", "raw"]),
        source=_text(rng),
        execution_count=rng.choice(["null", "1", "22"]),
        outputs=tuple(_text(rng, 3) for _ in range(rng.randint(0, 3))),
        metadata={_text(rng, 3): _text(rng, 4) for _ in range(rng.randint(0, 3))},
        attachments=(
            None if rng.random() < 0.5 else {_text(rng, 2): "{}" for _ in range(rng.randint(0, 2))}
        ),
        extra=None
        if rng.random() < 0.7
        else {_text(rng, 2): "1" for _ in range(rng.randint(0, 2))},
    )


class _Reference:
    """ops / transactions the slow way: every change of the doc's own actor, read back."""

    def __init__(self) -> None:
        self.ops = 0
        self.transactions = 0

    def update(self, doc: NotebookDoc) -> None:
        actor = doc._doc.get_actor()
        mine = [c for c in doc._doc.get_changes([]) if c.actor_id == actor]
        self.transactions = len(mine)
        self.ops = sum(c.max_op - c.start_op + 1 for c in mine)


@pytest.mark.parametrize("seed", range(3))
def test_analytic_op_counters_equal_the_changes_read_back(seed: int) -> None:
    rng = random.Random(seed)
    doc = NotebookDoc("nb")
    other = doc.fork()  # a concurrent editor: merged in, it makes conflicting values
    ref = _Reference()
    ref.update(doc)
    made = 0
    for step in range(250):
        ids = [c.id for c in doc.get_cells()]
        action = rng.randrange(13)
        if action == 0 or not ids:
            batch = [_random_cell(rng, made + i) for i in range(rng.randint(1, 4))]
            made += len(batch)
            texts = [c.source for c in doc.add_cells_full(rng.randint(0, len(ids) + 2), batch)]
            if rng.random() < 0.5:  # the loader's steps for a large source: append at the end
                k = rng.randrange(len(batch))
                doc.append_source(texts[k], len(batch[k].source), _text(rng, 30))
        elif action == 1:
            made += 1
            doc.add_cell_naive(rng.randint(0, len(ids)), _random_cell(rng, made))
        elif action == 2:
            cell = rng.choice(ids)
            old = next(c.source for c in doc.get_cells() if c.id == cell)
            cut = rng.randint(0, len(old))
            new = rng.choice([old[:cut] + _text(rng) + old[cut + 1 :], "", old, _text(rng, 40)])
            doc.update_source(cell, new)
        elif action == 3:
            doc.set_outputs(rng.choice(ids), [_text(rng, 2) for _ in range(rng.randint(0, 3))])
        elif action == 4:
            doc.set_execution_count(rng.choice(ids), rng.choice(["null", "1", "22"]))
        elif action == 5:
            meta = {_text(rng, 2): _text(rng, 2) for _ in range(rng.randint(0, 2))}
            att = None if rng.random() < 0.5 else {"a.png": _text(rng, 2)}
            doc.set_cell_metadata(rng.choice(ids), meta, att)
        elif action == 6:
            doc.delete_cell(rng.choice(ids))
        elif action == 7:
            current = doc.get_notebook_metadata()
            keep = {k: v for k, v in current.items() if rng.random() < 0.6}
            keep.update({rng.choice("kxyz"): rng.choice(["1", "2", _text(rng, 3)])})
            doc.update_notebook_metadata(keep)
            if rng.random() < 0.5:  # a rollback: the keys written, unless changed since
                doc.remove_notebook_metadata({k: v for k, v in keep.items() if rng.random() < 0.7})
        elif action == 8:
            doc.update_notebook_metadata(doc.get_notebook_metadata())  # the same: no change
        elif action == 9 and rng.random() < 0.2:
            doc.delete_cells([k for k in doc.cell_keys() if rng.random() < 0.7])
        elif action == 10:  # concurrent edits of the same keys, merged: conflicts
            other.update_notebook_metadata({rng.choice("kxyz"): rng.choice(["1", "2"])})
            sync_pair(doc, other)
        elif action == 11:  # the keys nbstream does not model, and a newer minor
            extra = {rng.choice("ab"): rng.choice(["1", "[]"]) for _ in range(rng.randint(0, 2))}
            doc.set_notebook_extra(extra, rng.choice([None, 4, 6, 7]))
        elif action == 12:  # the same, concurrently from the other editor: conflicts
            other.set_notebook_extra({"a": rng.choice(["1", "2"])}, rng.choice([6, 7]))
            sync_pair(doc, other)
        ref.update(doc)
        stats = doc.statistics()
        assert (stats.ops, stats.transactions) == (ref.ops, ref.transactions), (step, action)
    assert ref.transactions > 100


def test_object_keys_survive_merging_an_actor_that_sorts_first() -> None:
    """automerge-py's id bytes carry the actor's rank; a key must not (rollback relies on it)."""
    server = NotebookDoc("nb", actor_id=b"\xf0" * 16)
    mine = [c.key for c in server.add_cells_full(0, [_cell(1), _cell(2)])]
    assert server.cell_keys() == mine
    raw_before = _raw_ids(server)
    peer_doc = NotebookDoc.empty(actor_id=b"\x01" * 16)
    s1, s2 = am.SyncState(), am.SyncState()
    _sync_pair(server, s1, peer_doc, s2)
    peer_doc.add_cells_full(1, [_cell(9)])
    _sync_pair(server, s1, peer_doc, s2)
    keys = server.cell_keys()
    assert _raw_ids(server)[0] != raw_before[0]  # the bytes did change: the key is needed
    assert len(keys) == 3 and keys[0] == mine[0] and keys[2] == mine[1]
    assert server.cell_key_at(2) == mine[1]
    assert server.delete_cells(mine) == 2
    assert [c.id for c in server.get_cells()] == ["c9"]


def test_object_key_of_an_unknown_shape_is_itself() -> None:
    assert object_key(b"\x00") == b"\x00"
    assert object_key(b"\x10\x10" + b"\xab" * 16) == b"\x10\x10" + b"\xab" * 16


def _raw_ids(doc: NotebookDoc) -> list[bytes]:
    cells = doc._cells_obj()
    assert cells is not None
    return [bytes(obj) for _, obj in doc._doc.values(cells)]


def _sync_pair(a: NotebookDoc, sa: am.SyncState, b: NotebookDoc, sb: am.SyncState) -> None:
    for _ in range(20):
        moved = False
        for x, sx, y, sy in ((a, sa, b, sb), (b, sb, a, sa)):
            msg = x.generate_sync_message(sx)
            if msg is not None:
                y.receive_sync_message(sy, msg)
                moved = True
        if not moved:
            return
    raise AssertionError("sync did not settle")
