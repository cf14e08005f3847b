"""Tests for core.protocol: handshake, connection info and typed-frame JSON messages."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import core
from core import errors
from core.errors import (
    CoreError,
    FrameTooLarge,
    HandshakeError,
    LocalProtocolError,
    MessageError,
    ProtocolError,
)
from core.protocol import (
    BLOB_HEADER_MAX_SIZE,
    CLOSE_REASONS,
    DAEMON_VERSION,
    MAX_JSON_INT,
    PROTOCOL,
    PROTOCOL_VERSION,
    Blob,
    Closing,
    DocBytes,
    ErrorResponse,
    GetBlob,
    GetDocBytes,
    GetLoadStatus,
    LoadStatus,
    LoadStatusResponse,
    NotebookConnectionInfo,
    OpenNotebook,
    Ping,
    Pong,
    Request,
    Response,
    Save,
    Saved,
    SessionControl,
    closing_for,
    encode_blob,
    encode_broadcast,
    encode_connection_info,
    encode_handshake,
    encode_request,
    encode_response,
    encode_session_control,
    parse_blob,
    parse_broadcast,
    parse_connection_info,
    parse_handshake,
    parse_request,
    parse_response,
    parse_session_control,
)

HASH = "ab" * 32


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# =========================================================================== constants
def test_constants() -> None:
    assert PROTOCOL == "v2"
    assert PROTOCOL_VERSION == 4
    assert core.__version__ == DAEMON_VERSION


def test_close_reasons_cover_the_error_tree() -> None:
    assert set(CLOSE_REASONS) == {
        "protocol_error",
        "local_protocol_error",
        "remote_protocol_error",
        "frame_too_large",
        "empty_frame",
        "unknown_frame_type",
        "bad_handshake",
        "bad_message",
        "sync_too_large",
        "frame_timeout",
        "over_budget",
    }
    assert errors.FrameTooLarge.close_reason in CLOSE_REASONS


# =========================================================================== round trips
def test_handshake_round_trip() -> None:
    h = OpenNotebook("/abs/x.ipynb")
    wire = encode_handshake(h)
    assert wire == b'{"channel":"open_notebook","path":"/abs/x.ipynb","protocol_version":4}'
    assert parse_handshake(wire) == h


def test_handshake_unicode_path_round_trip() -> None:
    h = OpenNotebook("/home/zoë/ノート.ipynb")
    wire = encode_handshake(h)
    assert "zoë".encode() in wire  # UTF-8, not \\u escapes
    assert parse_handshake(wire) == h


def test_handshake_ignores_unknown_fields() -> None:
    assert parse_handshake(
        j({"channel": "open_notebook", "path": "/a.ipynb", "protocol_version": 4, "future": 1})
    ) == OpenNotebook("/a.ipynb")


def test_lone_surrogate_path_still_encodes_valid_utf8() -> None:
    h = OpenNotebook("/tmp/\udcff.ipynb")
    wire = encode_handshake(h)
    wire.decode("utf-8")  # valid UTF-8 (escaped)
    assert parse_handshake(wire) == h


def test_connection_info_round_trip() -> None:
    info = NotebookConnectionInfo("/abs/x.ipynb", 0)
    wire = encode_connection_info(info)
    assert json.loads(wire) == {
        "protocol": "v2",
        "protocol_version": 4,
        "daemon_version": core.__version__,
        "notebook_id": "/abs/x.ipynb",
        "cell_count": 0,
    }
    assert "error" not in info.to_json()
    assert parse_connection_info(wire) == info
    failed = NotebookConnectionInfo("", 0, error="no such file")
    assert failed.to_json()["error"] == "no such file"
    assert parse_connection_info(encode_connection_info(failed)) == failed


def test_connection_info_optional_fields() -> None:
    info = parse_connection_info(
        j(
            {
                "protocol": "v2",
                "protocol_version": 4,
                "notebook_id": "n",
                "cell_count": 5,
                "error": None,
                "needs_trust_approval": False,
            }
        )
    )
    assert info == NotebookConnectionInfo("n", 5, daemon_version="")


REQUESTS: list[Request] = [
    GetDocBytes(0),
    Save(1),
    GetLoadStatus(2),
    GetBlob(3, HASH),
    Ping(MAX_JSON_INT),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_request_round_trip(request_: Request) -> None:
    wire = encode_request(request_)
    assert parse_request(wire) == request_
    assert json.loads(wire) == request_.to_json()


def test_request_wire_forms() -> None:
    assert encode_request(GetDocBytes(1)) == b'{"id":1,"action":"get_doc_bytes"}'
    assert encode_request(Save(2)) == b'{"id":2,"action":"save"}'
    assert encode_request(GetLoadStatus(3)) == b'{"id":3,"action":"get_load_status"}'
    assert encode_request(GetBlob(4, HASH)) == (
        b'{"id":4,"action":"get_blob","hash":"' + HASH.encode() + b'"}'
    )
    assert encode_request(Ping(5)) == b'{"id":5,"action":"ping"}'


RESPONSES: list[Response] = [
    DocBytes(1, b"\x85o\x4a\x83" + bytes(range(256))),
    DocBytes(2, b""),
    Saved(3, "/abs/x.ipynb", 1234),
    LoadStatusResponse(4, "streaming", None, 9, 50),
    LoadStatusResponse(5, "ready", None, 50, 50),
    LoadStatusResponse(6, "failed", "invalid JSON at line 3 column 5", 0, None),
    Pong(8),
    ErrorResponse(9, "blob not found"),
    ErrorResponse(None, "no request applies"),
]


@pytest.mark.parametrize("response", RESPONSES, ids=lambda r: type(r).__name__)
def test_response_round_trip(response: Response) -> None:
    wire = encode_response(response)
    assert parse_response(wire) == response
    assert json.loads(wire) == response.to_json()


def test_response_wire_forms() -> None:
    assert json.loads(encode_response(DocBytes(1, b"hi"))) == {
        "id": 1,
        "result": "doc_bytes",
        "bytes": "aGk=",
    }
    assert json.loads(encode_response(ErrorResponse(None, "x"))) == {
        "id": None,
        "result": "error",
        "error": "x",
    }
    assert json.loads(encode_response(LoadStatusResponse(1, "ready", cells_loaded=2))) == {
        "id": 1,
        "result": "load_status",
        "phase": "ready",
        "cells_loaded": 2,
        "total_cells": None,
    }
    assert json.loads(encode_response(Saved(3, "/a", 7))) == {
        "id": 3,
        "result": "saved",
        "path": "/a",
        "bytes_written": 7,
    }


CONTROLS: list[SessionControl] = [
    LoadStatus("streaming", cells_loaded=3, total_cells=None),
    LoadStatus("ready", cells_loaded=50, total_cells=50),
    LoadStatus("failed", "cells is not an array", 0, None),
    Closing("frame_too_large", "frame too large: 1819045742 bytes (cap 104857600)"),
]


@pytest.mark.parametrize("message", CONTROLS, ids=lambda m: type(m).__name__)
def test_session_control_round_trip(message: SessionControl) -> None:
    wire = encode_session_control(message)
    assert parse_session_control(wire) == message


def test_session_control_wire_forms() -> None:
    assert encode_session_control(LoadStatus("failed", "boom")) == (
        b'{"type":"load_status","phase":"failed","reason":"boom","cells_loaded":0,'
        b'"total_cells":null}'
    )
    assert encode_session_control(LoadStatus("ready", None, 2, 2)) == (
        b'{"type":"load_status","phase":"ready","cells_loaded":2,"total_cells":2}'
    )
    assert encode_session_control(Closing("bad_message", "d")) == (
        b'{"type":"closing","reason":"bad_message","detail":"d"}'
    )


def test_closing_accepts_unknown_reason_codes() -> None:
    assert parse_session_control(
        j({"type": "closing", "reason": "future_reason", "detail": ""})
    ) == Closing("future_reason", "")


def test_closing_for_error() -> None:
    assert closing_for(FrameTooLarge("too big")) == Closing("frame_too_large", "too big")
    assert closing_for(HandshakeError()) == Closing("bad_handshake", "HandshakeError")
    long = closing_for(MessageError("x" * 10_000))
    assert len(long.detail) == 4096
    assert long.detail.endswith("…")


def test_broadcast_round_trip() -> None:
    wire = encode_broadcast({"event": "file_changed", "cells": []})
    assert parse_broadcast(wire) == {"event": "file_changed", "cells": []}


def test_messages_are_frozen_and_slotted() -> None:
    for message in [*REQUESTS, *RESPONSES, *CONTROLS, OpenNotebook("/a")]:
        assert not hasattr(message, "__dict__")
        first = dataclasses.fields(message)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(message, first, 5)


# =========================================================================== precise errors
Parser = Callable[[bytes], object]

ERRORS: list[tuple[str, Parser, bytes, type[ProtocolError], str]] = [
    # ---- handshake
    ("hs-utf8", parse_handshake, b'{"a":"\xff"}', HandshakeError,
     "handshake is not UTF-8: invalid start byte at byte 6"),
    ("hs-json", parse_handshake, b'{"channel":', HandshakeError,
     "handshake is not valid JSON: Expecting value at line 1 column 12 (char 11)"),
    ("hs-nan", parse_handshake, b'{"x":NaN}', HandshakeError,
     "handshake contains the non-finite number NaN, which JSON does not allow"),
    ("hs-inf", parse_handshake, b'{"x":-Infinity}', HandshakeError,
     "handshake contains the non-finite number -Infinity, which JSON does not allow"),
    ("hs-1e999", parse_handshake, b'{"x":1e999}', HandshakeError,
     "handshake contains the non-finite number 1e999, which JSON does not allow"),
    ("hs-deep", parse_handshake, b"[" * 100_000, HandshakeError,
     "handshake is nested too deeply"),
    ("hs-array", parse_handshake, b"[]", HandshakeError,
     "handshake must be a JSON object, got array"),
    ("hs-string", parse_handshake, b'"open_notebook"', HandshakeError,
     "handshake must be a JSON object, got string"),
    ("hs-no-channel", parse_handshake, b"{}", HandshakeError,
     'handshake has no "channel" (known channels: "open_notebook")'),
    ("hs-channel-type", parse_handshake, b'{"channel":null}', HandshakeError,
     'handshake "channel" must be a string, got null (known channels: "open_notebook")'),
    ("hs-unknown-channel", parse_handshake, b'{"channel":"pool"}', HandshakeError,
     'unknown handshake channel "pool" (known channels: "open_notebook")'),
    ("hs-no-path", parse_handshake, b'{"channel":"open_notebook"}', HandshakeError,
     'open_notebook handshake has no "path"'),
    ("hs-path-type", parse_handshake, b'{"channel":"open_notebook","path":1}', HandshakeError,
     'open_notebook handshake "path" must be a string, got number'),
    ("hs-path-empty", parse_handshake, b'{"channel":"open_notebook","path":""}', HandshakeError,
     'open_notebook "path" must not be empty'),
    ("hs-path-nul", parse_handshake, b'{"channel":"open_notebook","path":"/a\\u0000b"}',
     HandshakeError, 'open_notebook "path" must not contain a NUL character'),
    ("hs-path-relative", parse_handshake, b'{"channel":"open_notebook","path":"x.ipynb"}',
     HandshakeError, "open_notebook \"path\" must be absolute (start with \"/\"), got 'x.ipynb'"),
    # ---- connection info
    ("ci-protocol", parse_connection_info,
     j({"protocol": "v1", "protocol_version": 4, "notebook_id": "n", "cell_count": 0}),
     MessageError, 'unsupported protocol "v1" (this client speaks "v2")'),
    ("ci-no-protocol", parse_connection_info, j({"notebook_id": "n", "cell_count": 0}),
     MessageError, 'connection info has no "protocol"'),
    ("ci-version", parse_connection_info,
     j({"protocol": "v2", "protocol_version": 2, "notebook_id": "n", "cell_count": 0}),
     MessageError, "unsupported protocol_version 2 (this client speaks 4)"),
    ("ci-version-bool", parse_connection_info,
     j({"protocol": "v2", "protocol_version": True, "notebook_id": "n", "cell_count": 0}),
     MessageError, "unsupported protocol_version true (this client speaks 4)"),
    ("ci-no-version", parse_connection_info,
     j({"protocol": "v2", "notebook_id": "n", "cell_count": 0}),
     MessageError, 'connection info has no "protocol_version" (expected 4)'),
    ("ci-count-type", parse_connection_info,
     j({"protocol": "v2", "protocol_version": 4, "notebook_id": "n", "cell_count": "5"}),
     MessageError, 'connection info "cell_count" must be an integer, got string'),
    ("ci-count-negative", parse_connection_info,
     j({"protocol": "v2", "protocol_version": 4, "notebook_id": "n", "cell_count": -1}),
     MessageError, 'connection info "cell_count" must be >= 0, got -1'),
    ("ci-error-type", parse_connection_info,
     j({"protocol": "v2", "protocol_version": 4, "notebook_id": "n", "cell_count": 0,
        "error": 5}),
     MessageError, 'connection info "error" must be a string or absent, got number'),
    ("ci-id-type", parse_connection_info,
     j({"protocol": "v2", "protocol_version": 4, "notebook_id": None, "cell_count": 0}),
     MessageError, 'connection info "notebook_id" must be a string, got null'),
    # ---- requests
    ("rq-json", parse_request, b"{", MessageError,
     "request is not valid JSON: Expecting property name enclosed in double quotes "
     "at line 1 column 2 (char 1)"),
    ("rq-utf8", parse_request, b"\xc3", MessageError,
     "request is not UTF-8: unexpected end of data at byte 0"),
    ("rq-not-object", parse_request, b"1", MessageError,
     "request must be a JSON object, got number"),
    ("rq-no-id", parse_request, b'{"action":"ping"}', MessageError, 'request has no "id"'),
    ("rq-id-bool", parse_request, b'{"id":true,"action":"ping"}', MessageError,
     'request "id" must be an integer, got boolean'),
    ("rq-id-float", parse_request, b'{"id":1.0,"action":"ping"}', MessageError,
     'request "id" must be an integer, got number'),
    ("rq-id-negative", parse_request, b'{"id":-1,"action":"ping"}', MessageError,
     'request "id" must be >= 0, got -1'),
    ("rq-id-huge", parse_request, b'{"id":9007199254740992,"action":"ping"}', MessageError,
     'request "id" must be <= 2**53-1, got 9007199254740992'),
    ("rq-no-action", parse_request, b'{"id":1}', MessageError,
     'request has no "action" (known actions: "get_doc_bytes", "save", "get_load_status", '
     '"get_blob", "ping", "statistics")'),
    ("rq-action-type", parse_request, b'{"id":1,"action":[]}', MessageError,
     'request "action" must be a string, got array (known actions: "get_doc_bytes", "save", '
     '"get_load_status", "get_blob", "ping", "statistics")'),
    ("rq-unknown-action", parse_request, b'{"id":1,"action":"launch_kernel"}', MessageError,
     'unknown request action "launch_kernel" (known actions: "get_doc_bytes", "save", '
     '"get_load_status", "get_blob", "ping", "statistics")'),
    ("rq-no-hash", parse_request, b'{"id":1,"action":"get_blob"}', MessageError,
     'get_blob request has no "hash"'),
    ("rq-hash-type", parse_request, b'{"id":1,"action":"get_blob","hash":7}', MessageError,
     'get_blob request "hash" must be a string, got number'),
    # ---- responses
    ("rs-no-result", parse_response, b'{"id":1}', MessageError,
     'response has no "result" (known results: "doc_bytes", "saved", "load_status", "blob", '
     '"pong", "statistics", "error")'),
    ("rs-result-type", parse_response, b'{"id":1,"result":1}', MessageError,
     'response "result" must be a string, got number (known results: "doc_bytes", "saved", '
     '"load_status", "blob", "pong", "statistics", "error")'),
    ("rs-unknown-result", parse_response, b'{"id":1,"result":"nope"}', MessageError,
     'unknown response result "nope" (known: "doc_bytes", "saved", "load_status", "blob", '
     '"pong", "statistics", "error")'),
    ("rs-no-id", parse_response, b'{"result":"pong"}', MessageError,
     'pong response has no "id"'),
    ("rs-error-no-id", parse_response, b'{"result":"error","error":"x"}', MessageError,
     'error response has no "id" (use null when no request applies)'),
    ("rs-error-no-error", parse_response, b'{"id":null,"result":"error"}', MessageError,
     'error response has no "error"'),
    ("rs-base64", parse_response, b'{"id":1,"result":"doc_bytes","bytes":"a*=="}', MessageError,
     'doc_bytes response "bytes" is not valid base64: Only base64 data is allowed'),
    ("rs-base64-padding", parse_response, b'{"id":1,"result":"doc_bytes","bytes":"aGk"}',
     MessageError,
     'doc_bytes response "bytes" is not valid base64: Incorrect padding'),
    ("rs-bytes-list", parse_response, b'{"id":1,"result":"doc_bytes","bytes":[1,2]}',
     MessageError, 'doc_bytes response "bytes" must be a string, got array'),
    ("rs-saved-size", parse_response,
     b'{"id":1,"result":"saved","path":"/a","bytes_written":"1"}', MessageError,
     'saved response "bytes_written" must be an integer, got string'),
    ("rs-blob-in-response", parse_response, b'{"id":1,"result":"blob","hash":"h","bytes":""}',
     MessageError, 'a "blob" response travels in a BLOB (0x08) frame, not in a RESPONSE frame'),
    ("rs-status-phase", parse_response,
     b'{"id":1,"result":"load_status","phase":"done","cells_loaded":0,"total_cells":null}',
     MessageError,
     'load_status response has unknown phase "done" (known: "streaming", "ready", "failed")'),
    # ---- session control
    ("sc-not-object", parse_session_control, b"null", MessageError,
     "session control must be a JSON object, got null"),
    ("sc-no-type", parse_session_control, b"{}", MessageError,
     'session control has no "type"'),
    ("sc-unknown-type", parse_session_control, b'{"type":"sync_status"}', MessageError,
     'unknown session control type "sync_status" (known types: "load_status", "closing")'),
    ("sc-no-phase", parse_session_control, b'{"type":"load_status"}', MessageError,
     'load_status has no "phase"'),
    ("sc-failed-no-reason", parse_session_control,
     b'{"type":"load_status","phase":"failed","cells_loaded":0,"total_cells":null}',
     MessageError, 'load_status with phase "failed" must carry a "reason"'),
    ("sc-reason-not-failed", parse_session_control,
     b'{"type":"load_status","phase":"ready","reason":"x","cells_loaded":0,"total_cells":0}',
     MessageError, 'load_status "reason" is only allowed with phase "failed", not "ready"'),
    ("sc-no-total", parse_session_control,
     b'{"type":"load_status","phase":"ready","cells_loaded":0}', MessageError,
     'load_status has no "total_cells" (use null when unknown)'),
    ("sc-total-type", parse_session_control,
     b'{"type":"load_status","phase":"ready","cells_loaded":0,"total_cells":"3"}',
     MessageError, 'load_status "total_cells" must be an integer, got string'),
    ("sc-no-loaded", parse_session_control,
     b'{"type":"load_status","phase":"streaming","total_cells":null}', MessageError,
     'load_status has no "cells_loaded"'),
    ("sc-closing-empty", parse_session_control, b'{"type":"closing","reason":"","detail":""}',
     MessageError, 'closing "reason" must not be empty'),
    ("sc-closing-detail", parse_session_control, b'{"type":"closing","reason":"x"}',
     MessageError, 'closing has no "detail"'),
    # ---- broadcast
    ("bc-not-object", parse_broadcast, b"[]", MessageError,
     "broadcast must be a JSON object, got array"),
    ("bc-no-event", parse_broadcast, b"{}", MessageError, 'broadcast has no "event"'),
    ("bc-event-type", parse_broadcast, b'{"event":1}', MessageError,
     'broadcast "event" must be a string, got number'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("parser", "payload", "exc", "message"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_precise_error(
    parser: Parser, payload: bytes, exc: type[ProtocolError], message: str
) -> None:
    with pytest.raises(exc) as info:
        parser(payload)
    assert str(info.value) == message
    assert type(info.value) is exc
    assert info.value.__cause__ is None


def test_huge_integer_literal() -> None:
    with pytest.raises(MessageError, match=r"^request is not acceptable JSON: Exceeds the limit"):
        parse_request(b'{"id":' + b"1" * 5000 + b',"action":"ping"}')


# =========================================================================== encode errors
ENCODE_ERRORS: list[tuple[str, Callable[[], object], str]] = [
    ("hs-relative", lambda: encode_handshake(OpenNotebook("x")),
     "open_notebook \"path\" must be absolute (start with \"/\"), got 'x'"),
    ("hs-type", lambda: encode_handshake(OpenNotebook(b"/x")),  # type: ignore[arg-type]
     'open_notebook "path" must be a string, got bytes'),
    ("rq-negative", lambda: encode_request(Ping(-1)), 'request "id" must be >= 0, got -1'),
    ("rq-bool", lambda: encode_request(Ping(True)),
     'request "id" must be an integer, got boolean'),
    ("rq-not-request", lambda: encode_request(Pong(1)),  # type: ignore[arg-type]
     "not a request: Pong"),
    ("rs-data-type", lambda: encode_response(DocBytes(1, "text")),  # type: ignore[arg-type]
     'DocBytes "data" must be bytes, got str'),
    ("rs-not-response", lambda: encode_response(Ping(1)),  # type: ignore[arg-type]
     "not a response: Ping"),
    ("rs-phase", lambda: encode_response(LoadStatusResponse(1, "done")),  # type: ignore[arg-type]
     'load_status response has unknown phase "done" (known: "streaming", "ready", "failed")'),
    ("sc-failed", lambda: encode_session_control(LoadStatus("failed")),
     'load_status with phase "failed" must carry a "reason"'),
    ("sc-not-control", lambda: encode_session_control(Ping(1)),  # type: ignore[arg-type]
     "not a session control message: Ping"),
    ("ci-version", lambda: encode_connection_info(NotebookConnectionInfo("n", 0,
                                                                         protocol_version=2)),
     "unsupported protocol_version 2 (this client speaks 4)"),
    ("bc-event", lambda: encode_broadcast({"x": 1}), 'broadcast has no "event"'),
    ("bc-json", lambda: encode_broadcast({"event": "e", "x": object()}),
     "cannot encode broadcast as JSON: Object of type object is not JSON serializable"),
    ("bc-nan", lambda: encode_broadcast({"event": "e", "x": float("nan")}),
     "cannot encode broadcast as JSON: Out of range float values are not JSON compliant"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in ENCODE_ERRORS], ids=[c[0] for c in ENCODE_ERRORS]
)
def test_precise_encode_error(make: Callable[[], object], message: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        make()
    assert str(info.value).startswith(message)


# =========================================================================== fuzz
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(
        ["open_notebook", "/abs/x.ipynb", "get_blob", "ping", "load_status", "closing", "failed"]
    ),
)
keys = st.sampled_from(
    ["channel", "path", "id", "action", "hash", "type", "phase", "reason", "cells_loaded",
     "total_cells", "detail", "result", "bytes", "error", "event", "protocol",
     "protocol_version", "notebook_id", "cell_count", "media_type", "bytes_written", "x"]
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=6),
    max_leaves=12,
)

PARSERS: list[Parser] = [
    parse_handshake,
    parse_connection_info,
    parse_request,
    parse_response,
    parse_session_control,
    parse_blob,
    parse_broadcast,
]


def _only_core_errors(payload: bytes) -> None:
    for parser in PARSERS:
        try:
            parser(payload)
        except CoreError as e:
            assert isinstance(e, (MessageError, HandshakeError)), e


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(payload: bytes) -> None:
    _only_core_errors(payload)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_fuzz_json_shaped(value: Any) -> None:
    _only_core_errors(json.dumps(value).encode())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=8), st.sampled_from(PARSERS))
def test_fuzz_parsed_messages_reencode(obj: dict[str, Any], parser: Parser) -> None:
    """Whatever a parser accepts, the matching encoder turns back into an equal message."""
    try:
        message = parser(json.dumps(obj).encode())
    except (MessageError, HandshakeError):
        return
    encoders: dict[Parser, Callable[[Any], bytes]] = {
        parse_handshake: encode_handshake,
        parse_connection_info: encode_connection_info,
        parse_request: encode_request,
        parse_response: encode_response,
        parse_session_control: encode_session_control,
        parse_broadcast: encode_broadcast,
    }
    assert parser(encoders[parser](message)) == message


# =========================================================================== blob frames (0x08)
def test_blob_frame_wire_form() -> None:
    blob = Blob(2, HASH, "image/png", b"\x89PNG\r\n\x1a\n")
    body = encode_blob(blob)
    header = (
        b'{"id":2,"result":"blob","hash":"' + HASH.encode() + b'","media_type":"image/png",'
        b'"size":8}'
    )
    assert body == len(header).to_bytes(4, "big") + header + b"\x89PNG\r\n\x1a\n"
    assert parse_blob(body) == blob
    assert parse_blob(encode_blob(Blob(0, HASH, "x", b""))) == Blob(0, HASH, "x", b"")


def test_blob_is_not_a_json_response() -> None:
    with pytest.raises(LocalProtocolError, match="encode_blob"):
        encode_response(Blob(1, HASH, "image/png", b"x"))


def _blob_body(header: bytes, data: bytes = b"", length: int | None = None) -> bytes:
    n = len(header) if length is None else length
    return n.to_bytes(4, "big") + header + data


BLOB_ERRORS = [
    ("empty", b"", "truncated BLOB frame: 0 bytes, shorter than its 4-byte header length"),
    ("short-length", b"\x00\x00\x01", "truncated BLOB frame: 3 bytes, shorter than"),
    (
        "header-over-cap",
        _blob_body(b"{}", length=BLOB_HEADER_MAX_SIZE + 1),
        f"blob header too large: {BLOB_HEADER_MAX_SIZE + 1} bytes (cap {BLOB_HEADER_MAX_SIZE})",
    ),
    (
        "truncated-header",
        _blob_body(b'{"id":1', length=50),
        "truncated blob header: length says 50 bytes, 7 follow",
    ),
    ("bad-json", _blob_body(b"{nope}"), "blob header is not valid JSON"),
    ("not-object", _blob_body(b"[1]"), "blob header must be a JSON object"),
    (
        "no-size",
        _blob_body(b'{"id":1,"result":"blob","hash":"h","media_type":"m"}'),
        'blob header has no "size"',
    ),
    (
        "wrong-result",
        _blob_body(b'{"id":1,"result":"pong"}'),
        'blob header "result" must be "blob", got "pong"',
    ),
    (
        "size-mismatch",
        _blob_body(b'{"id":1,"result":"blob","hash":"h","media_type":"m","size":5}', b"abc"),
        'blob header "size" is 5 but 3 bytes follow it',
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in BLOB_ERRORS], ids=[c[0] for c in BLOB_ERRORS]
)
def test_hostile_blob_bodies_get_one_precise_error(body: bytes, message: str) -> None:
    with pytest.raises(MessageError) as info:
        parse_blob(body)
    assert str(info.value).startswith(message)


# =========================================================================== version refusal
def test_old_client_handshake_is_refused_naming_both_versions() -> None:
    with pytest.raises(HandshakeError) as info:
        parse_handshake(b'{"channel":"open_notebook","path":"/a.ipynb"}')
    text = str(info.value)
    assert "protocol_version 3 or older" in text and "this daemon speaks 4" in text
    with pytest.raises(
        HandshakeError, match="client speaks protocol_version 5; this daemon speaks 4"
    ):
        parse_handshake(j({"channel": "open_notebook", "path": "/a", "protocol_version": 5}))
    with pytest.raises(LocalProtocolError, match="protocol_version 3; this daemon speaks 4"):
        encode_handshake(OpenNotebook("/a", protocol_version=3))


def test_statistics_round_trips_and_rejects_bad_figures() -> None:
    from core.protocol import BatchFigures, LoadFigures, Statistics, StatisticsResponse

    assert parse_request(encode_request(Statistics(4))) == Statistics(4)
    batch = BatchFigures(0, 3, 1, 0.001, 0.002, 0.0, 10.5, 10.6, 3)
    load = LoadFigures(True, None, 3, 3, 1200, 0.0001, 0.002, 0.0, 0.2, 10.4, (batch,))
    for response in (
        StatisticsResponse(4, "nbstream 1", load, 0.01, 0.02),
        StatisticsResponse(5, "other server", None, 0, 0),
    ):
        assert parse_response(encode_response(response)) == response
    good = json.loads(encode_response(StatisticsResponse(4, "s", load, 0.0, 0.0)))
    for path, value, message in (
        (("sync_gen_s",), "fast", 'statistics response "sync_gen_s" must be a number'),
        (("load", "ok"), 1, 'statistics load "ok" must be a boolean'),
        (("load", "batches"), {}, 'statistics load "batches" must be an array'),
        (("load", "batches", 0, "started_at"), None, 'statistics batch "started_at" must be'),
        (("server",), 3, 'statistics response "server" must be a string'),
    ):
        bad = json.loads(json.dumps(good))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(MessageError, match=re.escape(message)):
            parse_response(json.dumps(bad).encode())
