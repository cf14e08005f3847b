"""Sans-IO frame codec: bytes in, whole frames out (h2 ``FrameBuffer`` style).

Wire layout of every frame::

    +----------------------------+-------------------------------+
    | length: u32, big-endian    | payload (``length`` bytes)    |
    +----------------------------+-------------------------------+

The first frame in each direction is the *untyped* JSON handshake (client → daemon) or its
reply (daemon → client). Every later frame is *typed*: payload byte 0 is a :class:`FrameType`
and the remaining ``length - 1`` bytes are the body (:attr:`Frame.payload` excludes the type
byte). Size caps are checked from the 4-byte header, before a single body byte is buffered.

This module does no I/O and never imports :mod:`asyncio`; a timeout or cancellation in the
caller can never cut a frame in half, because the decoder only ever returns whole frames.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from core.errors import (
    EmptyFrame,
    FrameTooLarge,
    HandshakeError,
    LocalProtocolError,
    ProtocolError,
    SyncMessageTooLarge,
    TransportClosed,
    UnknownFrameType,
)

__all__ = [
    "DATA_MAX_SIZE",
    "HANDSHAKE_MAX_SIZE",
    "DecoderStatistics",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "encode_frame",
    "encode_untyped",
    "frame_header_size",
]


class FrameType(enum.IntEnum):
    """The type byte of a typed frame."""

    SYNC = 0x00  # binary Automerge sync message
    REQUEST = 0x01  # JSON request (client → daemon)
    RESPONSE = 0x02  # JSON response (daemon → client)
    BROADCAST = 0x03  # JSON broadcast event (daemon → clients)
    SESSION_CONTROL = 0x07  # JSON session control (load status, closing)
    BLOB = 0x08  # a get_blob answer: u32 header length, JSON header, raw blob bytes


HANDSHAKE_MAX_SIZE = 64 * 1024
"""Cap on the untyped first frame's payload (the handshake and its reply)."""

DATA_MAX_SIZE = 100 * 1024 * 1024
"""Cap on a typed frame's payload, type byte included."""

frame_header_size = 4
"""Size of the big-endian u32 length prefix."""

