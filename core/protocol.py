"""Protocol messages: the handshake, its reply, and the JSON bodies of typed frames.

Every message is a frozen, slotted dataclass with a ``to_json()`` method returning the JSON
object it travels as. ``parse_*`` functions turn a frame payload (bytes) into a message and
raise :class:`~core.errors.MessageError` (or :class:`~core.errors.HandshakeError` for the
handshake) with a precise message; ``encode_*`` functions turn a message into payload bytes and
raise :class:`~core.errors.LocalProtocolError` for a message the protocol does not allow.

No I/O here and no :mod:`asyncio` import. Framing (length prefixes, type bytes) lives in
:mod:`core.framing`; this module only deals with payloads. The handshake messages live in
:mod:`core._protocol_handshake` and the JSON/validation helpers in :mod:`core._protocol_json`;
this module re-exports the former, so import every public name from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, cast, get_args

from core._protocol_blob import BLOB_HEADER_MAX_SIZE, Blob, encode_blob, parse_blob
from core._protocol_handshake import (
    DAEMON_VERSION,
    PROTOCOL,
    PROTOCOL_VERSION,
    NotebookConnectionInfo,
    OpenNotebook,
    encode_connection_info,
    encode_handshake,
    parse_connection_info,
    parse_handshake,
)
from core._protocol_json import (
    MAX_JSON_INT,
    _b64,
    _b64_text,
    _check_bytes,
    _dumps,
    _ExcType,
    _fail,
    _int,
    _loads,
    _object,
    _opt_int,
    _opt_str,
    _quoted,
    _str,
)
from core._protocol_statistics import (
    BatchFigures,
    LoadFigures,
    Statistics,
    StatisticsResponse,
    parse_statistics,
)
from core.errors import LocalProtocolError, MessageError, ProtocolError
from core.json_values import json_type

__all__ = [
    "BLOB_HEADER_MAX_SIZE",
    "CLOSE_REASONS",
    "DAEMON_VERSION",
    "MAX_JSON_INT",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "BatchFigures",
    "Blob",
    "Closing",
    "DocBytes",
    "ErrorResponse",
    "GetBlob",
    "GetDocBytes",
    "GetLoadStatus",
    "LoadFigures",
    "LoadPhase",
    "LoadStatus",
    "LoadStatusResponse",
    "NotebookConnectionInfo",
    "OpenNotebook",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "Save",
    "Saved",
    "SessionControl",
    "Statistics",
    "StatisticsResponse",
    "closing_for",
    "encode_blob",
    "encode_broadcast",
    "encode_connection_info",
    "encode_handshake",
    "encode_request",
    "encode_response",
    "encode_session_control",
    "parse_blob",
    "parse_broadcast",
    "parse_connection_info",
    "parse_handshake",
    "parse_request",
    "parse_response",
    "parse_session_control",
]

LoadPhase = Literal["streaming", "ready", "failed"]
_LOAD_PHASES: tuple[str, ...] = get_args(LoadPhase)

_MAX_CLOSING_DETAIL = 4096


def _all_close_reasons() -> tuple[str, ...]:
    seen: list[str] = []
    stack: list[type[ProtocolError]] = [ProtocolError]
    while stack:
        cls = stack.pop(0)
        if cls.close_reason not in seen:
            seen.append(cls.close_reason)
        stack.extend(cls.__subclasses__())
    return tuple(seen)


CLOSE_REASONS: tuple[str, ...] = _all_close_reasons()
"""Every ``close_reason`` defined by the :class:`~core.errors.ProtocolError` tree."""


# =========================================================================== requests (0x01)
@dataclass(frozen=True, slots=True)
class GetDocBytes:
    """Ask for the whole Automerge document, saved (``doc_bytes`` response)."""

    id: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": "get_doc_bytes"}


@dataclass(frozen=True, slots=True)
class Save:
    """Ask the daemon to write the notebook back to its file (``saved`` response)."""

    id: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": "save"}


@dataclass(frozen=True, slots=True)
class GetLoadStatus:
    """Ask for the room's load status (``load_status`` response)."""

    id: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": "get_load_status"}


