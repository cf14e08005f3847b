"""Round trip: .ipynb → parse → manifests + blobs → NotebookDoc (→ save/load) → export → .ipynb.

Every corpus notebook, and random notebooks from hypothesis, must come back equal to the input
after :func:`normalize` (the documented list of everything a round trip may change).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.blob_store import BlobStore, DiskBlobStore, MemoryBlobStore
from core.ipynb import (
    ParsedNotebook,
    notebook_metadata_to_doc,
    parse_notebook,
    record_to_cell,
)
from core.ipynb_export import export_notebook, export_notebook_dict
from core.manifest import outputs_to_refs
from core.notebook_doc import NotebookDoc

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "notebooks"
NOTEBOOKS = sorted(CORPUS.glob("*.ipynb")) if CORPUS.is_dir() else []
needs_corpus = pytest.mark.skipif(not NOTEBOOKS, reason=f"corpus not found at {CORPUS}")

_JSON_MIME = re.compile(r"application/(.*\+)?json")
_CELL_KEYS = {
    "code": ("id", "cell_type", "metadata", "source", "attachments", "execution_count", "outputs"),
    "other": ("id", "cell_type", "metadata", "source", "attachments"),
}


# The keys nbformat 4.5's schema allows on each output type.
_OUTPUT_KEYS_45 = {
    "stream": {"output_type", "name", "text"},
    "display_data": {"output_type", "data", "metadata"},
    "execute_result": {"output_type", "data", "metadata", "execution_count"},
    "error": {"output_type", "ename", "evalue", "traceback"},
}


def _as_45(output: Any) -> Any:
    """The export's 4.5 rule: an unknown output is left out, unknown keys are not written."""
    if type(output) is not dict or output.get("output_type") not in _OUTPUT_KEYS_45:
        return None
    return {k: v for k, v in output.items() if k in _OUTPUT_KEYS_45[output["output_type"]]}


def _joined(value: Any) -> Any:
    if type(value) is list and all(type(item) is str for item in value):
        return "".join(value)
    return value


def _joined_bundle(bundle: Any) -> Any:
    if type(bundle) is not dict:
        return bundle
    return {m: v if _JSON_MIME.fullmatch(m) else _joined(v) for m, v in bundle.items()}


def _normalize_output(output: Any) -> Any:
    if type(output) is not dict:
        return output
    output = dict(output)
    kind = output.get("output_type")
    if kind == "stream" and "text" in output:
        output["text"] = _joined(output["text"])
    elif kind in ("display_data", "execute_result"):
        output.setdefault("metadata", {})
        if "data" in output:
            output["data"] = _joined_bundle(output["data"])
    return output


