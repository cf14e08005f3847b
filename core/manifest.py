"""Outputs ⇄ manifests (reference §3.2 and §3.4, with the §3.6 bug and §3.5 nondeterminism fixed).

An nbformat-4 output becomes a small JSON *manifest* stored in the blob store with media type
:data:`MANIFEST_MEDIA_TYPE`; only the manifest's 64-hex id enters the CRDT. Large values live in
their own blobs, referenced from the manifest by a *ContentRef*::

    {"inline": "<text>"}                 UTF-8 length < inline_threshold (8192)
    {"blob": "<64 hex>", "size": N}      otherwise; the blob is stored with the MIME type as its
                                         media type ("text/plain" for stream text,
                                         "application/json" for a traceback)
    {"blob": "<64 hex>", "size": N,      a binary MIME value (see below) that is canonical
     "encoding": "base64"}               base64: the blob holds the *decoded* bytes (N of them)
                                         and the text is their standard base64, re-encoded
    ... + "json": true                   the text is the JSON of a structured value

Binary values (:func:`is_binary_mime`): nbformat stores every MIME value that is neither text nor
JSON as a base64 string, so a value under ``image/*`` (except ``image/svg+xml`` and other
``+xml``), ``audio/*``, ``video/*``, ``font/*``, ``application/pdf`` or
``application/octet-stream`` that would become a blob is stored decoded, *if* re-encoding the
decoded bytes gives back the identical text (standard alphabet, ``=`` padding, no line breaks or
whitespace, zero trailing bits). Any other value - base64 with a trailing newline, wrapped lines,
missing padding - stays text, so export is byte-exact either way. Manifests written before the
``encoding`` key existed have none and read as text, as they always did; an unknown
``encoding`` makes the manifest unresolvable (a placeholder), never silently wrong text.

What each output type carries (:data:`OUTPUT_KEYS`; any other key means the raw-JSON fallback):

    display_data    output_type, data{mime: ContentRef}, metadata (omitted if empty), transient
                    (omitted if absent)
    execute_result  the same + execution_count (int or null, always present)
    stream          output_type, name, text (ContentRef)
    error           output_type, ename, evalue, traceback (ContentRef of the JSON array,
                    with "json": true)

Normalisation (what :func:`normalize_output` applies, and all that a round trip changes):

* a value given as a list of strings (stream ``text``; a MIME value whose MIME type is not
  ``application/json`` or ``application/*+json``) is joined with ``""``;
* missing ``metadata`` of ``display_data`` / ``execute_result`` becomes ``{}``.

Everything else round-trips exactly: string MIME values stay strings (also under
``application/json``), any other MIME value (objects, arrays, numbers, lists of non-strings) is
kept as its JSON text with ``"json": true`` and comes back structured; ``metadata`` and
``transient`` are kept as-is. An output the manifest cannot represent exactly — not an object,
unknown or missing ``output_type``, missing required or extra keys, wrong value types, strings
that are not encodable as UTF-8 (lone surrogates) — is stored in the CRDT as its raw JSON text.

Manifests are serialised with sorted keys and no whitespace, so equal outputs dedupe to one blob.
:class:`~core.errors.BlobStoreError` from the store propagates (a load must fail on disk-full).
Resolution turns an unresolvable manifest (missing, corrupt, unparseable, or referencing a
missing/corrupt content blob) into a stderr placeholder stream. A store that cannot be *read*
(an I/O error, possibly transient) raises :class:`~core.errors.BlobStoreError` instead: a save
must fail then, not write placeholders over real outputs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any

from core.blob_store import BlobStore, is_blob_id
from core.errors import InvalidBlobId, NotebookLoadError
from core.json_values import json_text

__all__ = [
    "INLINE_THRESHOLD",
    "INVALID_OUTPUT_TEXT",
    "MANIFEST_MEDIA_TYPE",
    "OUTPUT_KEYS",
    "UNRESOLVED_OUTPUT_TEXT",
    "has_large_value",
    "is_binary_mime",
    "manifest_blob_ids",
    "normalize_output",
    "output_to_ref",
    "outputs_to_refs",
    "resolve_ref",
    "resolve_refs",
]

INLINE_THRESHOLD = 8192
MANIFEST_MEDIA_TYPE = "application/x-jupyter-output+json"
UNRESOLVED_OUTPUT_TEXT = "[output could not be resolved]"
INVALID_OUTPUT_TEXT = "[invalid output JSON]"

# Keys each output type may carry. REQUIRED keys must be present for a manifest to be built.
OUTPUT_KEYS: dict[str, frozenset[str]] = {
    "display_data": frozenset({"output_type", "data", "metadata", "transient"}),
    "execute_result": frozenset(
        {"output_type", "data", "metadata", "transient", "execution_count"}
    ),
    "stream": frozenset({"output_type", "name", "text"}),
    "error": frozenset({"output_type", "ename", "evalue", "traceback"}),
}
_REQUIRED_KEYS: dict[str, frozenset[str]] = {
    "display_data": frozenset({"data"}),
    "execute_result": frozenset({"data", "execution_count"}),
    "stream": frozenset({"name", "text"}),
    "error": frozenset({"ename", "evalue", "traceback"}),
}
_JSON_MIME_RE = re.compile(r"application/(.*\+)?json")  # nbformat's JSON mimebundle pattern
_BINARY_TOP_TYPES = ("image/", "audio/", "video/", "font/")
_BINARY_MIMES = frozenset({"application/pdf", "application/octet-stream"})
_BASE64 = "base64"


def is_binary_mime(mime: str) -> bool:
    """True for the MIME types whose nbformat value is base64 text of binary data."""
    if mime in _BINARY_MIMES:
        return True
    return mime.startswith(_BINARY_TOP_TYPES) and not mime.endswith("+xml")


def _canonical_base64(text: str) -> bytes | None:
    """The decoded bytes if ``text`` is exactly the standard base64 of them, else None."""
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if base64.b64encode(decoded) == raw else None


class _Unresolvable(Exception):
    """A manifest (or one of its content refs) cannot be turned back into an output."""


# --------------------------------------------------------------------------- normalisation
def _joined(value: Any) -> str | None:
    """A string, or a list of strings joined with ""; None for anything else."""
    if isinstance(value, str):
        return value
    if type(value) is list and all(isinstance(item, str) for item in value):
        return "".join(value)
    return None


def _normalize(output: Any) -> dict[str, Any] | None:
    """The normalised form of a recognised, well-formed output; None if it is not one."""
    if not isinstance(output, dict):
        return None
    output_type = output.get("output_type")
    if not isinstance(output_type, str) or output_type not in OUTPUT_KEYS:
        return None
    if not OUTPUT_KEYS[output_type].issuperset(output):
        return None
    if not _REQUIRED_KEYS[output_type].issubset(output):
        return None
    if output_type == "stream":
        name, text = output["name"], _joined(output["text"])
        if not isinstance(name, str) or text is None:
            return None
        return {"output_type": output_type, "name": name, "text": text}
    if output_type == "error":
        ename, evalue, traceback = output["ename"], output["evalue"], output["traceback"]
        if not (isinstance(ename, str) and isinstance(evalue, str) and _is_str_list(traceback)):
            return None
        return {
            "output_type": output_type,
            "ename": ename,
            "evalue": evalue,
            "traceback": traceback,
        }
    data = output["data"]
    metadata = output.get("metadata", {})
    if not isinstance(data, dict) or not isinstance(metadata, dict):
        return None
    norm_data: dict[str, Any] = {}
    for mime, value in data.items():
        if not isinstance(mime, str):
            return None
        if type(value) is list and not _JSON_MIME_RE.fullmatch(mime):
            joined = _joined(value)
            norm_data[mime] = value if joined is None else joined
        else:
            norm_data[mime] = value
    result: dict[str, Any] = {"output_type": output_type, "data": norm_data, "metadata": metadata}
    if "transient" in output:
        if not isinstance(output["transient"], dict):
            return None
        result["transient"] = output["transient"]
    if output_type == "execute_result":
        count = output["execution_count"]
        if not (count is None or type(count) is int):
            return None
        result["execution_count"] = count
    return result


def _is_str_list(value: Any) -> bool:
    return type(value) is list and all(isinstance(item, str) for item in value)


def normalize_output(output: Any) -> Any:
    """What a round trip through a manifest gives back for ``output``.

    For every JSON object ``o``: ``resolve_ref(output_to_ref(o, s), s) == normalize_output(o)``.
    Outputs that take the raw-JSON fallback are returned unchanged. (A non-object output is kept
    as raw JSON in the CRDT but resolves to the invalid-output placeholder.)
    """
    normalized = _normalize(output)
    return output if normalized is None else normalized


# --------------------------------------------------------------------------- outputs -> refs
def _content_ref(
    text: str, media_type: str, store: BlobStore, threshold: int, *, is_json: bool = False
) -> dict[str, Any]:
    """Inline ``text`` if its UTF-8 length is < threshold, else store it (encoded once)."""
    length = len(text)
    # Inline without encoding when the UTF-8 length is known (ASCII) or bounded (<= 4 per char).
    if length < threshold and (text.isascii() or 4 * length < threshold):
        ref: dict[str, Any] = {"inline": text}
    else:
        encoded = text.encode()  # UnicodeEncodeError for lone surrogates -> raw fallback
        if len(encoded) < threshold:
            ref = {"inline": text}
        else:
            ref = {"blob": store.put(encoded, media_type), "size": len(encoded)}
    if is_json:
        ref["json"] = True
    return ref


def _build_manifest(norm: dict[str, Any], store: BlobStore, threshold: int) -> dict[str, Any]:
    output_type = norm["output_type"]
    if output_type == "stream":
        text_ref = _content_ref(norm["text"], "text/plain", store, threshold)
        return {"output_type": output_type, "name": norm["name"], "text": text_ref}
    if output_type == "error":
        tb = json.dumps(norm["traceback"], ensure_ascii=False, separators=(",", ":"))
        return {
            "output_type": output_type,
            "ename": norm["ename"],
            "evalue": norm["evalue"],
            "traceback": _content_ref(tb, "application/json", store, threshold, is_json=True),
        }
    data: dict[str, Any] = {}
    for mime, value in norm["data"].items():
        if isinstance(value, str):
            decoded = (
                _canonical_base64(value)
                if len(value) >= threshold and is_binary_mime(mime)
                else None
            )
            if decoded is not None:
                blob_id = store.put(decoded, mime)
                data[mime] = {"blob": blob_id, "size": len(decoded), "encoding": _BASE64}
            else:
                data[mime] = _content_ref(value, mime, store, threshold)
        else:
            data[mime] = _content_ref(json_text(value), mime, store, threshold, is_json=True)
    manifest: dict[str, Any] = {"output_type": output_type, "data": data}
    if norm["metadata"]:
        manifest["metadata"] = norm["metadata"]
    if "transient" in norm:
        manifest["transient"] = norm["transient"]
    if output_type == "execute_result":
        manifest["execution_count"] = norm["execution_count"]
    return manifest


def _raw_json(output: Any) -> str:
    """The raw-JSON fallback entry; NotebookLoadError if ``output`` is not a strict JSON value."""
    try:
        text = json.dumps(output, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise NotebookLoadError(f"output is not representable as JSON: {exc}") from exc
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates: escape them so the entry is valid UTF-8
        text = json.dumps(output, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text


def output_to_ref(
    output: Any, store: BlobStore, *, inline_threshold: int = INLINE_THRESHOLD
) -> str:
    """The CRDT entry for one nbformat-4 output (a parsed JSON value).

    Returns the 64-hex id of the stored manifest, or the raw output JSON text when the output is
    not a recognised, well-formed output (see the module docstring). ``BlobStoreError``
    propagates; ``NotebookLoadError`` if the output is not a strict JSON value (NaN, Infinity).
    """
    norm = _normalize(output)
    if norm is not None:
        try:
            manifest = _build_manifest(norm, store, inline_threshold)
            payload = json.dumps(
                manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        except (TypeError, ValueError, RecursionError):  # NaN, non-JSON values, lone surrogates
            return _raw_json(norm)
        return store.put(payload, MANIFEST_MEDIA_TYPE)
    return _raw_json(output)


def _large(value: Any, threshold: int) -> bool:
    if isinstance(value, str):  # n chars are n UTF-8 bytes if ASCII, at most 4n otherwise
        return len(value) >= threshold if value.isascii() else 4 * len(value) >= threshold
    if type(value) is list:
        return 4 * sum(len(v) if isinstance(v, str) else threshold for v in value) >= threshold
    return value is not None and not isinstance(value, (bool, int, float))


def has_large_value(outputs: Sequence[Any], threshold: int = INLINE_THRESHOLD) -> bool:
    """True if some output may hold a value of ``threshold`` or more UTF-8 bytes (a content
    blob, i.e. real I/O to hash and write). Conservative: may say True for a small value, never
    False for a large one. Cheap: no encoding, no JSON; structured values count as large."""
    for output in outputs:
        if not isinstance(output, dict):
            continue
        for key in ("text", "traceback"):
            if key in output and _large(output[key], threshold):
                return True
        data = output.get("data")
        if isinstance(data, dict) and any(_large(v, threshold) for v in data.values()):
            return True
    return False


def outputs_to_refs(
    outputs: Sequence[Any], store: BlobStore, *, inline_threshold: int = INLINE_THRESHOLD
) -> list[str]:
    """:func:`output_to_ref` for each output, in order."""
    return [output_to_ref(o, store, inline_threshold=inline_threshold) for o in outputs]


# --------------------------------------------------------------------------- refs -> outputs
def _placeholder(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stderr", "text": text}


def _resolve_content(ref: Any, store: BlobStore) -> Any:
    if not isinstance(ref, dict):
        raise _Unresolvable
    is_json = ref.get("json", False)
    if type(is_json) is not bool:
        raise _Unresolvable
    if "inline" in ref:
        text = ref["inline"]
        if not isinstance(text, str):
            raise _Unresolvable
    else:
        blob_id, size = ref.get("blob"), ref.get("size")
        if not isinstance(blob_id, str) or not is_blob_id(blob_id) or type(size) is not int:
            raise _Unresolvable
        data = store.get(blob_id)
        if data is None or len(data) != size:
            raise _Unresolvable
        encoding = ref.get("encoding")
        if encoding is None:
            text = data.decode("utf-8")
        elif encoding == _BASE64 and not is_json:
            text = base64.b64encode(data).decode("ascii")
        else:
            raise _Unresolvable
    return json.loads(text) if is_json else text


def _str_field(manifest: dict[str, Any], key: str) -> str:
    value = manifest.get(key)
    if not isinstance(value, str):
        raise _Unresolvable
    return value


def _dict_field(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    value = manifest.get(key, {})
    if not isinstance(value, dict):
        raise _Unresolvable
    return value


def _resolve_manifest(blob_id: str, store: BlobStore) -> dict[str, Any]:
    raw = store.get(blob_id)
    if raw is None:
        raise _Unresolvable
    manifest = json.loads(raw)
    if not isinstance(manifest, dict):
        raise _Unresolvable
    output_type = manifest.get("output_type")
    if output_type == "stream":
        text = _resolve_content(manifest.get("text"), store)
        if not isinstance(text, str):
            raise _Unresolvable
        return {"output_type": output_type, "name": _str_field(manifest, "name"), "text": text}
    if output_type == "error":
        traceback = _resolve_content(manifest.get("traceback"), store)
        if not _is_str_list(traceback):
            raise _Unresolvable
        return {
            "output_type": output_type,
            "ename": _str_field(manifest, "ename"),
            "evalue": _str_field(manifest, "evalue"),
            "traceback": traceback,
        }
    if output_type not in ("display_data", "execute_result"):
        raise _Unresolvable
    data = _dict_field(manifest, "data")
    output: dict[str, Any] = {"output_type": output_type}
    if output_type == "execute_result":
        count = manifest.get("execution_count", False)
        if not (count is None or type(count) is int):
            raise _Unresolvable
        output["execution_count"] = count
    output["data"] = {mime: _resolve_content(ref, store) for mime, ref in data.items()}
    output["metadata"] = _dict_field(manifest, "metadata")
    if "transient" in manifest:
        output["transient"] = _dict_field(manifest, "transient")
    return output


def resolve_ref(ref: str, store: BlobStore) -> dict[str, Any]:
    """The nbformat-4 output for a CRDT entry (manifest id or raw output JSON).

    Text values come back as single strings. An id whose manifest is missing or unparseable
    (or whose content blobs are) gives a stderr stream ``[output could not be resolved]``; raw
    JSON that does not parse to an object gives ``[invalid output JSON]``.

    Raises:
        BlobCorrupt: a blob it needs is stored but its bytes no longer match its id (a damaged
            disk or a hand-edited store): the output existed and is unreadable, so a save must
            not replace it with a placeholder (issue 12 item 5).
        BlobStoreError: the store could not be read (I/O), as opposed to holding corrupt data.
    """
    if is_blob_id(ref):
        try:
            return _resolve_manifest(ref, store)
        except (_Unresolvable, InvalidBlobId, ValueError, RecursionError):
            return _placeholder(UNRESOLVED_OUTPUT_TEXT)
    try:
        value = json.loads(ref)
    except (ValueError, RecursionError):
        return _placeholder(INVALID_OUTPUT_TEXT)
    if not isinstance(value, dict):
        return _placeholder(INVALID_OUTPUT_TEXT)
    return value


def manifest_blob_ids(manifest: bytes) -> set[str]:
    """The content blob ids a manifest references (``{"blob": <64 hex>, ...}`` at any depth);
    empty for bytes that are not JSON. What a blob collector keeps and a client fetches."""
    try:
        value = json.loads(manifest)
    except (ValueError, RecursionError):
        return set()
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("blob")
            if isinstance(ref, str) and is_blob_id(ref):
                found.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def resolve_refs(refs: Sequence[str], store: BlobStore) -> list[dict[str, Any]]:
    """:func:`resolve_ref` for each entry, in order."""
    return [resolve_ref(ref, store) for ref in refs]
