"""The BLOB (0x08) frame: the ``get_blob`` response as raw bytes behind a small JSON header.

Re-exported by :mod:`core.protocol`; import the public names from there.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core._protocol_json import _check_bytes, _dumps, _ExcType, _fail, _int, _loads, _object, _str
from core.errors import LocalProtocolError, MessageError

__all__ = ["BLOB_HEADER_MAX_SIZE", "Blob", "encode_blob", "parse_blob"]


@dataclass(frozen=True, slots=True)
class Blob:
    """Response to ``get_blob``: the blob's bytes and media type.

    Travels in its own ``BLOB`` (0x08) frame, raw bytes behind a small JSON header (see
    :func:`encode_blob`), never as base64 inside a ``RESPONSE`` frame.
    """

    id: int
    hash: str
    media_type: str
    data: bytes

    def to_json(self) -> dict[str, Any]:
        """The JSON header of the BLOB frame (the bytes follow it raw)."""
        return {
            "id": self.id,
            "result": "blob",
            "hash": self.hash,
            "media_type": self.media_type,
            "size": len(self.data),
        }


BLOB_HEADER_MAX_SIZE = 64 * 1024
"""Cap on the JSON header of a BLOB frame (checked before the header is decoded)."""

_BLOB_HEADER_LEN = struct.Struct(">I")


def encode_blob(blob: Blob) -> bytes:
    """Encode the body of a BLOB (0x08) frame: u32 header length, JSON header, raw bytes.

    Raises:
        LocalProtocolError: ``data`` is not bytes, or a header field has the wrong type.
    """
    if not isinstance(blob, Blob):
        raise LocalProtocolError(f"not a blob response: {type(blob).__name__}")
    _check_bytes(blob.data, "data", "Blob")
    obj = blob.to_json()
    _blob_header(obj, LocalProtocolError)
    header = _dumps(obj, "blob header")
    if len(header) > BLOB_HEADER_MAX_SIZE:
        raise LocalProtocolError(f"blob header too large: {len(header)} bytes")
    return b"".join((_BLOB_HEADER_LEN.pack(len(header)), header, blob.data))


def _blob_header(obj: Mapping[str, Any], exc: _ExcType) -> tuple[int, str, str, int]:
    what = "blob header"
    result = _str(obj, "result", what, exc)
    if result != "blob":
        _fail(exc, f'{what} "result" must be "blob", got {json.dumps(result)}')
    return (
        _int(obj, "id", what, exc),
        _str(obj, "hash", what, exc),
        _str(obj, "media_type", what, exc),
        _int(obj, "size", what, exc),
    )


def parse_blob(payload: bytes) -> Blob:
    """Parse the body of a BLOB (0x08) frame.

    The header length is checked against :data:`BLOB_HEADER_MAX_SIZE` and the body size before
    a byte of the header is decoded, and ``size`` must equal the bytes that follow the header.

    Raises:
        MessageError: a truncated length or header, a header length over the cap, a header
            that is not a valid JSON object, or a ``size`` that does not match.
    """
    body = len(payload)
    if body < _BLOB_HEADER_LEN.size:
        raise MessageError(
            f"truncated BLOB frame: {body} bytes, shorter than its 4-byte header length"
        )
    (length,) = _BLOB_HEADER_LEN.unpack_from(payload)
    if length > BLOB_HEADER_MAX_SIZE:
        raise MessageError(f"blob header too large: {length} bytes (cap {BLOB_HEADER_MAX_SIZE})")
    end = _BLOB_HEADER_LEN.size + length
    if end > body:
        raise MessageError(f"truncated blob header: length says {length} bytes, {body - 4} follow")
    obj = _object(_loads(payload[4:end], "blob header", MessageError), "blob header", MessageError)
    request_id, blob_hash, media_type, size = _blob_header(obj, MessageError)
    if size != body - end:
        raise MessageError(f'blob header "size" is {size} but {body - end} bytes follow it')
    return Blob(request_id, blob_hash, media_type, bytes(payload[end:]))
