"""Hypothesis fuzzing of the frame decoder, the handshake/JSON layer and the notebook parser.

Invariants, for every input:

* only the project's own errors escape: ``FrameDecoder.feed`` raises only :class:`ProtocolError`
  subclasses and ``eof`` only :class:`TransportClosed`; ``parse_handshake`` only
  :class:`HandshakeError`; every other ``parse_*`` only :class:`MessageError`; ``parse_notebook``
  only :class:`NotebookLoadError`. Never a ``KeyError``, ``RecursionError``, ``MemoryError``…
* the decoder's memory stays bounded: ``buffered`` never exceeds the cap plus the 4-byte
  header, whatever the length fields announce (up to 2**32-1);
* the decoder is split-invariant: any chunking of the same bytes gives the same frames and the
  same error, and the frames re-encode to exactly the bytes consumed;
* a live daemon answers any first frame with a reply (an ``error`` or a session) and any later
  bytes with frames or a ``closing`` frame — never an unhandled exception.

Two profiles: a quick one in the default run (a few hundred inputs per property) and a long
one (``-m slow``: ≥ 100,000 inputs each for the decoder and for the handshake/JSON layer, with
``tracemalloc`` tracking the decoder's peak allocation).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import protocol as p
from core.blob_store import MemoryBlobStore
from core.daemon import Daemon, DaemonConfig
from core.errors import (
    HandshakeError,
    MessageError,
    NotebookLoadError,
    ProtocolError,
    TransportClosed,
)
from core.framing import Frame, FrameDecoder, FrameType, encode_frame, encode_untyped
from core.ipynb import parse_notebook

from .test_hostile_inputs import only_with_m_slow

QUICK = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
LONG_EXAMPLES = 100_000
LONG = settings(
    max_examples=LONG_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HEADER = 4
SMALL_HS, SMALL_MAX = 64, 256  # small caps so that fuzzing reaches "over the cap" often

# =========================================================================== strategies
_lengths = st.one_of(
    st.integers(0, 300),
    st.sampled_from([0, 1, SMALL_HS, SMALL_HS + 1, SMALL_MAX, SMALL_MAX + 1, 2**31, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)
_types = st.one_of(st.sampled_from([t.value for t in FrameType]), st.integers(0, 255))


@st.composite
def _frame_like(draw: st.DrawFn) -> bytes:
    """One frame-shaped piece: a (possibly lying) length, a type byte, some body."""
    length = draw(_lengths)
    body = draw(st.binary(max_size=min(length, 300)))
    return struct.pack(">I", length) + bytes([draw(_types)]) + body


@st.composite
def _valid_frames(draw: st.DrawFn) -> bytes:
    first = draw(st.binary(min_size=1, max_size=SMALL_HS))
    out = [encode_untyped(first, max_size=SMALL_HS)]
    for _ in range(draw(st.integers(0, 6))):
        ftype = draw(st.sampled_from(list(FrameType)))
        out.append(encode_frame(ftype, draw(st.binary(max_size=SMALL_MAX - 1)), max_size=SMALL_MAX))
    return b"".join(out)


streams = st.one_of(
    st.binary(max_size=600),
    st.lists(_frame_like(), max_size=5).map(b"".join),
    st.tuples(_valid_frames(), st.binary(max_size=40)).map(lambda t: t[0] + t[1]),
)
splits = st.lists(st.integers(0, 700), max_size=12)


def _chunks(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for point in [*points, len(data)]:
        out.append(data[last:point])
        last = point
    return out


# =========================================================================== decoder
def _decode(
    data: bytes, cuts: Sequence[int], *, untyped_first: bool, hs: int, cap: int
) -> tuple[list[Frame], str | None, int, int]:
    """Feed ``data`` in chunks, checking the bound on the way.

    Returns the frames handed out, the error (if any), what stayed buffered, and the decoder's
    frame counter.
    """
    dec = FrameDecoder(untyped_first=untyped_first, handshake_max_size=hs, max_frame_size=cap)
    frames: list[Frame] = []
    error: str | None = None
    buffered = -1
    try:
        for chunk in _chunks(data, cuts):
            frames.extend(dec.feed(chunk))
            assert dec.buffered <= max(hs, cap) + HEADER
            if untyped_first and not frames:
                assert dec.buffered <= hs + HEADER
        buffered = dec.buffered
        try:
            dec.eof()
        except TransportClosed as exc:
            error = f"eof: {exc}"
    except ProtocolError as exc:
        error = f"{type(exc).__name__}: {exc}"
        with pytest.raises(type(exc)):  # poisoned: the same error again
            dec.feed(b"x")
    return frames, error, buffered, dec.statistics().frames


def _encode(frames: Sequence[Frame]) -> bytes:
    out = []
    for frame in frames:
        if frame.type is None:
            out.append(struct.pack(">I", len(frame.payload)) + frame.payload)
        else:
            out.append(struct.pack(">IB", len(frame.payload) + 1, frame.type) + frame.payload)
    return b"".join(out)


def check_decoder(data: bytes, cuts: Sequence[int], untyped_first: bool) -> None:
    kw: dict[str, Any] = {"untyped_first": untyped_first, "hs": SMALL_HS, "cap": SMALL_MAX}
    bytewise = _decode(data, range(len(data)), **kw)  # hands out every frame before an error
    frames, error, buffered, counted = bytewise
    assert counted == len(frames)
    encoded = _encode(frames)
    assert data.startswith(encoded)  # frames re-encode to exactly the consumed prefix
    if error is None:
        assert buffered == 0 and encoded == data
    for other in (_decode(data, [], **kw), _decode(data, cuts, **kw)):
        o_frames, o_error, o_buffered, o_counted = other
        assert o_error == error  # the same error, wherever the chunks were cut
        assert o_counted == counted
        # By design a feed() that raises hands out none of the frames it completed (the
        # connection is closed anyway), so a chunking gets a prefix of the frames; without
        # an error, exactly the same frames.
        assert o_frames == frames[: len(o_frames)]
        if error is None:
            assert (o_frames, o_buffered) == (frames, buffered)


def check_default_caps(data: bytes, untyped_first: bool) -> None:
    """The production caps: huge announced lengths never make the decoder buffer much."""
    dec = FrameDecoder(untyped_first=untyped_first)
    try:
        dec.feed(data)
    except ProtocolError:
        return
    assert dec.buffered <= len(data)


@QUICK
@given(streams, splits, st.booleans())
def test_decoder_quick(data: bytes, cuts: list[int], untyped_first: bool) -> None:
    check_decoder(data, cuts, untyped_first)


@QUICK
@given(st.lists(_frame_like(), max_size=4).map(b"".join), st.booleans())
def test_decoder_default_caps_quick(data: bytes, untyped_first: bool) -> None:
    check_default_caps(data, untyped_first)


def test_decoder_holds_only_the_header_of_a_4GiB_announcement() -> None:
    dec = FrameDecoder(untyped_first=False)
    dec.feed(encode_frame(FrameType.SYNC, b"x" * 100))
    with pytest.raises(ProtocolError, match="frame too large: 4294967295"):
        dec.feed(b"\xff\xff\xff\xff\x00" + b"z" * 1000)
    assert dec.buffered <= HEADER


# =========================================================================== JSON layer
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["/abs/x.ipynb", "x.ipynb", "", "/a\x00b", "open_notebook", "ping"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "channel",
        "path",
        "id",
        "action",
        "hash",
        "result",
        "type",
        "phase",
        "reason",
        "cells_loaded",
        "total_cells",
        "detail",
        "event",
        "protocol",
        "protocol_version",
        "notebook_id",
        "cell_count",
        "error",
        "bytes",
        "media_type",
        "bytes_written",
    ]
)
_tag_values = st.sampled_from(
    [
        "open_notebook",
        "ping",
        "get_blob",
        "get_doc_bytes",
        "save",
        "get_load_status",
        "pong",
        "error",
        "blob",
        "doc_bytes",
        "saved",
        "load_status",
        "closing",
        "streaming",
        "ready",
        "failed",
        "v2",
        3,
        0,
        -1,
        2**53,
        "aGk=",
        "!!",
        None,
    ]
)
protocol_objects = st.dictionaries(_keys, st.one_of(_tag_values, _json), max_size=7)
json_payloads = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    protocol_objects.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"NaN", b'{"id":Infinity}', b"[" * 5000, b'{"a":1e999}', b"\xef\xbb\xbf{}"]),
)

PARSERS: list[tuple[str, Callable[[bytes], Any], type[ProtocolError]]] = [
    ("handshake", p.parse_handshake, HandshakeError),
    ("request", p.parse_request, MessageError),
    ("response", p.parse_response, MessageError),
    ("session_control", p.parse_session_control, MessageError),
    ("broadcast", p.parse_broadcast, MessageError),
    ("connection_info", p.parse_connection_info, MessageError),
]
_REENCODE: dict[str, Callable[[Any], bytes]] = {
    "handshake": p.encode_handshake,
    "request": p.encode_request,
    "response": p.encode_response,
    "session_control": p.encode_session_control,
    "connection_info": p.encode_connection_info,
}


def check_json_layer(payload: bytes) -> None:
    for name, parse, allowed in PARSERS:
        try:
            message = parse(payload)
        except allowed:
            continue
        # Anything accepted re-encodes to something that parses back to the same message.
        if name in _REENCODE:
            assert parse(_REENCODE[name](message)) == message
        if name == "handshake":
            assert message.path.startswith("/") and "\x00" not in message.path


@QUICK
@given(json_payloads)
def test_json_layer_quick(payload: bytes) -> None:
    check_json_layer(payload)


# =========================================================================== notebooks
_cell = st.dictionaries(
    st.sampled_from(
        ["id", "cell_type", "source", "metadata", "outputs", "execution_count", "attachments"]
    ),
    st.one_of(st.sampled_from(["code", "markdown", "raw", "a"]), _json),
    max_size=7,
)
notebook_payloads = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda cells, fmt, minor, meta: json.dumps(
            {"cells": cells, "nbformat": fmt, "nbformat_minor": minor, "metadata": meta}
        ).encode(),
        st.one_of(st.lists(_cell, max_size=4), _json),
        st.one_of(st.sampled_from([3, 4, 4, 4, 5]), _json),
        st.one_of(st.integers(0, 6), _json),
        st.one_of(st.dictionaries(st.text(max_size=5), _json, max_size=3), _json),
    ),
)


@QUICK
@given(notebook_payloads)
def test_parse_notebook_quick(data: bytes) -> None:
    try:
        parsed = parse_notebook(data)
    except NotebookLoadError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    ids = [c.id for c in parsed.cells]
    assert len(ids) == len(set(ids)) and all(ids)  # ids are always unique and non-empty


# =========================================================================== the live daemon
class _Unexpected(logging.Handler):
    """Collects the daemon's "unexpected error" log records (a fault escaped a handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _daemon_round(first: bytes, later: bytes) -> None:
    from sim.net.streams import memory_stream_pair

    daemon = Daemon(
        DaemonConfig(handshake_timeout=5.0, eviction_delay=0.01), blob_store=MemoryBlobStore()
    )
    await daemon.start()
    try:
        (cr, cw), (sr, sw) = await memory_stream_pair()
        server = asyncio.create_task(daemon.handle_connection(sr, sw))
        cw.write(first + later)
        cw.write_eof()
        decoder = FrameDecoder(untyped_first=True)
        frames: list[Frame] = []
        while True:
            chunk = await asyncio.wait_for(cr.read(65536), 10)
            if not chunk:
                break
            frames.extend(decoder.feed(chunk))
        await asyncio.wait_for(server, 10)
        cw.close()
        assert frames and frames[0].type is None  # always a reply
        info = p.parse_connection_info(frames[0].payload)
        for frame in frames[1:]:
            assert frame.type is not None
            if frame.type is FrameType.SESSION_CONTROL:
                message = p.parse_session_control(frame.payload)
                if isinstance(message, p.Closing):
                    assert message.reason in p.CLOSE_REASONS
        if info.error is not None:
            assert len(frames) == 1
    finally:
        await daemon.stop()


