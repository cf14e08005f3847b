"""The handshake: the untyped first frame each way, and the versions it carries.

:class:`OpenNotebook` (client → daemon) and its reply :class:`NotebookConnectionInfo` (daemon →
client), their ``parse_*``/``encode_*`` functions, and the :data:`PROTOCOL`,
:data:`PROTOCOL_VERSION` and :data:`DAEMON_VERSION` constants the reply carries. Everything here
is re-exported by :mod:`core.protocol`, the public home of these names. No I/O and no
:mod:`asyncio` import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core._protocol_json import (
    _dumps,
    _ExcType,
    _fail,
    _int,
    _loads,
    _object,
    _opt_str,
    _quoted,
    _str,
)
from core._version import __version__
from core.errors import HandshakeError, LocalProtocolError, MessageError
from core.json_values import json_type

__all__ = [
    "DAEMON_VERSION",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "NotebookConnectionInfo",
    "OpenNotebook",
    "encode_connection_info",
    "encode_handshake",
    "parse_connection_info",
    "parse_handshake",
]

PROTOCOL = "v2"
"""Wire framing family (compatible with the reference's v2 framing)."""

PROTOCOL_VERSION = 4
"""Message-set version; 3 = typed frames incl. session control (0x07); 4 = blobs as raw bytes
in BLOB (0x08) frames, and the handshake carries the client's ``protocol_version``."""

DAEMON_VERSION = __version__


# =========================================================================== handshake
@dataclass(frozen=True, slots=True)
class OpenNotebook:
    """Client → daemon, first (untyped) frame: open (and load, if needed) a notebook file."""

    path: str
    """Absolute path of the ``.ipynb`` file on the daemon's machine."""
    protocol_version: int = PROTOCOL_VERSION
    """The message-set version the client speaks; the daemon refuses any other."""

    def to_json(self) -> dict[str, Any]:
        return {
            "channel": "open_notebook",
            "path": self.path,
            "protocol_version": self.protocol_version,
        }


_CHANNELS: tuple[str, ...] = ("open_notebook",)


def _check_path(path: str, exc: _ExcType) -> None:
    if not path:
        _fail(exc, 'open_notebook "path" must not be empty')
    if "\x00" in path:
        _fail(exc, 'open_notebook "path" must not contain a NUL character')
    if not path.startswith("/"):
        _fail(exc, f'open_notebook "path" must be absolute (start with "/"), got {path!r}')


def parse_handshake(payload: bytes) -> OpenNotebook:
    """Parse the client's first frame.

    Raises:
        HandshakeError: not UTF-8, not JSON, not an object, missing/unknown ``channel``, or a
            bad ``path`` (missing, not a string, empty, containing NUL, not absolute).
    """
    obj = _object(_loads(payload, "handshake", HandshakeError), "handshake", HandshakeError)
    if "channel" not in obj:
        raise HandshakeError(f'handshake has no "channel" (known channels: {_quoted(_CHANNELS)})')
    channel = obj["channel"]
    if not isinstance(channel, str):
        raise HandshakeError(
            f'handshake "channel" must be a string, got {json_type(channel)} '
            f"(known channels: {_quoted(_CHANNELS)})"
        )
    if channel != "open_notebook":
        raise HandshakeError(
            f"unknown handshake channel {json.dumps(channel)} "
            f"(known channels: {_quoted(_CHANNELS)})"
        )
    path = _str(obj, "path", "open_notebook handshake", HandshakeError)
    _check_path(path, HandshakeError)
    _check_client_version(obj.get("protocol_version"), HandshakeError)
    return OpenNotebook(path=path)


def _check_client_version(version: Any, exc: _ExcType) -> None:
    if version is None:  # clients of versions 1-3 did not send one
        _fail(
            exc,
            f"client speaks protocol_version 3 or older (its handshake has no "
            f'"protocol_version"); this daemon speaks {PROTOCOL_VERSION} '
            "(blobs travel as raw bytes in BLOB frames): upgrade the client",
        )
    if isinstance(version, bool) or not isinstance(version, int) or version != PROTOCOL_VERSION:
        _fail(
            exc,
            f"client speaks protocol_version {json.dumps(version)}; this daemon speaks "
            f"{PROTOCOL_VERSION}",
        )


def encode_handshake(handshake: OpenNotebook) -> bytes:
    """Encode the client's first frame payload (JSON).

    Raises:
        LocalProtocolError: the path is not a non-empty absolute path without NUL.
    """
    if not isinstance(handshake.path, str):
        raise LocalProtocolError(
            f'open_notebook "path" must be a string, got {type(handshake.path).__name__}'
        )
    _check_path(handshake.path, LocalProtocolError)
    _check_client_version(handshake.protocol_version, LocalProtocolError)
    return _dumps(handshake.to_json(), "handshake")


@dataclass(frozen=True, slots=True)
class NotebookConnectionInfo:
    """Daemon → client, first (untyped) frame: the reply to :class:`OpenNotebook`."""

    notebook_id: str
    cell_count: int
    """Cells in the document when the reply was sent; not final while a load is streaming."""
    error: str | None = None
    protocol: str = PROTOCOL
    protocol_version: int = PROTOCOL_VERSION
    daemon_version: str = DAEMON_VERSION

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "protocol": self.protocol,
            "protocol_version": self.protocol_version,
            "daemon_version": self.daemon_version,
            "notebook_id": self.notebook_id,
            "cell_count": self.cell_count,
        }
        if self.error is not None:
            obj["error"] = self.error
        return obj


def _connection_info(obj: Mapping[str, Any], exc: _ExcType) -> NotebookConnectionInfo:
    what = "connection info"
    protocol = _str(obj, "protocol", what, exc)
    if protocol != PROTOCOL:
        _fail(exc, f'unsupported protocol {json.dumps(protocol)} (this client speaks "{PROTOCOL}")')
    if "protocol_version" not in obj:
        _fail(exc, f'connection info has no "protocol_version" (expected {PROTOCOL_VERSION})')
    version = obj["protocol_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != PROTOCOL_VERSION:
        _fail(
            exc,
            f"unsupported protocol_version {json.dumps(version)} "
            f"(this client speaks {PROTOCOL_VERSION})",
        )
    daemon_version = _opt_str(obj, "daemon_version", what, exc)
    return NotebookConnectionInfo(
        notebook_id=_str(obj, "notebook_id", what, exc),
        cell_count=_int(obj, "cell_count", what, exc),
        error=_opt_str(obj, "error", what, exc),
        protocol=protocol,
        protocol_version=version,
        daemon_version="" if daemon_version is None else daemon_version,
    )


def parse_connection_info(payload: bytes) -> NotebookConnectionInfo:
    """Parse the daemon's reply to the handshake (client side).

    ``error`` is returned, not raised: the caller decides what a daemon-reported error means.

    Raises:
        MessageError: bad JSON or field types, ``protocol`` other than ``"v2"``, or
            ``protocol_version`` other than 4.
    """
    obj = _object(_loads(payload, "connection info", MessageError), "connection info", MessageError)
    return _connection_info(obj, MessageError)


def encode_connection_info(info: NotebookConnectionInfo) -> bytes:
    """Encode the daemon's reply to the handshake.

    Raises:
        LocalProtocolError: a field has the wrong type or range.
    """
    obj = info.to_json()
    _connection_info(obj, LocalProtocolError)
    return _dumps(obj, "connection info")