def normalize(
    nb: dict[str, Any], cell_ids: Sequence[str], applied: set[str] | None = None
) -> dict[str, Any]:
    """The comparable form of an nbformat 4 notebook dict (``nb`` is not modified).

    Rules (``applied`` collects the names of those that changed something):

    * ``join``: multi-line strings are joined with ``""`` — cell ``source``, stream ``text``, and
      values of ``display_data``/``execute_result`` ``data`` and of cell attachments that are
      lists of strings under a MIME type other than ``application/json`` / ``application/*+json``
      (the manifest stores them joined; export re-splits them the nbformat way);
    * ``minor``: ``nbformat_minor`` becomes 5 (we always write nbformat 4.5);
    * ``ids``: a cell without an ``id`` (nbformat 4.0 to 4.4, v3) gets ``cell_ids[i]``, the stable
      id ``parse_notebook`` generated (nbformat would mint a random one); v3 inputs are first passed
      through ``nbformat.v4.upgrade`` (see :func:`expected_from_input`);
    * ``output-metadata``: a ``display_data``/``execute_result`` without ``metadata`` gets ``{}``
      (the manifest always writes it, like nbformat's ``new_output``);
    * ``cell-defaults``: a code cell without ``execution_count``/``outputs`` gets null/``[]``; a
      markdown/raw cell loses them (nbformat 4 does not allow them there);
    * ``extra-keys``: top-level and cell keys that nbformat 4.5 does not define are dropped (an
      export of nbformat <= 4.5 does not write them: they stay in the document);
    * ``outputs-4.5``: an output of an unknown type is left out and keys nbformat 4.5 does not
      allow on a known type are dropped (the export's repairs for nbformat <= 4.5).

    Cell and notebook metadata are compared verbatim.
    """
    applied = set() if applied is None else applied
    cells: list[dict[str, Any]] = []
    for index, raw in enumerate(nb.get("cells", [])):
        cell = dict(raw)
        if "id" not in cell:
            cell["id"] = cell_ids[index]
            applied.add("ids")
        if type(cell.get("source")) is list:
            cell["source"] = "".join(cell["source"])
            applied.add("join")
        if type(cell.get("attachments")) is dict:
            attachments = {k: _joined_bundle(v) for k, v in cell["attachments"].items()}
            if attachments != cell["attachments"]:
                applied.add("join")
            cell["attachments"] = attachments
        if cell["cell_type"] == "code":
            if "execution_count" not in cell or "outputs" not in cell:
                applied.add("cell-defaults")
            cell.setdefault("execution_count", None)
            valid = [o for o in map(_as_45, cell.get("outputs", [])) if o is not None]
            if valid != cell.get("outputs", []):
                applied.add("outputs-4.5")
            outputs = [_normalize_output(o) for o in valid]
            if outputs != valid:
                for before, after in zip(valid, outputs, strict=True):
                    if type(before) is dict and "metadata" not in before and "metadata" in after:
                        applied.add("output-metadata")
                    if before != after and (set(before) | {"metadata"}) == set(after):
                        applied.add("join")
            cell["outputs"] = outputs
            keys = _CELL_KEYS["code"]
        else:
            if "execution_count" in cell or "outputs" in cell:
                applied.add("cell-defaults")
            keys = _CELL_KEYS["other"]
        if set(cell) - set(keys):
            applied.add("extra-keys")
        cells.append({key: cell[key] for key in keys if key in cell})
    if nb.get("nbformat_minor") != 5:
        applied.add("minor")
    if set(nb) - {"cells", "metadata", "nbformat", "nbformat_minor"}:
        applied.add("extra-keys")
    return {"cells": cells, "metadata": nb.get("metadata", {}), "nbformat": 4, "nbformat_minor": 5}


def expected_from_input(data: bytes, parsed: ParsedNotebook) -> dict[str, Any]:
    """What the export must equal: the input (v3: ``nbformat.v4.upgrade`` of it), normalized."""
    nb = json.loads(data.decode("utf-8-sig"))
    if nb["nbformat"] == 3:
        nbformat = pytest.importorskip("nbformat")
        upgraded = nbformat.v4.upgrade(nbformat.v3.reads_json(data.decode("utf-8-sig")))
        nb = json.loads(json.dumps(upgraded))
        for key in ("orig_nbformat", "orig_nbformat_minor"):  # nbformat's writer strips them
            nb["metadata"].pop(key)
        for cell in nb["cells"]:
            del cell["id"]  # random in nbformat
    return normalize(nb, [c.id for c in parsed.cells])


def load_into_doc(data: bytes, store: BlobStore) -> tuple[ParsedNotebook, NotebookDoc]:
    """What the loader does: parse, store outputs as manifests, insert all cells at once."""
    parsed = parse_notebook(data)
    cells = [record_to_cell(r, outputs_to_refs(r.outputs, store)) for r in parsed.cells]
    doc = NotebookDoc("roundtrip")
    doc.add_cells_full(0, cells)
    doc.update_notebook_metadata(notebook_metadata_to_doc(parsed.metadata))
    return parsed, doc


def roundtrip(data: bytes, store: BlobStore, *, via_save: bool) -> tuple[ParsedNotebook, bytes]:
    parsed, doc = load_into_doc(data, store)
    if via_save:
        doc = NotebookDoc.load(doc.save())
    return parsed, export_notebook(doc, store, lambda: json.loads(data.decode("utf-8-sig")))


def _stores(tmp_path: Path) -> list[tuple[str, BlobStore]]:
    return [("memory", MemoryBlobStore()), ("disk", DiskBlobStore(tmp_path / "blobs"))]


# --------------------------------------------------------------------------- corpus
@needs_corpus
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_corpus_roundtrip(path: Path, tmp_path: Path) -> None:
    data = path.read_bytes()
    for name, store in _stores(tmp_path):
        for via_save in (False, True):
            parsed, exported = roundtrip(data, store, via_save=via_save)
            assert exported.endswith(b"}\n")
            got = json.loads(exported)
            expected = expected_from_input(data, parsed)
            assert normalize(got, []) == expected, (name, via_save)
            # a second round trip is byte-identical (export is a fixed point)
            assert roundtrip(exported, store, via_save=via_save)[1] == exported, (name, via_save)


