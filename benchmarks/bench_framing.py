"""The sans-IO frame codec: encode one frame, decode a stream of frames fed in read-sized chunks."""

from __future__ import annotations

from typing import Any

from .common import (
    FRAME_PAYLOADS,
    FRAME_STREAM_BYTES,
    READ_CHUNKS,
    SkipNotImplemented,
    optional,
    payload,
    require,
)


def _framing() -> Any:
    return require("core.framing", "FrameDecoder", "FrameType", "encode_frame")


_FRAMING = optional("core.framing", "FrameDecoder", "FrameType", "encode_frame")
_PAYLOADS = {size: payload(size) for size in FRAME_PAYLOADS}


class EncodeFrame:
    """``encode_frame(SYNC, payload)``: length prefix + type byte + one copy of the body.

    No ``setup`` on purpose: the call takes well under a microsecond for small payloads, and a
    ``setup`` would make asv time one call per sample (see ``common``). Inputs are module-level.
    """

    params = (list(FRAME_PAYLOADS),)
    param_names = ("payload_bytes",)

    def time_encode(self, payload_bytes: int) -> None:
        if _FRAMING is None:
            raise SkipNotImplemented("core.framing is not available at this commit")
        _FRAMING.encode_frame(_FRAMING.FrameType.SYNC, _PAYLOADS[payload_bytes])

    def peakmem_encode(self, payload_bytes: int) -> None:
        if _FRAMING is None:
            raise SkipNotImplemented("core.framing is not available at this commit")
        _FRAMING.encode_frame(_FRAMING.FrameType.SYNC, _PAYLOADS[payload_bytes])

    def track_overhead_bytes(self, payload_bytes: int) -> int:
        if _FRAMING is None:
            raise SkipNotImplemented("core.framing is not available at this commit")
        frame = _FRAMING.encode_frame(_FRAMING.FrameType.SYNC, _PAYLOADS[payload_bytes])
        return len(frame) - payload_bytes

    track_overhead_bytes.unit = "bytes/frame"  # type: ignore[attr-defined]


class DecodeStream:
    """A fresh ``FrameDecoder`` fed a stream of equal frames in ``read_chunk``-byte pieces.

    Each timed call decodes about ``FRAME_STREAM_BYTES`` (4 MiB) of payload: many small frames,
    or a few 1 MiB frames that span many chunks (the partial-frame buffering path).
    """

    params = (list(FRAME_PAYLOADS), list(READ_CHUNKS))
    param_names = ("payload_bytes", "read_chunk")

    def setup(self, payload_bytes: int, read_chunk: int) -> None:
        self.framing = _framing()
        body = payload(payload_bytes)
        self.frames = max(8, FRAME_STREAM_BYTES // payload_bytes)
        frame = self.framing.encode_frame(self.framing.FrameType.SYNC, body)
        stream = frame * self.frames
        self.chunks = [stream[i : i + read_chunk] for i in range(0, len(stream), read_chunk)]

    def _decode(self) -> Any:
        decoder = self.framing.FrameDecoder(untyped_first=False)
        for chunk in self.chunks:
            decoder.feed(chunk)
        return decoder

    def time_decode(self, payload_bytes: int, read_chunk: int) -> None:
        self._decode()

    def peakmem_decode(self, payload_bytes: int, read_chunk: int) -> None:
        self._decode()

    def track_frames(self, payload_bytes: int, read_chunk: int) -> int:
        frames: int = self._decode().statistics().frames
        if frames != self.frames:
            raise AssertionError(f"decoded {frames} frames, expected {self.frames}")
        return frames

    track_frames.unit = "frames"  # type: ignore[attr-defined]

    def track_wire_bytes(self, payload_bytes: int, read_chunk: int) -> int:
        wire: int = self._decode().statistics().bytes
        return wire

    track_wire_bytes.unit = "bytes"  # type: ignore[attr-defined]
