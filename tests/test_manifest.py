"""Tests for core.manifest: outputs -> manifests -> outputs, thresholds, fallbacks, placeholders."""

from __future__ import annotations

import base64
import copy
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.blob_store import DiskBlobStore, MemoryBlobStore, is_blob_id
from core.errors import BlobCorrupt, BlobStoreError, BlobTooLarge, NotebookLoadError
from core.manifest import (
    INLINE_THRESHOLD,
    INVALID_OUTPUT_TEXT,
    MANIFEST_MEDIA_TYPE,
    OUTPUT_KEYS,
    UNRESOLVED_OUTPUT_TEXT,
    normalize_output,
    output_to_ref,
    outputs_to_refs,
    resolve_ref,
    resolve_refs,
)

UNRESOLVED = {"output_type": "stream", "name": "stderr", "text": "[output could not be resolved]"}
INVALID = {"output_type": "stream", "name": "stderr", "text": "[invalid output JSON]"}
PNG = base64.b64encode(bytes(range(256)) * 400).decode()  # ~136 KB of base64

DISPLAY = {
    "output_type": "display_data",
    "data": {"image/png": PNG, "text/plain": ["<Figure size 640x480>\n", "with 1 Axes"]},
    "metadata": {"image/png": {"width": 640, "height": 480}, "needs_background": "light"},
    "transient": {"display_id": "abc123"},
}
EXECUTE = {
    "output_type": "execute_result",
    "execution_count": 7,
    "data": {"text/plain": "42", "text/html": ["<b>\n", "42</b>"]},
    "metadata": {},
}
STREAM = {"output_type": "stream", "name": "stdout", "text": ["line 1\n", "line 2\n"]}
ERROR = {
    "output_type": "error",
    "ename": "ZeroDivisionError",
    "evalue": "division by zero",
    "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m", "Traceback (most recent call last)"],
}


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "disk":
        return DiskBlobStore(tmp_path / "blobs")
    return MemoryBlobStore()


def manifest_of(ref: str, store: Any) -> dict[str, Any]:
    assert is_blob_id(ref)
    assert store.get_meta(ref).media_type == MANIFEST_MEDIA_TYPE
    result: dict[str, Any] = json.loads(store.get(ref))
    return result


