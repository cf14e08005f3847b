"""The streaming reader is the whole-file parse, cell by cell: same cells and errors, any chunks.

Every case compares :func:`parse_notebook_chunks` (the scanner, with its whole-file fallback)
against :func:`parse_notebook` on the joined bytes. Beyond equality, the tests pin the reasons to
stream at all: the first cell comes out after its own bytes, read-ahead stays bounded, and the
fallback is taken only where the stream cannot be exact.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.errors import NotebookLoadError
from core.ipynb import MAX_NESTING_DEPTH, parse_notebook, stable_id
from core.ipynb_stream import (
    NEED_DATA,
    Cell,
    Finished,
    NotebookScanner,
    Unstreamable,
    parse_notebook_chunks,
)
from core.notebook_source import NotebookSource
from sim.workload.generator import write_notebook

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "notebooks"
CORPUS_FILES = sorted(CORPUS.glob("*.ipynb")) if CORPUS.is_dir() else []


def outcome(parse: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", parse()
    except NotebookLoadError as error:
        return "error", str(error)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def random_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.choice((1, 2, 3, 5, 64, 1000, 65536))
        out.append(data[i : i + n])
        i += n
    return out


def chunkings(data: bytes, seed: int = 0) -> Iterator[list[bytes]]:
    yield [data]
    yield chunked(data, 1 if len(data) < 20_000 else 17)
    yield chunked(data, 7)
    yield chunked(data, 4096)
    yield random_chunks(data, random.Random(seed))


def assert_same(data: bytes, seed: int = 0) -> tuple[str, Any]:
    want = outcome(lambda: parse_notebook(data))
    for chunks in chunkings(data, seed):
        got = outcome(lambda chunks=chunks: parse_notebook_chunks(chunks))  # type: ignore[misc]
        assert got == want, f"{len(chunks)} chunks"
    return want


def streams(data: bytes) -> bool:
    """Does the scanner read ``data`` without falling back to the whole-file parse?"""
    scanner = NotebookScanner()
    scanner.feed(data)
    scanner.end()
    while True:
        event = scanner.next_event()
        if isinstance(event, Finished):
            return True
        if isinstance(event, Unstreamable):
            return False


def nb(cells: list[Any] | None = None, **top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4}
    base["nbformat_minor"] = 5
    if cells is not None:
        base["cells"] = cells
    base.update(top)
    return base


def code(cell_id: str | None = "a", source: Any = "x = 1", **extra: Any) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": "code", "metadata": {}, "source": source}
    cell.update({"execution_count": None, "outputs": []})
    if cell_id is not None:
        cell["id"] = cell_id
    cell.update(extra)
    return cell


FIXTURES = Path(__file__).with_name("fixtures")


def as_file(notebook: Any) -> bytes:
    """The way nbformat writes it (indent=1), which the scanner's fast path reads."""
    return (json.dumps(notebook, indent=1, ensure_ascii=False) + "\n").encode()


# --------------------------------------------------------------------------- real notebooks
@pytest.mark.skipif(not CORPUS_FILES, reason="no ../shared/corpus beside the repository")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name[:60])
def test_every_corpus_notebook_streams_to_the_whole_file_answer(path: Path) -> None:
    data = path.read_bytes()
    kind, parsed = assert_same(data)
    assert kind == "ok"
    assert streams(data) == (parsed.nbformat == 4)  # only nbformat 3 needs the whole file
    notebook = json.loads(data)
    for variant in (
        json.dumps(notebook).encode(),  # minified: no fast path, the window parse only
        json.dumps(notebook, indent=4, sort_keys=True).encode(),  # cells after metadata
        json.dumps(notebook, indent="\t").encode(),
    ):
        assert_same(variant)


def test_a_generated_notebook_streams_in_any_chunking(tmp_path: Path) -> None:
    data = write_notebook(tmp_path / "g.ipynb", 40).path.read_bytes()
    kind, parsed = assert_same(data)
    assert kind == "ok" and len(parsed.cells) == 40 and streams(data)