_later = st.one_of(
    st.binary(max_size=100),
    st.lists(_frame_like(), max_size=3).map(b"".join),
    st.lists(
        st.tuples(st.sampled_from(list(FrameType)), st.binary(max_size=60)).map(
            lambda t: encode_frame(t[0], t[1])
        ),
        max_size=3,
    ).map(b"".join),
)


def test_live_daemon_survives_any_bytes(tmp_path: Path) -> None:
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [
                    {"id": f"c{i}", "cell_type": "markdown", "metadata": {}, "source": "x"}
                    for i in range(4)
                ],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    hello = encode_untyped(p.encode_handshake(p.OpenNotebook(str(notebook))))
    handler = _Unexpected()
    logger = logging.getLogger("nbstream")
    count = [0]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.one_of(
            st.binary(max_size=80),
            json_payloads.map(lambda b: struct.pack(">I", len(b)) + b),
            st.just(encode_untyped(p.encode_handshake(p.OpenNotebook("/nonexistent/x.ipynb")))),
            st.just(hello),
        ),
        _later,
    )
    def run(first: bytes, later: bytes) -> None:
        count[0] += 1
        asyncio.run(_daemon_round(first, later))

    logger.addHandler(handler)
    try:
        run()
    finally:
        logger.removeHandler(handler)
    assert handler.records == [], [r.getMessage() for r in handler.records]
    assert count[0] >= 150


