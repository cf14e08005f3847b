"""Frame codec throughput: encode one frame; decode a stream fed in 64 KiB reads."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.common import payload
from core.framing import FrameDecoder, FrameType, encode_frame

READ_CHUNK = 64 * 1024  # the daemon's read size
SIZES = [pytest.param(64, id="small-64B"), pytest.param(1 << 20, id="large-1MiB")]


def _throughput(benchmark: Any, nbytes: int) -> None:
    """Record MiB/s at the median round time in the saved JSON (extra_info)."""
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["median_MiB_per_s"] = nbytes / benchmark.stats.stats.median / 2**20


@pytest.mark.benchmark(group="framing-encode")
@pytest.mark.parametrize("size", SIZES)
def test_encode(benchmark: Any, size: int) -> None:
    body = payload(size)
    frame = benchmark(encode_frame, FrameType.SYNC, body)
    assert len(frame) == size + 5 and frame[5:] == body
    _throughput(benchmark, len(frame))


@pytest.mark.benchmark(group="framing-decode")
@pytest.mark.parametrize("size", SIZES)
def test_decode(benchmark: Any, size: int) -> None:
    """A fresh decoder per round, fed ~4 MiB of equal frames in 64 KiB chunks."""
    count = max(4, (4 << 20) // size)
    stream = encode_frame(FrameType.SYNC, payload(size)) * count
    chunks = [stream[i : i + READ_CHUNK] for i in range(0, len(stream), READ_CHUNK)]

    def decode() -> int:
        decoder = FrameDecoder(untyped_first=False)
        frames = 0
        for chunk in chunks:
            frames += len(decoder.feed(chunk))
        assert decoder.buffered == 0
        return frames

    assert benchmark(decode) == count
    _throughput(benchmark, len(stream))