@dataclass(frozen=True, slots=True)
class GetBlob:
    """Ask for one blob of the content-addressed store (``blob`` response)."""

    id: int
    hash: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": "get_blob", "hash": self.hash}


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness check (``pong`` response)."""

    id: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "action": "ping"}


Request: TypeAlias = GetDocBytes | Save | GetLoadStatus | GetBlob | Ping | Statistics
_ACTIONS: tuple[str, ...] = (
    "get_doc_bytes",
    "save",
    "get_load_status",
    "get_blob",
    "ping",
    "statistics",
)


def _request(obj: Mapping[str, Any], exc: _ExcType) -> Request:
    request_id = _int(obj, "id", "request", exc)
    if "action" not in obj:
        _fail(exc, f'request has no "action" (known actions: {_quoted(_ACTIONS)})')
    action = obj["action"]
    if not isinstance(action, str):
        _fail(
            exc,
            f'request "action" must be a string, got {json_type(action)} '
            f"(known actions: {_quoted(_ACTIONS)})",
        )
    if action == "get_doc_bytes":
        return GetDocBytes(request_id)
    if action == "save":
        return Save(request_id)
    if action == "get_load_status":
        return GetLoadStatus(request_id)
    if action == "get_blob":
        return GetBlob(request_id, _str(obj, "hash", "get_blob request", exc))
    if action == "ping":
        return Ping(request_id)
    if action == "statistics":
        return Statistics(request_id)
    _fail(exc, f"unknown request action {json.dumps(action)} (known actions: {_quoted(_ACTIONS)})")


def parse_request(payload: bytes) -> Request:
    """Parse the body of a REQUEST (0x01) frame.

    Raises:
        MessageError: bad JSON, not an object, missing/invalid ``id``, missing/unknown
            ``action``, or a missing/invalid field of that action.
    """
    return _request(
        _object(_loads(payload, "request", MessageError), "request", MessageError), MessageError
    )


def encode_request(request: Request) -> bytes:
    """Encode the body of a REQUEST (0x01) frame.

    Raises:
        LocalProtocolError: not a request, or a field has the wrong type or range.
    """
    if not isinstance(request, (GetDocBytes, Save, GetLoadStatus, GetBlob, Ping, Statistics)):
        raise LocalProtocolError(f"not a request: {type(request).__name__}")
    obj = request.to_json()
    _request(obj, LocalProtocolError)
    return _dumps(obj, "request")


# =========================================================================== responses (0x02)
@dataclass(frozen=True, slots=True)
class DocBytes:
    """Response to ``get_doc_bytes``: the saved Automerge document."""

    id: int
    data: bytes

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "result": "doc_bytes", "bytes": _b64_text(self.data)}


@dataclass(frozen=True, slots=True)
class Saved:
    """Response to ``save``: the file written, its size, and the repairs the export made."""

    id: int
    path: str
    bytes_written: int
    repairs: tuple[str, ...] = ()  # omitted when empty (PROTOCOL.md 10.6)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "result": "saved",
            "path": self.path,
            "bytes_written": self.bytes_written,
        }
        if self.repairs:
            out["repairs"] = list(self.repairs)
        return out


@dataclass(frozen=True, slots=True)
class LoadStatusResponse:
    """Response to ``get_load_status``: same fields as the ``load_status`` session control."""

    id: int
    phase: LoadPhase
    reason: str | None = None
    cells_loaded: int = 0
    total_cells: int | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"id": self.id, "result": "load_status"}
        obj.update(
            _load_status_fields(self.phase, self.reason, self.cells_loaded, self.total_cells)
        )
        return obj


@dataclass(frozen=True, slots=True)
class Pong:
    """Response to ``ping``."""

    id: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "result": "pong"}


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A request failed. ``id`` is ``None`` only when no request id applies."""

    id: int | None
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "result": "error", "error": self.error}


Response: TypeAlias = (
    DocBytes | Saved | LoadStatusResponse | Blob | Pong | StatisticsResponse | ErrorResponse
)
_RESPONSE_TYPES = (
    DocBytes,
    Saved,
    LoadStatusResponse,
    Blob,
    Pong,
    StatisticsResponse,
    ErrorResponse,
)
_RESULTS: tuple[str, ...] = (
    "doc_bytes",
    "saved",
    "load_status",
    "blob",
    "pong",
    "statistics",
    "error",
)


