"""Tests for core.framing: the sans-IO frame codec."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import framing
from core.errors import (
    CoreError,
    EmptyFrame,
    FrameTooLarge,
    HandshakeError,
    LocalProtocolError,
    ProtocolError,
    SyncMessageTooLarge,
    TransportClosed,
    UnknownFrameType,
)
from core.framing import (
    DATA_MAX_SIZE,
    HANDSHAKE_MAX_SIZE,
    DecoderStatistics,
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
    encode_untyped,
    frame_header_size,
)

HANDSHAKE = b'{"channel":"open_notebook","path":"/abs/x.ipynb"}'


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def typed(t: int, body: bytes) -> bytes:
    return u32(len(body) + 1) + bytes((t,)) + body


# --------------------------------------------------------------------------- tr() helper
def tr(untyped_first: bool, data: bytes, expected: Sequence[Frame]) -> None:
    """Feed ``data`` whole, one byte at a time, and followed by trailing bytes (h11 style)."""
    # Whole.
    dec = FrameDecoder(untyped_first=untyped_first)
    assert dec.feed(data) == list(expected)
    assert dec.buffered == 0
    dec.eof()
    assert dec.statistics() == DecoderStatistics(frames=len(expected), bytes=len(data))

    # One byte at a time.
    dec = FrameDecoder(untyped_first=untyped_first)
    got: list[Frame] = []
    for i in range(len(data)):
        got += dec.feed(data[i : i + 1])
    assert got == list(expected)
    assert dec.buffered == 0
    dec.eof()

    # With trailing bytes: the start of a further typed frame stays buffered.
    trailing = u32(10) + bytes((FrameType.REQUEST,)) + b"{}"
    if not untyped_first or expected:
        dec = FrameDecoder(untyped_first=untyped_first)
        assert dec.feed(data + trailing) == list(expected)
        assert dec.buffered == len(trailing)
        with pytest.raises(TransportClosed, match="got 3 of 10 bytes"):
            dec.eof()


SAMPLES: list[tuple[bool, bytes, list[Frame]]] = [
    (True, u32(len(HANDSHAKE)) + HANDSHAKE, [Frame(None, HANDSHAKE)]),
    (
        True,
        u32(len(HANDSHAKE)) + HANDSHAKE + typed(0x00, b"\x42\x00") + typed(0x01, b'{"id":1}'),
        [
            Frame(None, HANDSHAKE),
            Frame(FrameType.SYNC, b"\x42\x00"),
            Frame(FrameType.REQUEST, b'{"id":1}'),
        ],
    ),
    (False, typed(0x07, b""), [Frame(FrameType.SESSION_CONTROL, b"")]),
    (
        False,
        b"".join(typed(t, bytes([t]) * t) for t in (0, 1, 2, 3, 7)),
        [Frame(FrameType(t), bytes([t]) * t) for t in (0, 1, 2, 3, 7)],
    ),
    (False, b"", []),
    (True, b"", []),
    (False, typed(0x02, b"x" * 70_000), [Frame(FrameType.RESPONSE, b"x" * 70_000)]),
]


@pytest.mark.parametrize(("untyped_first", "data", "expected"), SAMPLES)
def test_samples(untyped_first: bool, data: bytes, expected: list[Frame]) -> None:
    tr(untyped_first, data, expected)


# --------------------------------------------------------------------------- hypothesis
frame_lists = st.lists(
    st.tuples(st.sampled_from(list(FrameType)), st.binary(max_size=300)), max_size=20
)


@settings(max_examples=300, deadline=None)
@given(
    handshake=st.binary(min_size=1, max_size=200),
    frames=frame_lists,
    data=st.data(),
)
def test_random_splits_decode_identically(
    handshake: bytes, frames: list[tuple[FrameType, bytes]], data: st.DataObject
) -> None:
    stream = encode_untyped(handshake) + b"".join(encode_frame(t, p) for t, p in frames)
    expected = [Frame(None, handshake)] + [Frame(t, p) for t, p in frames]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    dec = FrameDecoder(untyped_first=True)
    got: list[Frame] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += dec.feed(stream[prev:cut])
        prev = cut
    assert got == expected
    assert dec.buffered == 0
    dec.eof()
    assert dec.statistics() == DecoderStatistics(frames=len(expected), bytes=len(stream))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.data())
def test_garbage_raises_only_core_errors(garbage: bytes, data: st.DataObject) -> None:
    untyped_first = data.draw(st.booleans())
    dec = FrameDecoder(untyped_first=untyped_first, handshake_max_size=32, max_frame_size=32)
    cut = data.draw(st.integers(0, len(garbage)))
    try:
        dec.feed(garbage[:cut])
        dec.feed(garbage[cut:])
        dec.eof()
    except CoreError:
        pass


# --------------------------------------------------------------------------- caps
def test_data_cap_checked_before_buffering() -> None:
    dec = FrameDecoder(untyped_first=False)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(u32(DATA_MAX_SIZE + 1))
    assert str(info.value) == f"frame too large: {DATA_MAX_SIZE + 1} bytes (cap {DATA_MAX_SIZE})"
    assert dec.buffered <= frame_header_size


def test_data_cap_checked_when_header_arrives_bytewise() -> None:
    dec = FrameDecoder(untyped_first=False)
    header = u32(DATA_MAX_SIZE + 1)
    for b in header[:3]:
        assert dec.feed(bytes([b])) == []
    with pytest.raises(FrameTooLarge):
        dec.feed(header[3:])
    assert dec.buffered <= frame_header_size


def test_data_cap_exact_size_accepted() -> None:
    dec = FrameDecoder(untyped_first=False)
    assert dec.feed(u32(DATA_MAX_SIZE) + b"\x00" + b"abc") == []
    assert dec.buffered == frame_header_size + 4
    small = FrameDecoder(untyped_first=False, max_frame_size=10)
    assert small.feed(typed(0x01, b"x" * 9)) == [Frame(FrameType.REQUEST, b"x" * 9)]
    with pytest.raises(FrameTooLarge, match=r"frame too large: 11 bytes \(cap 10\)"):
        small.feed(typed(0x01, b"x" * 10))


def test_handshake_cap_applies_to_first_frame_only() -> None:
    dec = FrameDecoder(untyped_first=True)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(u32(HANDSHAKE_MAX_SIZE + 1))
    assert str(info.value) == (
        f"handshake frame too large: {HANDSHAKE_MAX_SIZE + 1} bytes (cap {HANDSHAKE_MAX_SIZE})"
    )
    assert isinstance(info.value, ProtocolError)
    assert info.value.close_reason == "frame_too_large"

    dec = FrameDecoder(untyped_first=True)
    body = b"h" * HANDSHAKE_MAX_SIZE
    big = b"d" * (HANDSHAKE_MAX_SIZE * 2)
    frames = dec.feed(u32(len(body)) + body + typed(0x00, big))
    assert frames == [Frame(None, body), Frame(FrameType.SYNC, big)]

    # The handshake cap does not apply when every frame is typed.
    dec = FrameDecoder(untyped_first=False)
    assert dec.feed(typed(0x00, big)) == [Frame(FrameType.SYNC, big)]


def test_too_large_mentions_ascii_length_bytes() -> None:
    dec = FrameDecoder(untyped_first=False)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b"llon" + b"g text")
    assert str(info.value) == (
        "frame too large: 1819045742 bytes (cap 104857600); the length bytes are ASCII "
        '"llon" — is the peer speaking another protocol?'
    )
    dec = FrameDecoder(untyped_first=True)
    with pytest.raises(FrameTooLarge, match='ASCII "GET "'):
        dec.feed(b"GET / HTTP/1.1\r\n")
    dec = FrameDecoder(untyped_first=True)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b'{"ch')
    assert 'ASCII "{\\"ch"' in str(info.value)


def test_too_large_non_ascii_length_has_no_ascii_hint() -> None:
    dec = FrameDecoder(untyped_first=False)
    with pytest.raises(FrameTooLarge) as info:
        dec.feed(b"\xff\xff\xff\xff")
    assert "ASCII" not in str(info.value)


# --------------------------------------------------------------------------- bad frames
def test_empty_typed_frame() -> None:
    dec = FrameDecoder(untyped_first=False)
    with pytest.raises(EmptyFrame, match="empty typed frame") as info:
        dec.feed(u32(0))
    assert info.value.close_reason == "empty_frame"


def test_empty_typed_frame_after_handshake() -> None:
    dec = FrameDecoder(untyped_first=True)
    with pytest.raises(EmptyFrame):
        dec.feed(u32(2) + b"{}" + u32(0))


def test_empty_handshake_frame() -> None:
    dec = FrameDecoder(untyped_first=True)
    with pytest.raises(HandshakeError, match="empty handshake frame") as info:
        dec.feed(u32(0))
    assert info.value.close_reason == "bad_handshake"


@pytest.mark.parametrize("type_byte", [0x04, 0x05, 0x06, 0x09, 0x42, 0xFF])
def test_unknown_frame_type(type_byte: int) -> None:
    dec = FrameDecoder(untyped_first=False)
    with pytest.raises(UnknownFrameType) as info:
        dec.feed(typed(type_byte, b"body"))
    assert str(info.value).startswith(f"unknown frame type 0x{type_byte:02x} (known: 0x00 SYNC")
    assert info.value.close_reason == "unknown_frame_type"


def test_unknown_type_detected_before_body_arrives() -> None:
    dec = FrameDecoder(untyped_first=False)
    assert dec.feed(u32(1_000_000)) == []
    with pytest.raises(UnknownFrameType, match="0x09"):
        dec.feed(b"\x09")


def test_poisoned_after_error() -> None:
    dec = FrameDecoder(untyped_first=False)
    with pytest.raises(UnknownFrameType) as first:
        dec.feed(typed(0x09, b""))
    for data in (typed(0x00, b"ok"), b"", b"x"):
        with pytest.raises(UnknownFrameType) as again:
            dec.feed(data)
        assert again.value is first.value
    with pytest.raises(UnknownFrameType):
        dec.eof()


def test_good_frames_before_error_are_lost_but_error_raised() -> None:
    # A feed() that contains good frames then a bad header raises: the caller closes the
    # connection anyway, and the good frames are not handed out half-processed.
    dec = FrameDecoder(untyped_first=False)
    with pytest.raises(UnknownFrameType):
        dec.feed(typed(0x00, b"ok") + typed(0x09, b""))
    assert dec.statistics().frames == 1


# --------------------------------------------------------------------------- eof
def test_eof_clean() -> None:
    dec = FrameDecoder(untyped_first=False)
    dec.feed(typed(0x00, b"x"))
    dec.eof()
    dec.eof()  # idempotent
    assert dec.feed(b"") == []
    with pytest.raises(LocalProtocolError, match=r"feed\(\) called after eof\(\)"):
        dec.feed(b"x")


def test_eof_inside_length() -> None:
    dec = FrameDecoder(untyped_first=False)
    dec.feed(b"\x00\x00")
    with pytest.raises(TransportClosed) as info:
        dec.eof()
    assert str(info.value) == (
        "connection closed mid-frame: got 2 of 4 bytes inside the 4-byte length"
    )
    with pytest.raises(TransportClosed):
        dec.feed(b"\x00")


def test_eof_inside_body() -> None:
    dec = FrameDecoder(untyped_first=True)
    dec.feed(u32(10) + b"abc")
    with pytest.raises(TransportClosed) as info:
        dec.eof()
    assert str(info.value) == "connection closed mid-frame: got 3 of 10 bytes"


def test_eof_after_header_only() -> None:
    dec = FrameDecoder(untyped_first=False)
    dec.feed(u32(5))
    assert dec.buffered == 4
    with pytest.raises(TransportClosed, match="got 0 of 5 bytes"):
        dec.eof()


# --------------------------------------------------------------------------- encoding
@pytest.mark.parametrize("frame_type", list(FrameType))
@pytest.mark.parametrize("payload", [b"", b"\x00", b'{"id":1}', bytes(range(256)) * 40])
def test_round_trip_every_type(frame_type: FrameType, payload: bytes) -> None:
    wire = encode_frame(frame_type, payload)
    assert wire[:4] == u32(len(payload) + 1)
    assert wire[4] == frame_type.value
    assert wire[5:] == payload
    dec = FrameDecoder(untyped_first=False)
    assert dec.feed(wire) == [Frame(frame_type, payload)]


def test_encode_untyped_round_trip() -> None:
    wire = encode_untyped(HANDSHAKE)
    assert wire == u32(len(HANDSHAKE)) + HANDSHAKE
    assert FrameDecoder(untyped_first=True).feed(wire) == [Frame(None, HANDSHAKE)]


def test_encode_frame_cap() -> None:
    assert len(encode_frame(FrameType.SYNC, b"x" * 9, max_size=10)) == 14
    with pytest.raises(LocalProtocolError) as info:
        encode_frame(FrameType.SYNC, b"x" * 10, max_size=10)
    assert str(info.value) == "frame too large to send: 11 bytes with the type byte (cap 10)"


def test_encode_frame_default_cap() -> None:
    payload = bytes(DATA_MAX_SIZE)  # one byte too many once the type byte is added
    with pytest.raises(LocalProtocolError, match="cap 104857600"):
        encode_frame(FrameType.SYNC, payload)


def test_encode_untyped_cap_and_empty() -> None:
    assert len(encode_untyped(b"x" * HANDSHAKE_MAX_SIZE)) == HANDSHAKE_MAX_SIZE + 4
    with pytest.raises(LocalProtocolError) as info:
        encode_untyped(b"x" * (HANDSHAKE_MAX_SIZE + 1))
    assert str(info.value) == "handshake frame too large to send: 65537 bytes (cap 65536)"
    with pytest.raises(LocalProtocolError, match="must not be empty"):
        encode_untyped(b"")


def test_encode_frame_rejects_unknown_type() -> None:
    with pytest.raises(LocalProtocolError, match="unknown frame type 0x05"):
        encode_frame(5, b"")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="must be a FrameType"):
        encode_frame("SYNC", b"")  # type: ignore[arg-type]
    # A plain int equal to a defined type is accepted and normalised.
    assert encode_frame(1, b"") == u32(1) + b"\x01"  # type: ignore[arg-type]


def test_frame_header_size() -> None:
    assert frame_header_size == 4


# --------------------------------------------------------------------------- linear work
class _CountingHeader:
    def __init__(self) -> None:
        self.calls = 0
        self._s = struct.Struct(">I")

    def unpack(self, data: Any) -> tuple[Any, ...]:
        self.calls += 1
        return self._s.unpack(data)

    def pack(self, n: int) -> bytes:
        return self._s.pack(n)


def test_work_is_linear_byte_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 10_000
    frames = [(list(FrameType)[i % 5], bytes([i % 251]) * (i % 17)) for i in range(n)]
    stream = b"".join(encode_frame(t, p) for t, p in frames)
    largest = max(len(p) for _, p in frames) + 1 + frame_header_size
    counter = _CountingHeader()
    monkeypatch.setattr(framing, "_HEADER", counter)
    dec = FrameDecoder(untyped_first=False)
    got: list[Frame] = []
    max_buffered = 0
    for i in range(len(stream)):
        got += dec.feed(stream[i : i + 1])
        max_buffered = max(max_buffered, dec.buffered)
    assert got == [Frame(t, p) for t, p in frames]
    # Every header is parsed exactly once (no rescans), and the buffer never holds more
    # than the one frame being assembled.
    assert counter.calls == n
    assert max_buffered < largest
    assert dec.statistics() == DecoderStatistics(frames=n, bytes=len(stream))


def test_work_is_linear_whole_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 10_000
    stream = b"".join(encode_frame(FrameType.SYNC, b"ab") for _ in range(n))
    counter = _CountingHeader()
    monkeypatch.setattr(framing, "_HEADER", counter)
    dec = FrameDecoder(untyped_first=False)
    assert len(dec.feed(stream)) == n
    assert counter.calls == n
    assert dec.buffered == 0


# --------------------------------------------------------------------------- no asyncio
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["core.framing", "core.protocol"])
def test_module_does_not_import_asyncio(module: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import {module}
        assert "asyncio" not in sys.modules, sorted(m for m in sys.modules if "asyncio" in m)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
    source = (ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
    assert "import asyncio" not in source
    assert "from asyncio" not in source


def test_the_sync_cap_is_checked_on_the_type_byte_before_any_body_byte() -> None:
    dec = FrameDecoder(untyped_first=False, max_sync_size=1000)
    (frame,) = dec.feed(encode_frame(FrameType.SYNC, b"s" * 1000))  # at the cap: accepted
    assert frame.payload == b"s" * 1000
    (frame,) = dec.feed(encode_frame(FrameType.RESPONSE, b"r" * 5000))  # other types: frame cap
    assert len(frame.payload) == 5000
    with pytest.raises(SyncMessageTooLarge) as info:
        dec.feed(u32(1002) + bytes([FrameType.SYNC]))  # 1001 body bytes announced, none sent
    assert info.value.close_reason == "sync_too_large"
    assert isinstance(info.value, FrameTooLarge)
    assert "1001 bytes (cap 1000 per message)" in str(info.value)
    assert dec.buffered <= 5  # nothing of the body was buffered