@needs_corpus
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_export_bytes_match_nbformat_writer(path: Path) -> None:
    """Our bytes are what nbformat writes for the same notebook (when it strips nothing)."""
    nbformat = pytest.importorskip("nbformat")
    store = MemoryBlobStore()
    _, doc = load_into_doc(path.read_bytes(), store)
    on_disk = lambda: json.loads(path.read_bytes().decode("utf-8-sig"))  # noqa: E731
    as_dict = export_notebook_dict(doc, store, on_disk)
    node = nbformat.from_dict(copy.deepcopy(as_dict))
    if nbformat.v4.rwbase.strip_transient(copy.deepcopy(node)) != node:
        pytest.skip("nbformat's writer strips transient keys (signature/trusted) that we keep")
    written = nbformat.v4.nbjson.writes(node) + "\n"
    assert export_notebook(doc, store, on_disk) == written.encode()


@needs_corpus
def test_v45_corpus_notebook_is_byte_identical() -> None:
    path = CORPUS / "ipyparallel-9.2.0__docs.source.examples.progress.ipynb"
    if not path.exists():
        pytest.skip(f"{path.name} not in the corpus")
    data = path.read_bytes()
    assert roundtrip(data, MemoryBlobStore(), via_save=True)[1] == data


def test_missing_blob_gives_placeholder_output() -> None:
    data = json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {
                    "id": "a",
                    "cell_type": "code",
                    "metadata": {},
                    "source": "",
                    "execution_count": 1,
                    "outputs": [{"output_type": "stream", "name": "stdout", "text": "x" * 9000}],
                }
            ],
        }
    ).encode()
    store = MemoryBlobStore()
    _, doc = load_into_doc(data, store)
    for blob_id in store.list():
        store.delete(blob_id)
    out = export_notebook_dict(doc, store)["cells"][0]["outputs"]
    assert out == [
        {"output_type": "stream", "name": "stderr", "text": ["[output could not be resolved]"]}
    ]


def test_export_shapes() -> None:
    data = json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "cells": [
                {"id": "m", "cell_type": "markdown", "metadata": {}, "source": "a\r\nb\rc"},
                {
                    "id": "r",
                    "cell_type": "raw",
                    "metadata": {"x": 1},
                    "source": "",
                    "attachments": {},
                },
                {
                    "id": "c",
                    "cell_type": "code",
                    "metadata": {},
                    "source": "",
                    "execution_count": None,
                    "outputs": [
                        {
                            "output_type": "display_data",
                            "data": {
                                "text/plain": "1\n2",
                                "image/svg+xml": "<svg>\n</svg>",
                                "application/javascript": "a;\nb",
                                "image/png": "AA\nBB",
                                "application/json": {"k": ["v"]},
                                "application/vnd.x+json": ["l1\n", "l2"],
                            },
                            "metadata": {},
                        }
                    ],
                },
            ],
        }
    ).encode()
    store = MemoryBlobStore()
    _, doc = load_into_doc(data, store)
    nb = export_notebook_dict(doc, store)
    markdown, raw, code = nb["cells"]
    assert markdown == {
        "id": "m",
        "cell_type": "markdown",
        "metadata": {},
        "source": ["a\r\n", "b\r", "c"],
    }
    assert raw == {
        "id": "r",
        "cell_type": "raw",
        "metadata": {"x": 1},
        "source": [],
        "attachments": {},
    }
    assert code["execution_count"] is None
    assert code["outputs"][0]["data"] == {
        "text/plain": ["1\n", "2"],
        "image/svg+xml": ["<svg>\n", "</svg>"],
        "application/javascript": ["a;\n", "b"],
        "image/png": "AA\nBB",
        "application/json": {"k": ["v"]},
        "application/vnd.x+json": ["l1\n", "l2"],
    }
    assert nb["metadata"] == {"kernelspec": {"name": "python3", "display_name": "Python 3"}}
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)