def raw(output: Any) -> str:
    return json.dumps(output, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def round_trip(output: Any, store: Any, **kwargs: Any) -> dict[str, Any]:
    return resolve_ref(output_to_ref(output, store, **kwargs), store)


# --------------------------------------------------------------------------- each output type
def test_display_data_round_trip(store: Any) -> None:
    ref = output_to_ref(DISPLAY, store)
    assert resolve_ref(ref, store) == {
        "output_type": "display_data",
        "data": {"image/png": PNG, "text/plain": "<Figure size 640x480>\nwith 1 Axes"},
        "metadata": {"image/png": {"width": 640, "height": 480}, "needs_background": "light"},
        "transient": {"display_id": "abc123"},
    }
    manifest = manifest_of(ref, store)
    png = base64.b64decode(PNG)  # canonical base64: the blob holds the decoded bytes
    assert manifest["data"]["image/png"] == {
        "blob": hashlib.sha256(png).hexdigest(),
        "size": len(png),
        "encoding": "base64",
    }
    assert store.get(manifest["data"]["image/png"]["blob"]) == png
    assert store.get_meta(manifest["data"]["image/png"]["blob"]).media_type == "image/png"
    assert manifest["data"]["text/plain"] == {"inline": "<Figure size 640x480>\nwith 1 Axes"}
    assert manifest["transient"] == {"display_id": "abc123"}


def test_execute_result_round_trip(store: Any) -> None:
    resolved = round_trip(EXECUTE, store)
    assert resolved == {
        "output_type": "execute_result",
        "execution_count": 7,
        "data": {"text/plain": "42", "text/html": "<b>\n42</b>"},
        "metadata": {},
    }
    nulled = {**EXECUTE, "execution_count": None}
    assert round_trip(nulled, store)["execution_count"] is None
    huge = {**EXECUTE, "execution_count": 2**40}  # not truncated to i32
    assert round_trip(huge, store)["execution_count"] == 2**40


def test_stream_round_trip(store: Any) -> None:
    ref = output_to_ref(STREAM, store)
    assert resolve_ref(ref, store) == {
        "output_type": "stream",
        "name": "stdout",
        "text": "line 1\nline 2\n",
    }
    assert manifest_of(ref, store) == {
        "output_type": "stream",
        "name": "stdout",
        "text": {"inline": "line 1\nline 2\n"},
    }
    stderr = {"output_type": "stream", "name": "stderr", "text": "oops"}
    assert round_trip(stderr, store) == stderr


def test_error_round_trip(store: Any) -> None:
    ref = output_to_ref(ERROR, store)
    assert resolve_ref(ref, store) == ERROR
    manifest = manifest_of(ref, store)
    tb_text = json.dumps(ERROR["traceback"], ensure_ascii=False, separators=(",", ":"))
    assert manifest["traceback"] == {"inline": tb_text, "json": True}
    empty_tb = {**ERROR, "traceback": [], "evalue": ""}
    assert round_trip(empty_tb, store) == empty_tb


def test_large_traceback_goes_to_a_json_blob(store: Any) -> None:
    error = {**ERROR, "traceback": [f"frame {i}: " + "x" * 100 for i in range(200)]}
    ref = output_to_ref(error, store)
    tb_ref = manifest_of(ref, store)["traceback"]
    assert set(tb_ref) == {"blob", "size", "json"}
    assert store.get_meta(tb_ref["blob"]).media_type == "application/json"
    assert resolve_ref(ref, store) == error


def test_metadata_and_transient(store: Any) -> None:
    bare = {"output_type": "display_data", "data": {"text/plain": "x"}}
    ref = output_to_ref(bare, store)
    assert "metadata" not in manifest_of(ref, store)
    assert resolve_ref(ref, store) == {**bare, "metadata": {}}
    assert output_to_ref({**bare, "metadata": {}}, store) == ref  # same manifest
    empty_transient = {**bare, "metadata": {}, "transient": {}}
    assert round_trip(empty_transient, store) == empty_transient
    rich = {
        **bare,
        "metadata": {"a": [1, 2.5, None, True, {"b": "ü"}], "isolated": True},
        "transient": {"display_id": "d", "other": [1]},
    }
    assert round_trip(rich, store) == rich


# --------------------------------------------------------------------------- inline vs blob
@pytest.mark.parametrize(
    ("text", "inline"),
    [
        ("a" * 8191, True),
        ("a" * 8192, False),
        ("a" * 8193, False),
        ("é" * 4095 + "a", True),  # 8191 bytes
        ("é" * 4096, False),  # 8192 bytes, 4096 characters
        ("é" * 4096 + "a", False),  # 8193 bytes
        ("😀" * 2047 + "abc", True),  # 8191 bytes
        ("😀" * 2048, False),  # 8192 bytes, 2048 characters
        ("€" * 2730 + "a", True),  # 8191 bytes
        ("€" * 2730 + "ab", False),  # 8192 bytes
        ("", True),
    ],
)
def test_inline_threshold_counts_utf8_bytes(store: Any, text: str, inline: bool) -> None:
    output = {"output_type": "display_data", "data": {"text/html": text}, "metadata": {}}
    ref = output_to_ref(output, store)
    content = manifest_of(ref, store)["data"]["text/html"]
    encoded = text.encode()
    if inline:
        assert content == {"inline": text}
    else:
        assert content == {"blob": hashlib.sha256(encoded).hexdigest(), "size": len(encoded)}
        assert store.get(content["blob"]) == encoded
        assert store.get_meta(content["blob"]).media_type == "text/html"
    assert resolve_ref(ref, store) == output


@pytest.mark.parametrize(("size", "inline"), [(8191, True), (8192, False), (8193, False)])
def test_stream_text_threshold(store: Any, size: int, inline: bool) -> None:
    text = "x" * size
    ref = output_to_ref({"output_type": "stream", "name": "stdout", "text": text}, store)
    content = manifest_of(ref, store)["text"]
    assert ("inline" in content) is inline
    if not inline:
        assert store.get_meta(content["blob"]).media_type == "text/plain"
    assert resolve_ref(ref, store)["text"] == text


def test_custom_inline_threshold(store: Any) -> None:
    output = {"output_type": "stream", "name": "stdout", "text": "abcd"}
    assert "blob" in manifest_of(output_to_ref(output, store, inline_threshold=4), store)["text"]
    assert "inline" in manifest_of(output_to_ref(output, store, inline_threshold=5), store)["text"]


# --------------------------------------------------------------------------- §3.6 and JSON MIMEs
def test_multiline_mime_lists_are_joined_not_stringified(store: Any) -> None:
    """Regression for reference §3.6 (#2242): lists came back as the literal '["…","…"]'."""
    html = ["<table>\n", "<tr><td>1</td></tr>\n", "</table>"]
    output = {"output_type": "display_data", "data": {"text/html": html}, "metadata": {}}
    ref = output_to_ref(output, store)
    value = resolve_ref(ref, store)["data"]["text/html"]
    assert value == "<table>\n<tr><td>1</td></tr>\n</table>"
    assert not value.startswith("[")
    assert manifest_of(ref, store)["data"]["text/html"] == {"inline": "".join(html)}
    big = ["<p>" + "x" * 100 + "</p>\n"] * 200  # the blob path joins too
    big_output = {"output_type": "display_data", "data": {"text/html": big}, "metadata": {}}
    assert round_trip(big_output, store)["data"]["text/html"] == "".join(big)
    assert round_trip({**big_output, "data": {"text/plain": []}}, store)["data"] == {
        "text/plain": ""
    }


@pytest.mark.parametrize(
    ("mime", "value"),
    [
        ("application/json", {"a": [1, 2, {"b": None}], "c": "d"}),
        ("application/json", [1, "two", 3.5]),
        ("application/json", ["line 1\n", "line 2"]),  # a JSON array, never joined
        ("application/json", 42),
        ("application/json", None),
        ("application/json", True),
        ("application/vnd.plotly.v1+json", {"data": [], "layout": {"title": "t"}}),
        ("application/geo+json", [{"type": "Point"}]),
        ("text/plain", {"odd": "but representable"}),  # non-string under a text MIME
        ("text/plain", ["a", 1]),  # list with a non-string item
        ("text/plain", 3.25),
    ],
)
def test_structured_mime_values_stay_structured(store: Any, mime: str, value: Any) -> None:
    output = {"output_type": "display_data", "data": {mime: value}, "metadata": {}}
    ref = output_to_ref(output, store)
    assert manifest_of(ref, store)["data"][mime]["json"] is True
    resolved = resolve_ref(ref, store)["data"][mime]
    assert resolved == value
    assert type(resolved) is type(value)


def test_string_under_application_json_stays_a_string(store: Any) -> None:
    output = {
        "output_type": "display_data",
        "data": {"application/json": '{"a": 1}'},
        "metadata": {},
    }
    ref = output_to_ref(output, store)
    assert manifest_of(ref, store)["data"]["application/json"] == {"inline": '{"a": 1}'}
    assert resolve_ref(ref, store)["data"]["application/json"] == '{"a": 1}'


def test_large_json_value_goes_to_a_blob(store: Any) -> None:
    value = {"rows": [{"i": i, "name": f"row {i}"} for i in range(1000)]}
    output = {"output_type": "display_data", "data": {"application/json": value}, "metadata": {}}
    ref = output_to_ref(output, store)
    content = manifest_of(ref, store)["data"]["application/json"]
    assert set(content) == {"blob", "size", "json"}
    assert store.get_meta(content["blob"]).media_type == "application/json"
    assert resolve_ref(ref, store) == output


# --------------------------------------------------------------------------- determinism
def test_equal_outputs_dedupe_to_one_manifest(store: Any) -> None:
    a = {
        "output_type": "display_data",
        "data": {"text/plain": "x", "text/html": "<b>x</b>", "application/json": {"k": 1, "j": 2}},
        "metadata": {"z": 1, "a": {"y": 2, "b": 3}},
    }
    b = {
        "metadata": {"a": {"b": 3, "y": 2}, "z": 1},
        "data": {"application/json": {"j": 2, "k": 1}, "text/html": "<b>x</b>", "text/plain": "x"},
        "output_type": "display_data",
    }
    c = {**a, "data": {**a["data"], "text/html": ["<b>", "x</b>"]}}  # same after joining
    refs = {output_to_ref(o, store) for o in (a, b, c)}
    assert len(refs) == 1
    manifests = [i for i in store.list() if store.get_meta(i).media_type == MANIFEST_MEDIA_TYPE]
    assert manifests == list(refs)
    assert store.statistics().dedup_hits == 2


def test_manifest_serialization_is_canonical(store: Any) -> None:
    ref = output_to_ref(EXECUTE, store)
    payload = store.get(ref)
    parsed = json.loads(payload)
    canonical = json.dumps(
        parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()
    assert payload == canonical
    assert ref == hashlib.sha256(canonical).hexdigest()


def test_non_ascii_is_stored_as_utf8_not_escaped(store: Any) -> None:
    output = {"output_type": "stream", "name": "stdout", "text": "grüße 😀"}
    ref = output_to_ref(output, store)
    assert "grüße 😀".encode() in store.get(ref)
    assert resolve_ref(ref, store) == output


# --------------------------------------------------------------------------- raw JSON fallback
FALLBACKS: list[Any] = [
    {"output_type": "update_display_data", "data": {"text/plain": ["a", "b"]}, "metadata": {}},
    {"output_type": "pyout", "prompt_number": 1, "text": ["x"]},  # nbformat 3 style
    {"data": {"text/plain": "no output_type"}, "metadata": {}},
    {"output_type": None},
    {"output_type": ["stream"]},
    {},
    {**STREAM, "extra": 1},
    {**ERROR, "extra": {"a": 1}},
    {**DISPLAY, "execution_count": 1},  # execution_count is not a display_data key
    {**EXECUTE, "foo": "bar"},
    {"output_type": "display_data", "data": "not an object", "metadata": {}},
    {"output_type": "display_data", "data": ["text/plain"], "metadata": {}},
    {"output_type": "display_data", "metadata": {}},  # missing data
    {"output_type": "display_data", "data": {}, "metadata": []},
    {"output_type": "display_data", "data": {}, "metadata": {}, "transient": "d"},
    {"output_type": "execute_result", "data": {}, "metadata": {}},  # missing execution_count
    {**EXECUTE, "execution_count": 1.0},
    {**EXECUTE, "execution_count": True},
    {**EXECUTE, "execution_count": "7"},
    {"output_type": "stream", "name": "stdout", "text": 42},
    {"output_type": "stream", "name": "stdout", "text": ["a", 1]},
    {"output_type": "stream", "name": "stdout", "text": {"a": "b"}},
    {"output_type": "stream", "name": None, "text": "x"},
    {"output_type": "stream", "text": "x"},  # missing name
    {"output_type": "stream", "name": "stdout"},  # missing text
    {**ERROR, "traceback": "not a list"},
    {**ERROR, "traceback": ["ok", 3]},
    {**ERROR, "ename": None},
    {**ERROR, "evalue": 1},
    {"output_type": "error", "ename": "E", "traceback": []},  # missing evalue
]


@pytest.mark.parametrize("output", FALLBACKS)
def test_unrepresentable_outputs_fall_back_to_raw_json(store: Any, output: Any) -> None:
    original = copy.deepcopy(output)
    ref = output_to_ref(output, store)
    assert ref == raw(output)
    assert not is_blob_id(ref)
    assert resolve_ref(ref, store) == original  # exactly, not normalized
    assert normalize_output(output) == original
    assert output == original  # input not mutated
    assert store.list() == []


@pytest.mark.parametrize("output", ["text", 42, None, ["a"], 10**63])
def test_non_object_output_is_kept_raw_but_resolves_to_a_placeholder(
    store: Any, output: Any
) -> None:
    ref = output_to_ref(output, store)
    assert ref == raw(output)
    assert resolve_ref(ref, store) in (INVALID, UNRESOLVED)
    assert store.list() == []


def test_non_json_output_is_a_load_error(store: Any) -> None:
    for bad in (
        {"output_type": "display_data", "data": {}, "metadata": {"x": float("nan")}},
        {"output_type": "weird", "value": float("inf")},
        {"output_type": "display_data", "data": {"application/json": {1, 2}}, "metadata": {}},
    ):
        with pytest.raises(NotebookLoadError, match="not representable as JSON"):
            output_to_ref(bad, store)


def test_lone_surrogates_fall_back_to_escaped_json(store: Any) -> None:
    output = {"output_type": "stream", "name": "stdout", "text": ["bad \ud800 ", "text"]}
    ref = output_to_ref(output, store)
    assert not is_blob_id(ref)
    assert "\\ud800" in ref
    ref.encode()  # valid UTF-8
    assert resolve_ref(ref, store) == normalize_output(output)
    big = {"output_type": "display_data", "data": {"text/plain": "\udfff" * 9000}, "metadata": {}}
    ref = output_to_ref(big, store)
    assert not is_blob_id(ref)
    assert resolve_ref(ref, store) == big


# --------------------------------------------------------------------------- resolution failures
def test_unresolvable_hash_gives_placeholder(store: Any) -> None:
    ref = hashlib.sha256(b"never stored").hexdigest()
    assert resolve_ref(ref, store) == UNRESOLVED
    assert UNRESOLVED["text"] == UNRESOLVED_OUTPUT_TEXT
    assert INVALID["text"] == INVALID_OUTPUT_TEXT


def test_missing_content_blob_gives_placeholder(store: Any) -> None:
    ref = output_to_ref(DISPLAY, store)
    png_blob = manifest_of(ref, store)["data"]["image/png"]["blob"]
    assert store.delete(png_blob)
    assert resolve_ref(ref, store) == UNRESOLVED


def test_corrupt_manifest_blob_raises_and_a_put_repairs_it(tmp_path: Path) -> None:
    """A damaged output is never replaced by a placeholder (a save would lose it, issue 12
    item 5); the next put of the real bytes (a reload of the file) rewrites the blob."""
    store = DiskBlobStore(tmp_path)
    ref = output_to_ref(STREAM, store)
    path = Path(store.path_of(ref))
    path.write_bytes(path.read_bytes().replace(b"line", b"LINE"))  # same size
    with pytest.raises(BlobCorrupt, match=f"blob {ref} is corrupt"):
        resolve_ref(ref, store)
    assert output_to_ref(STREAM, store) == ref
    assert resolve_ref(ref, store) == normalize_output(STREAM)


def test_corrupt_content_blob_raises_and_a_put_repairs_it(tmp_path: Path) -> None:
    store = DiskBlobStore(tmp_path)
    ref = output_to_ref(DISPLAY, store)
    png_blob = manifest_of(ref, store)["data"]["image/png"]["blob"]
    Path(store.path_of(png_blob)).write_bytes(b"garbage")
    with pytest.raises(BlobCorrupt, match=f"blob {png_blob} is corrupt"):
        resolve_ref(ref, store)
    assert output_to_ref(DISPLAY, store) == ref
    assert resolve_ref(ref, store) == normalize_output(DISPLAY)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"a string"',
        b'{"output_type": "nope"}',
        b"{}",
        b'{"output_type": "stream", "name": "stdout", "text": "bare string"}',
        b'{"output_type": "stream", "name": 1, "text": {"inline": "x"}}',
        b'{"output_type": "stream", "name": "stdout", "text": {"inline": "[1]", "json": true}}',
        b'{"output_type": "stream", "name": "stdout", "text": {"inline": "x", "json": "yes"}}',
        b'{"output_type": "stream", "name": "stdout", "text": {"inline": 5}}',
        b'{"output_type": "stream", "name": "stdout", "text": {"blob": "../x", "size": 1}}',
        b'{"output_type": "stream", "name": "stdout", "text": {}}',
        b'{"output_type": "error", "ename": "E", "evalue": "", "traceback": {"inline": "[1]",'
        b' "json": true}}',
        b'{"output_type": "error", "ename": "E", "evalue": "", "traceback": {"inline": "[x",'
        b' "json": true}}',
        b'{"output_type": "display_data", "data": []}',
        b'{"output_type": "display_data", "data": {}, "metadata": 3}',
        b'{"output_type": "display_data", "data": {}, "transient": []}',
        b'{"output_type": "execute_result", "data": {}}',
        b'{"output_type": "execute_result", "data": {}, "execution_count": "1"}',
        b"[" * 100000 + b"]" * 100000,
    ],
)
def test_malformed_manifests_give_placeholder(store: Any, payload: bytes) -> None:
    ref = store.put(payload, MANIFEST_MEDIA_TYPE)
    assert resolve_ref(ref, store) == UNRESOLVED