def _response(obj: Mapping[str, Any], exc: _ExcType) -> Response:
    if "result" not in obj:
        _fail(exc, f'response has no "result" (known results: {_quoted(_RESULTS)})')
    result = obj["result"]
    if not isinstance(result, str):
        _fail(
            exc,
            f'response "result" must be a string, got {json_type(result)} '
            f"(known results: {_quoted(_RESULTS)})",
        )
    if result == "error":
        if "id" not in obj:
            _fail(exc, 'error response has no "id" (use null when no request applies)')
        return ErrorResponse(
            _opt_int(obj, "id", "error response", exc), _str(obj, "error", "error response", exc)
        )
    what = f"{result} response"
    if result not in _RESULTS:
        _fail(exc, f"unknown response result {json.dumps(result)} (known: {_quoted(_RESULTS)})")
    response_id = _int(obj, "id", what, exc)
    if result == "doc_bytes":
        return DocBytes(response_id, _b64(obj, "bytes", what, exc))
    if result == "saved":
        repairs = obj.get("repairs")
        if repairs is not None and not (
            type(repairs) is list and all(type(r) is str for r in repairs)
        ):
            _fail(exc, f'{what}: "repairs" must be an array of strings')
        return Saved(
            response_id,
            _str(obj, "path", what, exc),
            _int(obj, "bytes_written", what, exc),
            tuple(repairs or ()),
        )
    if result == "load_status":
        phase, reason, cells_loaded, total_cells = _load_status(obj, what, exc)
        return LoadStatusResponse(response_id, phase, reason, cells_loaded, total_cells)
    if result == "blob":
        _fail(exc, 'a "blob" response travels in a BLOB (0x08) frame, not in a RESPONSE frame')
    if result == "statistics":
        return parse_statistics(obj, response_id, exc)
    return Pong(response_id)


def parse_response(payload: bytes) -> Response:
    """Parse the body of a RESPONSE (0x02) frame.

    Raises:
        MessageError: bad JSON, not an object, missing/unknown ``result``, or a
            missing/invalid field of that result (``bytes`` must be standard padded base64).
    """
    return _response(
        _object(_loads(payload, "response", MessageError), "response", MessageError), MessageError
    )


def encode_response(response: Response) -> bytes:
    """Encode the body of a RESPONSE (0x02) frame.

    Raises:
        LocalProtocolError: not a response, or a field has the wrong type or range.
    """
    if not isinstance(response, _RESPONSE_TYPES):
        raise LocalProtocolError(f"not a response: {type(response).__name__}")
    if isinstance(response, Blob):
        raise LocalProtocolError("a blob response is sent with encode_blob (a BLOB frame)")
    if isinstance(response, DocBytes):
        _check_bytes(response.data, "data", type(response).__name__)
    obj = response.to_json()
    # Validate everything except the (possibly huge) base64 text we just produced ourselves.
    checked = {k: ("" if k == "bytes" else v) for k, v in obj.items()}
    _response(checked, LocalProtocolError)
    return _dumps(obj, "response")


# =========================================================================== session control (0x07)
def _load_status_fields(
    phase: str, reason: str | None, cells_loaded: int, total_cells: int | None
) -> dict[str, Any]:
    obj: dict[str, Any] = {"phase": phase}
    if reason is not None:
        obj["reason"] = reason
    obj["cells_loaded"] = cells_loaded
    obj["total_cells"] = total_cells
    return obj


def _load_status(
    obj: Mapping[str, Any], what: str, exc: _ExcType
) -> tuple[LoadPhase, str | None, int, int | None]:
    phase = _str(obj, "phase", what, exc)
    if phase not in _LOAD_PHASES:
        _fail(exc, f"{what} has unknown phase {json.dumps(phase)} (known: {_quoted(_LOAD_PHASES)})")
    reason = _opt_str(obj, "reason", what, exc)
    if phase == "failed" and reason is None:
        _fail(exc, f'{what} with phase "failed" must carry a "reason"')
    if phase != "failed" and reason is not None:
        _fail(exc, f'{what} "reason" is only allowed with phase "failed", not {json.dumps(phase)}')
    cells_loaded = _int(obj, "cells_loaded", what, exc)
    if "total_cells" not in obj:
        _fail(exc, f'{what} has no "total_cells" (use null when unknown)')
    total_cells = _opt_int(obj, "total_cells", what, exc)
    return cast(LoadPhase, phase), reason, cells_loaded, total_cells