# =========================================================================== long profile
TRACE_EVERY = 50  # tracemalloc slows everything ~5x: trace every 50th input


@pytest.mark.slow
@only_with_m_slow
@pytest.mark.timeout(3600)
def test_decoder_long() -> None:
    """≥ 100,000 decoder inputs; tracemalloc bounds what decoding one input allocates."""
    count = [0]
    traced = [0]
    worst = [0]

    @LONG
    @given(streams, splits, st.booleans())
    def run(data: bytes, cuts: list[int], untyped_first: bool) -> None:
        count[0] += 1
        if count[0] % TRACE_EVERY:
            check_decoder(data, cuts, untyped_first)
            check_default_caps(data, untyped_first)
            return
        traced[0] += 1
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            check_decoder(data, cuts, untyped_first)
            check_default_caps(data, untyped_first)
            extra = tracemalloc.get_traced_memory()[1] - base - 4 * len(data)
        finally:
            tracemalloc.stop()
        worst[0] = max(worst[0], extra)
        # copies of the input (frames, chunks) aside, decoding holds at most one frame's cap
        assert extra <= SMALL_MAX + HEADER + 64 * 1024

    t0 = time.perf_counter()
    run()
    print(
        f"\ndecoder fuzz: {count[0]} inputs in {time.perf_counter() - t0:.0f} s; "
        f"{traced[0]} traced, worst extra allocation while decoding one input: {worst[0]} bytes"
    )
    assert count[0] >= LONG_EXAMPLES


@pytest.mark.slow
@only_with_m_slow
@pytest.mark.timeout(3600)
def test_json_layer_long() -> None:
    """≥ 100,000 handshake/JSON payloads, each through all six parsers."""
    count = [0]

    @LONG
    @given(json_payloads)
    def run(payload: bytes) -> None:
        count[0] += 1
        check_json_layer(payload)

    t0 = time.perf_counter()
    run()
    print(f"\nJSON-layer fuzz: {count[0]} inputs in {time.perf_counter() - t0:.0f} s")
    assert count[0] >= LONG_EXAMPLES