def test_manifest_with_wrong_blob_size_gives_placeholder(store: Any) -> None:
    blob = store.put(b"x" * 10, "text/plain")
    good = json.dumps({"output_type": "stream", "name": "o", "text": {"blob": blob, "size": 10}})
    bad = json.dumps({"output_type": "stream", "name": "o", "text": {"blob": blob, "size": 11}})
    assert resolve_ref(store.put(good.encode(), MANIFEST_MEDIA_TYPE), store)["text"] == "x" * 10
    assert resolve_ref(store.put(bad.encode(), MANIFEST_MEDIA_TYPE), store) == UNRESOLVED


@pytest.mark.parametrize("ref", ["", "{", "not json", "[1, 2]", '"str"', "null", "A" * 64])
def test_invalid_raw_json_gives_placeholder(store: Any, ref: str) -> None:
    assert resolve_ref(ref, store) == INVALID


def test_placeholders_are_fresh_dicts(store: Any) -> None:
    first = resolve_ref("", store)
    first["text"] = "mutated"
    assert resolve_ref("", store) == INVALID


# --------------------------------------------------------------------------- store errors propagate
def test_disk_full_during_put_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DiskBlobStore(tmp_path)

    def enospc(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(os, "write", enospc)
        for output in (DISPLAY, STREAM):
            with pytest.raises(BlobStoreError, match="No space left on device"):
                output_to_ref(output, store)
        with pytest.raises(BlobStoreError):
            outputs_to_refs([ERROR], store)
    assert store.list() == []


def test_blob_too_large_propagates() -> None:
    store = MemoryBlobStore(max_blob_size=10_000)
    with pytest.raises(BlobTooLarge):
        output_to_ref(DISPLAY, store)


# --------------------------------------------------------------------------- list helpers
def test_outputs_to_refs_and_back(store: Any) -> None:
    outputs = [STREAM, DISPLAY, {"output_type": "unknown"}, EXECUTE, ERROR]
    refs = outputs_to_refs(outputs, store)
    assert len(refs) == 5
    assert [is_blob_id(r) for r in refs] == [True, True, False, True, True]
    assert resolve_refs(refs, store) == [normalize_output(o) for o in outputs]
    assert outputs_to_refs([], store) == []


def test_output_keys_note() -> None:
    assert set(OUTPUT_KEYS) == {"display_data", "execute_result", "stream", "error"}
    assert OUTPUT_KEYS["execute_result"] - OUTPUT_KEYS["display_data"] == {"execution_count"}
    assert INLINE_THRESHOLD == 8192
    assert MANIFEST_MEDIA_TYPE == "application/x-jupyter-output+json"


def test_notebook_scale_outputs(store: Any) -> None:
    """11 ~130 KB PNG outputs: one content blob + one manifest each, the text parts inline.

    ``PNG`` and its cuts by a multiple of 4 characters are canonical base64 (stored decoded, 3/4
    of the text); the other truncated variants are not and stay text."""
    outputs = [
        {
            "output_type": "display_data",
            "data": {"image/png": PNG[: len(PNG) - i], "text/plain": [f"<Figure {i}>"]},
            "metadata": {},
        }
        for i in range(11)
    ]
    refs = outputs_to_refs(outputs, store)
    stats = store.statistics()
    assert (stats.puts, stats.dedup_hits) == (22, 0)
    texts = [PNG[: len(PNG) - i] for i in range(11)]
    expected = sum(len(t) * 3 // 4 if i % 4 == 0 else len(t) for i, t in enumerate(texts))
    assert stats.bytes_written >= expected
    assert resolve_refs(refs, store) == [normalize_output(o) for o in outputs]


# --------------------------------------------------------------------------- property test
TEXT_MIMES = [
    "text/plain",
    "text/html",
    "text/markdown",
    "image/png",
    "image/svg+xml",
    "text/latex",
]
JSON_MIMES = ["application/json", "application/vnd.plotly.v1+json", "application/geo+json"]

texts = st.text(max_size=30)
multiline = st.one_of(texts, st.lists(texts, max_size=5))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=3)


@st.composite
def mime_bundles(draw: st.DrawFn) -> dict[str, Any]:
    bundle: dict[str, Any] = draw(st.dictionaries(st.sampled_from(TEXT_MIMES), multiline))
    bundle.update(draw(st.dictionaries(st.sampled_from(JSON_MIMES), json_values, max_size=2)))
    return bundle


@st.composite
def outputs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["display_data", "execute_result", "stream", "error"]))
    if kind == "stream":
        name = draw(st.sampled_from(["stdout", "stderr"]) | texts)
        return {"output_type": kind, "name": name, "text": draw(multiline)}
    if kind == "error":
        return {
            "output_type": kind,
            "ename": draw(texts),
            "evalue": draw(texts),
            "traceback": draw(st.lists(texts, max_size=5)),
        }
    output: dict[str, Any] = {"output_type": kind, "data": draw(mime_bundles())}
    if draw(st.booleans()):
        output["metadata"] = draw(json_objects)
    if draw(st.booleans()):
        output["transient"] = draw(st.fixed_dictionaries({"display_id": texts}) | json_objects)
    if kind == "execute_result":
        output["execution_count"] = draw(st.none() | st.integers(min_value=0))
    return output