@dataclass(frozen=True, slots=True)
class LoadStatus:
    """Daemon → client: the room's load phase changed (or the client just joined)."""

    phase: LoadPhase
    reason: str | None = None
    """Why the load failed; present exactly when ``phase == "failed"``."""
    cells_loaded: int = 0
    total_cells: int | None = None
    """Cells in the file, once known; ``None`` (JSON null) before that."""

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"type": "load_status"}
        obj.update(
            _load_status_fields(self.phase, self.reason, self.cells_loaded, self.total_cells)
        )
        return obj


@dataclass(frozen=True, slots=True)
class Closing:
    """Daemon → client: the connection is about to be closed because of a protocol error."""

    reason: str
    """A ``close_reason`` code (see :data:`CLOSE_REASONS`); clients must accept unknown codes."""
    detail: str
    """Human-readable explanation (the error message)."""

    def to_json(self) -> dict[str, Any]:
        return {"type": "closing", "reason": self.reason, "detail": self.detail}


SessionControl: TypeAlias = LoadStatus | Closing
_CONTROL_TYPES: tuple[str, ...] = ("load_status", "closing")


def _session_control(obj: Mapping[str, Any], exc: _ExcType) -> SessionControl:
    what = "session control"
    kind = _str(obj, "type", what, exc)
    if kind == "load_status":
        phase, reason, cells_loaded, total_cells = _load_status(obj, "load_status", exc)
        return LoadStatus(phase, reason, cells_loaded, total_cells)
    if kind == "closing":
        reason = _str(obj, "reason", "closing", exc)
        if not reason:
            _fail(exc, 'closing "reason" must not be empty')
        return Closing(reason, _str(obj, "detail", "closing", exc))
    _fail(
        exc,
        f"unknown session control type {json.dumps(kind)} (known types: {_quoted(_CONTROL_TYPES)})",
    )


def parse_session_control(payload: bytes) -> SessionControl:
    """Parse the body of a SESSION_CONTROL (0x07) frame.

    Raises:
        MessageError: bad JSON, not an object, missing/unknown ``type``, or a missing/invalid
            field of that type.
    """
    obj = _object(_loads(payload, "session control", MessageError), "session control", MessageError)
    return _session_control(obj, MessageError)


def encode_session_control(message: SessionControl) -> bytes:
    """Encode the body of a SESSION_CONTROL (0x07) frame.

    Raises:
        LocalProtocolError: not a session control message, or a field is invalid.
    """
    if not isinstance(message, (LoadStatus, Closing)):
        raise LocalProtocolError(f"not a session control message: {type(message).__name__}")
    obj = message.to_json()
    _session_control(obj, LocalProtocolError)
    return _dumps(obj, "session control")


def closing_for(error: ProtocolError) -> Closing:
    """The ``closing`` message to send before closing a connection because of ``error``."""
    detail = str(error) or type(error).__name__
    if len(detail) > _MAX_CLOSING_DETAIL:
        detail = detail[: _MAX_CLOSING_DETAIL - 1] + "…"
    return Closing(reason=error.close_reason, detail=detail)


# =========================================================================== broadcast (0x03)
def parse_broadcast(payload: bytes) -> dict[str, Any]:
    """Parse the body of a BROADCAST (0x03) frame: a JSON object with a string ``event``.

    No broadcast events are defined yet; clients must ignore events they do not know.

    Raises:
        MessageError: bad JSON, not an object, or ``event`` missing / not a string.
    """
    obj = _object(_loads(payload, "broadcast", MessageError), "broadcast", MessageError)
    _str(obj, "event", "broadcast", MessageError)
    return obj


def encode_broadcast(message: Mapping[str, Any]) -> bytes:
    """Encode the body of a BROADCAST (0x03) frame.

    Raises:
        LocalProtocolError: not an object with a string ``event``, or not JSON-encodable.
    """
    obj = _object(
        dict(message) if isinstance(message, Mapping) else message, "broadcast", LocalProtocolError
    )
    _str(obj, "event", "broadcast", LocalProtocolError)
    return _dumps(obj, "broadcast")