_U32_MAX = 0xFFFF_FFFF
# Looked up through the module global on every header so tests can count header parses.
_HEADER = struct.Struct(">I")
_TYPED_HEADER = struct.Struct(">IB")
_KNOWN_TYPES: dict[int, FrameType] = {t.value: t for t in FrameType}
_KNOWN_TYPES_TEXT = ", ".join(f"0x{t.value:02x} {t.name}" for t in FrameType)


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole decoded frame."""

    type: FrameType | None
    """``None`` only for the untyped first (handshake) frame."""
    payload: bytes
    """The body, without the length prefix and without the type byte."""


@dataclass(frozen=True, slots=True)
class DecoderStatistics:
    """Deterministic counters of a :class:`FrameDecoder`."""

    frames: int
    """Whole frames decoded (a ``feed()`` that raises hands out none of its frames)."""
    bytes: int
    """Wire bytes of those frames (length prefixes, type bytes and bodies)."""


# --------------------------------------------------------------------------- encoding
def encode_frame(frame_type: FrameType, payload: bytes, *, max_size: int = DATA_MAX_SIZE) -> bytes:
    """Encode one typed frame: length prefix, type byte, body.

    Returns:
        The frame's wire bytes.

    Raises:
        LocalProtocolError: ``frame_type`` is not a :class:`FrameType`, or the type byte plus
            the body would exceed ``max_size`` (or the u32 length field).
    """
    if isinstance(frame_type, bool) or not isinstance(frame_type, int):
        raise LocalProtocolError(f"frame type must be a FrameType, got {type(frame_type).__name__}")
    known = _KNOWN_TYPES.get(int(frame_type))
    if known is None:
        raise LocalProtocolError(f"unknown frame type {int(frame_type):#04x}")
    length = len(payload) + 1
    if length > max_size or length > _U32_MAX:
        raise LocalProtocolError(
            f"frame too large to send: {length} bytes with the type byte (cap {max_size})"
        )
    return b"".join((_TYPED_HEADER.pack(length, known.value), payload))


def encode_untyped(payload: bytes, *, max_size: int = HANDSHAKE_MAX_SIZE) -> bytes:
    """Encode the untyped first frame (the handshake, or the daemon's reply to it).

    Raises:
        LocalProtocolError: the payload is empty or longer than ``max_size``.
    """
    length = len(payload)
    if length == 0:
        raise LocalProtocolError("the untyped handshake frame must not be empty")
    if length > max_size or length > _U32_MAX:
        raise LocalProtocolError(
            f"handshake frame too large to send: {length} bytes (cap {max_size})"
        )
    return b"".join((_HEADER.pack(length), payload))


# --------------------------------------------------------------------------- decoding
def _too_large(what: str, length: int, cap: int, header: bytes) -> FrameTooLarge:
    message = f"{what} too large: {length} bytes (cap {cap})"
    if all(0x20 <= b < 0x7F for b in header):
        text = header.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
        message += f'; the length bytes are ASCII "{text}" — is the peer speaking another protocol?'
    return FrameTooLarge(message)


class FrameDecoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, get whole frames back.

    Work is O(total bytes): each header is parsed exactly once, no byte is ever rescanned, and
    the internal buffer only ever holds the one partial frame at the end of the input (whole
    frames inside a fed chunk are sliced straight out of it, one copy each). Once an error has
    been raised the decoder is poisoned: every later :meth:`feed` or :meth:`eof` raises that
    same error again.
    """

    __slots__ = (
        "_buf",
        "_bytes",
        "_closed",
        "_error",
        "_frames",
        "_handshake_max",
        "_max",
        "_need",
        "_sync_max",
        "_type",
        "_typed",
    )

    def __init__(
        self,
        *,
        untyped_first: bool,
        handshake_max_size: int = HANDSHAKE_MAX_SIZE,
        max_frame_size: int = DATA_MAX_SIZE,
        max_sync_size: int | None = None,
    ) -> None:
        # While ``_need < 0`` the buffer holds a partial length prefix; otherwise it holds
        # the first bytes of a body of ``_need`` bytes whose prefix was already consumed.
        self._buf = bytearray()
        self._need = -1
        self._type: FrameType | None = None  # type byte of the current frame, once seen
        self._typed = not untyped_first
        self._handshake_max = handshake_max_size
        self._max = max_frame_size
        self._sync_max = max_sync_size  # a lower cap for SYNC bodies, checked on the type byte
        self._error: ProtocolError | TransportClosed | None = None
        self._closed = False
        self._frames = 0
        self._bytes = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned in a frame (a consumed length prefix counts)."""
        return len(self._buf) + (frame_header_size if self._need >= 0 else 0)

    def statistics(self) -> DecoderStatistics:
        """Counters for benchmarks and tests."""
        return DecoderStatistics(frames=self._frames, bytes=self._bytes)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every frame they complete, in order.

        Returns:
            Zero or more whole frames (an empty list when ``data`` completes none).

        Raises:
            FrameTooLarge: a length prefix announced more than the cap; raised as soon as the
                4 length bytes are in, before any byte of that body is buffered.
            EmptyFrame: a typed frame of length 0.
            UnknownFrameType: a typed frame whose type byte is not a :class:`FrameType`
                (raised as soon as that byte arrives).
            HandshakeError: an untyped first frame of length 0.
            LocalProtocolError: non-empty data fed after :meth:`eof`.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        if not data:
            return []
        if self._closed:
            raise LocalProtocolError("feed() called after eof()")
        try:
            with memoryview(data) as view:
                return self._feed(view)
        except (ProtocolError, TransportClosed) as exc:
            self._error = exc
            raise

    def _feed(self, view: memoryview) -> list[Frame]:
        buf = self._buf
        pos = 0
        end = len(view)
        frames: list[Frame] = []
        while True:
            need = self._need
            if need < 0:  # ---- length prefix
                if buf:
                    take = min(frame_header_size - len(buf), end - pos)
                    buf += view[pos : pos + take]
                    pos += take
                    if len(buf) < frame_header_size:
                        break
                    header = bytes(buf)
                    buf.clear()
                elif end - pos >= frame_header_size:
                    header = bytes(view[pos : pos + frame_header_size])
                    pos += frame_header_size
                else:
                    buf += view[pos:end]
                    break
                (need,) = _HEADER.unpack(header)
                self._check_header(need, header)
                self._need = need
            if self._typed and self._type is None:  # ---- type byte, checked on arrival
                if buf:
                    type_byte = buf[0]
                elif pos < end:
                    type_byte = view[pos]
                else:
                    break
                self._type = _KNOWN_TYPES.get(type_byte)
                if self._type is None:
                    raise UnknownFrameType(
                        f"unknown frame type 0x{type_byte:02x} (known: {_KNOWN_TYPES_TEXT})"
                    )
                if (
                    self._type is FrameType.SYNC
                    and self._sync_max is not None
                    and need - 1 > self._sync_max
                ):
                    raise SyncMessageTooLarge(
                        f"sync message too large: {need - 1} bytes (cap {self._sync_max} per "
                        "message): split a large edit into changes synced one after another"
                    )
            skip = 0 if self._type is None else 1  # ---- body
            if buf or end - pos < need:
                take = min(need - len(buf), end - pos)
                buf += view[pos : pos + take]
                pos += take
                if len(buf) < need:
                    break
                with memoryview(buf) as whole:
                    payload = bytes(whole[skip:])
                buf.clear()
            else:
                payload = bytes(view[pos + skip : pos + need])
                pos += need
            frames.append(Frame(self._type, payload))
            self._typed = True
            self._type = None
            self._need = -1
            self._frames += 1
            self._bytes += frame_header_size + need
            if pos >= end:
                break
        return frames

    def _check_header(self, length: int, header: bytes) -> None:
        if self._typed:
            if length == 0:
                raise EmptyFrame("empty typed frame: length 0 leaves no room for the type byte")
            if length > self._max:
                raise _too_large("frame", length, self._max, header)
        else:
            if length == 0:
                raise HandshakeError("empty handshake frame: expected a JSON object")
            if length > self._handshake_max:
                raise _too_large("handshake frame", length, self._handshake_max, header)

    def eof(self) -> None:
        """Tell the decoder the byte stream ended.

        A no-op at a frame boundary with nothing buffered; afterwards only empty ``feed()``
        calls are allowed.

        Raises:
            TransportClosed: the stream ended inside a frame (its length prefix or its body);
                the decoder stays poisoned with that error.
        """
        if self._error is not None:
            raise self._error.with_traceback(None)
        self._closed = True
        if self._need >= 0:
            self._error = TransportClosed(
                f"connection closed mid-frame: got {len(self._buf)} of {self._need} bytes"
            )
            raise self._error
        if self._buf:
            self._error = TransportClosed(
                f"connection closed mid-frame: got {len(self._buf)} of {frame_header_size} "
                "bytes inside the 4-byte length"
            )
            raise self._error