def expected_round_trip(output: dict[str, Any]) -> dict[str, Any]:
    """The normalisation spelled out independently of the implementation."""
    result = copy.deepcopy(output)
    if result["output_type"] == "stream" and isinstance(result["text"], list):
        result["text"] = "".join(result["text"])
    if result["output_type"] in ("display_data", "execute_result"):
        result.setdefault("metadata", {})
        for mime, value in result["data"].items():
            if mime in TEXT_MIMES and isinstance(value, list):
                result["data"][mime] = "".join(value)
    return result


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(output=outputs(), threshold=st.sampled_from([0, 1, 16, 64, INLINE_THRESHOLD]))
def test_well_formed_outputs_round_trip(output: dict[str, Any], threshold: int) -> None:
    store = MemoryBlobStore()
    original = copy.deepcopy(output)
    ref = output_to_ref(output, store, inline_threshold=threshold)
    assert is_blob_id(ref)
    expected = expected_round_trip(original)
    assert resolve_ref(ref, store) == expected
    assert normalize_output(original) == expected
    assert output == original
    assert output_to_ref(expected, store, inline_threshold=threshold) == ref  # idempotent


# ---------------------------------------------------------------- corrupt vs unreadable
_IMAGE_OUTPUT = {
    "output_type": "display_data",
    "data": {"image/png": "A" * 20000, "text/plain": "<Figure>"},
    "metadata": {},
}