# --------------------------------------------------------------------------- edge cases
EDGE_CASES: dict[str, bytes] = {
    "cells-last": as_file(nb([code("a"), code("b")])),
    "cells-first": as_file({"cells": [code("a")], "nbformat_minor": 5, "nbformat": 4}),
    "header-after-cells-minified": json.dumps({"cells": [code("a")], "nbformat": 4}).encode(),
    "no-cells": as_file(nb()),
    "empty-cells": as_file(nb([])),
    "cells-twice": b'{"cells": [' + json.dumps(code("a")).encode() + b'], "nbformat": 4, '
    b'"cells": [' + json.dumps(code("b")).encode() + b"]}",
    "cells-not-an-array": as_file(nb(cells={"a": 1})),  # type: ignore[arg-type]
    "cells-null": as_file({"cells": None, "nbformat": 4}),
    "cells-as-a-string-then-array": b'{"cells": "x", "nbformat": 4, "cells": []}',
    "nbformat-3": as_file({"nbformat": 3, "worksheets": [{"cells": []}], "metadata": {}}),
    "nbformat-as-string": as_file(nb([code()], nbformat="4")),
    "nbformat-missing": as_file({"cells": [code()]}),
    "nbformat-5": as_file(nb([code()], nbformat=5)),
    "minor-newer": as_file(nb([code()], nbformat_minor=9)),
    "minor-missing": b'{"cells": [], "nbformat": 4}',
    "metadata-not-object": as_file(nb([code()], metadata=[])),
    "extra-top-keys": as_file(nb([code()], extra={"deep": [1, 2, {"x": None}]})),
    "extra-cell-keys": as_file(
        nb([code("a", x_review={"ok": True}), {"cell_type": "sql", "outputs": [1], "dialect": "q"}])
    ),
    "markdown-with-outputs": as_file(nb([{"cell_type": "markdown", "outputs": [], "x": 1}])),
    "newer-minor-fixture": (FIXTURES / "nbformat-4.7-unknown-keys.ipynb").read_bytes(),
    "escaped-key": b'{"cell\\u0073": [' + json.dumps(code("a")).encode() + b'], "nbformat": 4}',
    "bom": b"\xef\xbb\xbf" + as_file(nb([code()])),
    "bom-only": b"\xef\xbb\xbf",
    "empty-file": b"",
    "whitespace-only": b" \n\t ",
    "top-level-array": b"[1, 2]",
    "top-level-number": b"4",
    "trailing-garbage": as_file(nb([code()])) + b"x",
    "trailing-second-object": as_file(nb([code()])) + b"{}",
    "trailing-comma-in-cells": b'{"nbformat": 4, "cells": [' + json.dumps(code()).encode() + b",]}",
    "trailing-comma-at-top": b'{"nbformat": 4, "cells": [],}',
    "missing-comma": b'{"nbformat": 4 "cells": []}',
    "missing-colon": b'{"nbformat" 4, "cells": []}',
    "unquoted-key": b"{nbformat: 4}",
    "truncated-in-a-cell": as_file(nb([code("a"), code("b")]))[:-40],
    "truncated-after-cells": as_file({"cells": [code()], "nbformat": 4})[:-3],
    "nan-in-a-cell": b'{"nbformat": 4, "cells": [{"cell_type": "raw", "metadata": {"x": NaN}}]}',
    "inf-literal": b'{"nbformat": 4, "metadata": {"x": -Infinity}}',
    "overflow-in-a-cell": b'{"nbformat": 4, "cells": [{"cell_type": "raw", "x": 1e999}]}',
    "overflow-at-top": b'{"nbformat": 4, "big": 1e999}',
    "invalid-utf8-in-a-cell": b'{"nbformat": 4, "cells": [{"cell_type": "raw", "source": "\xff"}]}',
    "invalid-utf8-in-space": b'{"nbformat": 4,\xa0"cells": []}',
    "control-char-in-string": b'{"nbformat": 4, "cells": [{"cell_type": "raw", "source": "\x01"}]}',
    "raw-newline-in-string": b'{"nbformat": 4, "cells": [{"cell_type": "raw", "source": "a\nb"}]}',
    "cell-not-object": as_file(nb([code(), 42])),
    "cell-bad-source": as_file(nb([code("a"), code("b", source=42)])),
    "cell-bad-id": as_file(nb([code(7)])),  # type: ignore[arg-type]
    "cell-no-type": as_file(nb([{"source": "x"}])),
    "duplicate-ids": as_file(nb([code("a"), code("a"), code("a")])),
    "missing-and-empty-ids": as_file(nb([code(None), code(""), code(None, source="y")])),
    "cells-without-space": b'{"nbformat": 4, "cells": [{"cell_type": "raw"},{"cell_type": "raw"}]}',
    "number-at-top-end": b'{"cells": [], "nbformat": 4, "nbformat_minor": 12345}',
    "odd-indentation": b'{"nbformat": 4, "cells": [\n  {"cell_type": "raw", "metadata": {\n  }, '
    b'"source": "x"\n  }\n]}',
    "same-indent-inner-close": b'{"nbformat": 4, "cells": [\n  {"cell_type": "raw",\n  "metadata": '
    b'{"a": [1,\n  ]},\n  "source": "s"\n  }\n ]\n}',
    "crlf": as_file(nb([code("a"), code("b")])).replace(b"\n", b"\r\n"),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_give_the_whole_file_answer(name: str) -> None:
    assert_same(EDGE_CASES[name])


def test_nesting_at_the_limit_streams_and_one_level_past_it_fails_the_same() -> None:
    def deep(levels: int) -> bytes:  # a cell at level 3 holding `levels` more levels
        value = "[" * levels + "]" * levels
        return b'{"nbformat": 4, "cells": [{"cell_type": "raw", "x": ' + value.encode() + b"}]}"

    inside = MAX_NESTING_DEPTH - 3
    kind, _ = assert_same(deep(inside))
    assert kind == "ok" and streams(deep(inside))
    kind, message = assert_same(deep(inside + 1))
    assert kind == "error" and "nesting too deep" in message
    kind, message = assert_same(b'{"nbformat": 4, "metadata": {"a": ' + b"[" * 300 + b"}")
    assert kind == "error"


def test_a_generated_id_claimed_later_by_an_explicit_id_gives_the_whole_file_ids() -> None:
    taken = stable_id(0, "code", "x = 1", set())
    data = as_file(nb([code(None), code(taken)]))
    kind, parsed = assert_same(data)
    assert kind == "ok" and not streams(data)
    assert parsed.cells[1].id == taken and parsed.cells[0].id != taken


def test_random_byte_edits_of_a_notebook_give_the_whole_file_answer() -> None:
    base = as_file(nb([code("a", source=["x = 1\n", "y"]), code(None, source="é"), code("a")]))
    rng = random.Random(11)
    alphabet = b'{}[]",:0123456789 \n\\ae-.'
    kinds = {"ok": 0, "error": 0}
    for trial in range(400):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                del data[at]
            elif action < 0.7:
                data.insert(at, rng.choice(alphabet))
            else:
                data[at] = rng.choice(alphabet)
        kind, _ = assert_same(bytes(data), seed=trial)
        kinds[kind] += 1
    assert kinds["ok"] > 20 and kinds["error"] > 200  # both sides of the oracle were exercised


# --------------------------------------------------------------------------- progressive
def test_the_first_cell_comes_out_after_its_own_bytes(tmp_path: Path) -> None:
    data = write_notebook(tmp_path / "g.ipynb", 200).path.read_bytes()
    first_cell_end = data.index(b"\n  }") + 4
    for chunk in (1, 512, 4096):
        scanner = NotebookScanner()
        fed = 0
        while not isinstance(event := scanner.next_event(), Cell):
            assert event is NEED_DATA
            scanner.feed(data[fed : fed + chunk])
            fed += chunk
        assert fed < first_cell_end + chunk  # not one chunk more than the cell needs
        assert fed < len(data) // 50


def test_read_ahead_stays_within_one_cell_and_one_chunk(tmp_path: Path) -> None:
    data = write_notebook(tmp_path / "g.ipynb", 120).path.read_bytes()
    chunk = 4096
    largest = max(len(json.dumps(c, indent=1)) for c in json.loads(data)["cells"])
    scanner = NotebookScanner()
    fed, peak, cells = 0, 0, 0
    while True:
        event = scanner.next_event()
        if isinstance(event, Cell):
            cells += 1
        elif event is NEED_DATA:
            if fed < len(data):
                scanner.feed(data[fed : fed + chunk])
            else:
                scanner.end()
            fed += chunk
            peak = max(peak, scanner.buffered)
        else:
            assert isinstance(event, Finished) and event.cells == 120
            break
    assert cells == 120 and peak <= largest + 2 * chunk


def test_the_source_reads_only_what_the_first_batch_needs(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "g.ipynb", 400).path
    size = path.stat().st_size
    source = NotebookSource(path, chunk_size=16 * 1024)
    source.open()
    try:
        batch = source.take(3)
        assert batch is not None and len(batch.records) == 3 and not batch.restart
        assert source.file_bytes <= 64 * 1024 < size // 20 and source.total_cells is None
        while not source.finished:
            batch = source.take(50)
            assert batch is not None and not batch.restart
        assert source.total_cells == 400 and source.file_bytes == size and source.streamed
    finally:
        source.close()


def test_the_source_restarts_from_the_whole_file_when_the_stream_cannot_be_exact(
    tmp_path: Path,
) -> None:
    taken = stable_id(0, "code", "x = 1", set())
    path = tmp_path / "clash.ipynb"
    path.write_bytes(as_file(nb([code(None), code("b"), code("c"), code(taken)])))
    source = NotebookSource(path)
    source.open()
    try:
        first = source.take(2)
        assert first is not None and not first.restart and len(first.records) == 2
        again = source.take(2)
        assert again is not None and again.restart and not source.streamed
        rest = source.take(2)
        assert rest is not None and not rest.restart and source.finished
        want = parse_notebook(path.read_bytes())
        assert again.records + rest.records == want.cells
    finally:
        source.close()


def test_an_invalid_notebook_raises_the_whole_file_error_from_the_source(tmp_path: Path) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_bytes(as_file(nb([code("a"), code("b"), code("c", source=3)])))
    with pytest.raises(NotebookLoadError) as want:
        parse_notebook(path.read_bytes())
    source = NotebookSource(path)
    source.open()
    try:
        batch = source.take(2)
        assert batch is not None and len(batch.records) == 2
        with pytest.raises(NotebookLoadError) as got:
            source.take(2)
        assert str(got.value) == str(want.value)
    finally:
        source.close()


# --------------------------------------------------------------------------- through the loader
async def test_a_load_that_restarts_ends_with_exactly_the_whole_file_cells(tmp_path: Path) -> None:
    from core.blob_store import MemoryBlobStore
    from core.loader import LoadOptions, stream_load
    from core.room import NotebookRoom

    taken = stable_id(0, "code", "x = 1", set())
    cells = [code(None), *(code(f"c{i}") for i in range(7)), code(taken)]
    path = tmp_path / "clash.ipynb"
    path.write_bytes(as_file(nb(cells)))
    room = NotebookRoom(str(path), path)
    assert room.try_start_loading()
    counts: list[int] = []

    async def hook(index: int) -> None:
        counts.append(room.doc.cell_count())

    report = await stream_load(
        room, MemoryBlobStore(), LoadOptions(batch_size=2), before_batch=hook
    )
    assert report.ok and report.cells == report.total_cells == 9
    assert counts[:4] == [0, 2, 4, 6] and counts[4] == 0  # the restart dropped the streamed cells
    want = parse_notebook(path.read_bytes())
    assert [c.id for c in room.doc.get_cells()] == [c.id for c in want.cells]


async def test_a_large_source_goes_in_bounded_steps_with_the_loop_free_between(
    tmp_path: Path,
) -> None:
    from core.blob_store import MemoryBlobStore
    from core.loader import LoadOptions, stream_load
    from core.room import NotebookRoom

    big = "".join(f"line {i} é😀\n" for i in range(40))  # 430 code points, astral ones too
    path = tmp_path / "big.ipynb"
    path.write_bytes(as_file(nb([code("a", source="small"), code("big", source=big)])))
    room = NotebookRoom(str(path), path)
    assert room.try_start_loading()
    seen: list[int] = []  # the big source's length each time another task got the loop

    async def watcher() -> None:
        while room.is_loading:
            cells = room.doc.get_cells()
            if len(cells) == 2:
                seen.append(len(cells[1].source))
            await asyncio.sleep(0)

    watch = asyncio.create_task(watcher())
    before = room.doc.statistics().transactions
    options = LoadOptions(batch_size=2, source_step=50)
    report = await stream_load(room, MemoryBlobStore(), options)
    await watch
    assert report.ok and [c.source for c in room.doc.get_cells()] == ["small", big]
    # One transaction for the batch (with the first 50 code points), one per 50 more, and one
    # for the notebook metadata.
    steps = -(-(len(big) - 50) // 50)
    assert room.doc.statistics().transactions - before == 1 + steps + 1
    assert sorted(set(seen)) == [min(50 * k, len(big)) for k in range(1, steps + 2)]