# --------------------------------------------------------------------------- property test
_PIECES = ["\r\n", "\r", "\n", "é", "e\u0301", "👩‍👩‍👧", "😀", "\x0b", "\u2028", "\t", " ", "x"]
texts = st.lists(
    st.one_of(st.sampled_from(_PIECES), st.text(st.characters(codec="utf-8"), max_size=4)),
    max_size=12,
).map("".join)
# values of 8192 ± a few UTF-8 bytes, ASCII or with 2-byte characters
boundary_texts = st.builds(
    lambda n, wide, tail: ("é" * (n // 2) if wide else "x" * n) + tail,
    st.integers(8186, 8198),
    st.booleans(),
    st.sampled_from(["", "\n", "y\r\nz"]),
)
any_text = st.one_of(texts, texts, texts, boundary_texts)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=3)
counts = st.none() | st.integers(0, 2**40)


def _bundle(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if draw(st.booleans()):
        data["text/plain"] = draw(any_text)
    if draw(st.booleans()):
        data["text/html"] = draw(any_text)
    if draw(st.booleans()):
        data["image/png"] = draw(st.sampled_from(["iVBORw0KGgo=", "A" * 8191, "A" * 8192]))
    if draw(st.booleans()):
        data["application/json"] = draw(json_values)
    if draw(st.booleans()):
        data["image/svg+xml"] = draw(any_text)
    return data


@st.composite
def outputs(draw: st.DrawFn) -> dict[str, Any]:
    kinds = ["stream", "display_data", "execute_result", "error", "unknown", "extra-key"]
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown":  # not a recognised output: kept as raw JSON in the document
        return {"output_type": draw(texts), "value": draw(json_values)}
    if kind == "extra-key":  # well-formed but with a key the manifest does not carry: raw JSON
        return {"output_type": "stream", "name": "stdout", "text": draw(any_text), "x": 1}
    if kind == "stream":
        return {
            "output_type": kind,
            "name": draw(st.sampled_from(["stdout", "stderr"])),
            "text": draw(any_text),
        }
    if kind == "error":
        return {
            "output_type": kind,
            "ename": draw(texts),
            "evalue": draw(texts),
            "traceback": draw(st.lists(any_text, max_size=3)),
        }
    output: dict[str, Any] = {"output_type": kind, "data": _bundle(draw)}
    if draw(st.booleans()):
        output["metadata"] = draw(json_objects)
    if draw(st.booleans()):
        output["transient"] = {"display_id": draw(texts)}
    if kind == "execute_result":
        output["execution_count"] = draw(counts)
    return output


@st.composite
def notebooks(draw: st.DrawFn) -> dict[str, Any]:
    with_ids = draw(st.booleans())
    cells = []
    for index in range(draw(st.integers(0, 5))):
        cell_type = draw(st.sampled_from(["code", "markdown", "raw"]))
        cell: dict[str, Any] = {
            "cell_type": cell_type,
            "metadata": draw(json_objects),
            "source": draw(any_text),
        }
        if with_ids:
            cell["id"] = f"{draw(st.sampled_from(['a', 'Z-', '_']))}{index}"
        if cell_type == "code":
            cell["execution_count"] = draw(counts)
            cell["outputs"] = draw(st.lists(outputs(), max_size=3))
        elif draw(st.booleans()):
            cell["attachments"] = {
                draw(texts) + ".png": {"image/png": draw(st.sampled_from(["AA==", "B" * 9000]))}
            }
        cells.append(cell)
    return {
        "nbformat": 4,
        "nbformat_minor": 5 if with_ids else draw(st.integers(0, 4)),
        "metadata": draw(json_objects),
        "cells": cells,
    }


def _as_file(nb: dict[str, Any], split: bool) -> bytes:
    """Serialize like nbformat (multi-line strings split) or with every string in one piece."""
    nb = copy.deepcopy(nb)
    if split:
        for cell in nb["cells"]:
            cell["source"] = cell["source"].splitlines(True)
            for output in cell.get("outputs", []):
                if output["output_type"] == "stream" and "text" in output:
                    output["text"] = output["text"].splitlines(True)
                elif "data" in output:
                    for mime in ("text/plain", "text/html", "image/svg+xml"):
                        if mime in output["data"]:
                            output["data"][mime] = output["data"][mime].splitlines(True)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False).encode()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nb=notebooks(), split=st.booleans(), via_save=st.booleans())
def test_random_notebooks_roundtrip(nb: dict[str, Any], split: bool, via_save: bool) -> None:
    data = _as_file(nb, split)
    store = MemoryBlobStore()
    parsed, exported = roundtrip(data, store, via_save=via_save)
    ids = [c.id for c in parsed.cells]
    assert len(set(ids)) == len(ids)
    assert normalize(json.loads(exported), []) == normalize(nb, ids)
    assert roundtrip(exported, store, via_save=False)[1] == exported