def test_a_bit_flipped_content_blob_raises_instead_of_a_placeholder(tmp_path: Path) -> None:
    store = DiskBlobStore(tmp_path)
    ref = output_to_ref(_IMAGE_OUTPUT, store)
    manifest = json.loads(store.get(ref) or b"")
    content_id = manifest["data"]["image/png"]["blob"]
    with open(store.path_of(content_id), "r+b") as f:  # flip the stored bytes, same size
        f.write(b"B")
    with pytest.raises(BlobCorrupt, match="content hash is"):
        resolve_ref(ref, store)


def test_unreadable_store_raises_instead_of_a_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O failure may be transient: a save must fail, not overwrite outputs with
    placeholders."""
    store = DiskBlobStore(tmp_path)
    ref = output_to_ref(_IMAGE_OUTPUT, store)
    real_open = os.open

    def failing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(tmp_path)) and not flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EIO, "Input/output error")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    monkeypatch.setattr("builtins.open", _fail_reads_under(tmp_path))
    with pytest.raises(BlobStoreError, match="Input/output error"):
        resolve_ref(ref, store)


def _fail_reads_under(root: Path) -> Any:
    import builtins

    real = builtins.open

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if str(file).startswith(str(root)) and "r" in mode and "+" not in mode:
            raise OSError(errno.EIO, "Input/output error")
        return real(file, mode, *args, **kwargs)

    return fake_open


def test_has_large_value_is_conservative() -> None:
    """The loader hops to a thread only when this says True: it must never miss a blob."""
    from core.manifest import has_large_value

    small = {"output_type": "stream", "name": "stdout", "text": "x" * 100}
    assert not has_large_value([small, {"output_type": "display_data", "data": {"a": "b"}}])
    for output in [
        {"output_type": "stream", "name": "stdout", "text": "x" * 8192},
        {"output_type": "stream", "name": "stdout", "text": ["é" * 2048]},
        {"output_type": "display_data", "data": {"image/png": PNG}, "metadata": {}},
        {"output_type": "error", "ename": "E", "evalue": "", "traceback": ["y" * 9000]},
        {"output_type": "display_data", "data": {"application/json": {"k": 1}}},
    ]:
        assert has_large_value([output])
        store = MemoryBlobStore()
        output_to_ref(output, store)
