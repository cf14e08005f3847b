"""The notebook generator's images: a deterministic PNG encoder and seeded plot drawing.

:func:`encode_png` writes 8-bit RGB PNGs with STORED deflate blocks (byte-identical on every zlib
build); ``_render`` draws one seeded, plot-like picture (line, scatter, histogram or error bars)
with basic IEEE arithmetic only; ``_image`` caches the base64 PNG of each pool slot. Also holds
the image constants and :data:`GENERATOR_VERSION` (stamped into every PNG and into the drawing
seeds); :mod:`sim.workload.generator` re-exports all of them.
"""

from __future__ import annotations

import base64
import functools
import itertools
import random
import struct
import zlib

__all__ = [
    "GENERATOR_VERSION",
    "IMAGE_HEIGHT",
    "IMAGE_POOL_SIZE",
    "IMAGE_WIDTH",
    "PNG_SIGNATURE",
    "encode_png",
]

# Bump whenever the generated notebook bytes change (sim.workload.generator re-exports it).
GENERATOR_VERSION = "1"
IMAGE_POOL_SIZE = 64  # distinct images per seed; notebooks with more images cycle through them
IMAGE_WIDTH = 200
IMAGE_HEIGHT = 153
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_KINDS = ("line", "scatter", "hist", "errorbar")
_PALETTE: tuple[tuple[int, int, int], ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44))
_PALETTE += ((214, 39, 40), (148, 103, 189))
_PALETTE += ((140, 86, 75), (227, 119, 194), (23, 190, 207))


# --------------------------------------------------------------------------- PNG encoding
def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _zlib_stored(raw: bytes) -> bytes:
    """A zlib stream of STORED deflate blocks (byte-identical on every zlib build)."""
    out = bytearray(b"\x78\x01")
    if not raw:
        out += b"\x01\x00\x00\xff\xff"
    for start in range(0, len(raw), 0xFFFF):
        block = raw[start : start + 0xFFFF]
        final = 1 if start + 0xFFFF >= len(raw) else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    out += struct.pack(">I", zlib.adler32(raw) & 0xFFFFFFFF)
    return bytes(out)


def encode_png(width: int, height: int, scanlines: bytes) -> bytes:
    """8-bit RGB PNG from filter-0 scanlines (``height * (1 + 3 * width)`` bytes)."""
    if width <= 0 or height <= 0 or len(scanlines) != height * (1 + 3 * width):
        raise ValueError("scanline buffer size does not match the image dimensions")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    phys = struct.pack(">IIB", 3937, 3937, 1)  # 100 dpi, like matplotlib's default
    software = b"Software\x00nbstream notebook_gen v" + GENERATOR_VERSION.encode()
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", ihdr),
            _chunk(b"pHYs", phys),
            _chunk(b"tEXt", software),
            _chunk(b"IDAT", _zlib_stored(scanlines)),
            _chunk(b"IEND", b""),
        )
    )


# --------------------------------------------------------------------------- drawing
_TWO_PI = 6.283185307179586


def _sin(x: float) -> float:
    """sin via range reduction + Taylor series: basic IEEE ops only, so bit-identical everywhere."""
    x -= round(x / _TWO_PI) * _TWO_PI
    x2 = x * x
    term = total = x
    for n in range(1, 11):
        term *= -x2 / ((2 * n) * (2 * n + 1))
        total += term
    return total


def _normalish(rng: random.Random) -> float:
    """Irwin-Hall approximation of a standard normal (basic arithmetic only)."""
    return sum(rng.random() for _ in range(6)) * 1.4142135623730951 - 4.242640687119285


@functools.cache
def _shift_table(delta: int) -> bytes:
    return bytes(min(255, max(0, v + delta)) for v in range(256))


def _gradient_row(width: int, left: tuple[int, ...], right: tuple[int, ...]) -> bytes:
    span = max(1, width - 1)
    return b"".join(
        bytes(a + (b - a) * x // span for a, b in zip(left, right, strict=True))
        for x in range(width)
    )


class _Canvas:
    __slots__ = ("buf", "height", "stride", "width")

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height, self.stride = width, height, 1 + 3 * width
        self.buf = bytearray(height * self.stride)  # filter byte 0 (None) on every row

    def gradient(self, x0: int, y0: int, y1: int, row: bytes, shade: int) -> None:
        """Paint ``row`` at x0 on rows [y0, y1), darkening progressively by up to ``shade``."""
        span = max(1, y1 - y0 - 1)
        for y in range(y0, y1):
            start = y * self.stride + 1 + 3 * x0
            table = _shift_table(-shade * (y - y0) // span)
            self.buf[start : start + len(row)] = row.translate(table)

    def px(self, x: int, y: int, color: bytes) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            start = y * self.stride + 1 + 3 * x
            self.buf[start : start + 3] = color

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: bytes) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.width, max(x0, x1))
        for y in range(max(0, min(y0, y1)), min(self.height, max(y0, y1))):
            start = y * self.stride + 1 + 3 * x0
            self.buf[start : start + 3 * (x1 - x0)] = color * (x1 - x0)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: bytes, width: int = 1) -> None:
        dx, dy = x1 - x0, y1 - y0
        n = max(abs(dx), abs(dy), 1)
        steep = abs(dy) > abs(dx)
        for i in range(n + 1):
            x = x0 + (2 * dx * i + n) // (2 * n)
            y = y0 + (2 * dy * i + n) // (2 * n)
            for w in range(width):
                self.px(x + w if steep else x, y if steep else y + w, color)

    def disc(self, cx: int, cy: int, color: bytes) -> None:
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                if dx * dx + dy * dy <= 5:
                    self.px(cx + dx, cy + dy, color)


def _render(seed: int, slot: int) -> tuple[str, bytes]:
    """Draw one seeded plot-like picture; returns (kind, filter-0 scanlines)."""
    rng = random.Random(f"nbstream/v{GENERATOR_VERSION}/image/{seed}/{slot}")
    kind = _IMAGE_KINDS[(slot + rng.randrange(len(_IMAGE_KINDS))) % len(_IMAGE_KINDS)]
    w, h = IMAGE_WIDTH, IMAGE_HEIGHT
    left, top, right, bottom = 30, 10, w - 10, h - 24
    cv = _Canvas(w, h)

    def tint() -> tuple[int, ...]:
        return tuple(rng.randrange(226, 256) for _ in range(3))

    cv.gradient(0, 0, h, _gradient_row(w, tint(), tint()), rng.randrange(6, 30))
    axes_row = _gradient_row(right - left, (250, 250, 252), tint())
    cv.gradient(left, top, bottom, axes_row, rng.randrange(4, 20))
    grid, ink, label = bytes((222, 222, 226)), bytes((38, 38, 38)), bytes((90, 90, 90))
    for i in range(6):  # grid lines, ticks and tick-label "text" blobs
        gx = left + (right - left) * i // 5
        if 0 < i < 5:
            cv.line(gx, top, gx, bottom - 1, grid)
        cv.line(gx, bottom, gx, bottom + 3, ink)
        lw = rng.randrange(4, 11)
        cv.rect(gx - lw // 2, bottom + 6, gx + (lw + 1) // 2, bottom + 11, label)
    for i in range(5):
        gy = top + (bottom - top) * i // 4
        if 0 < i < 4:
            cv.line(left, gy, right - 1, gy, grid)
        cv.line(left - 4, gy, left - 1, gy, ink)
        cv.rect(left - 6 - rng.randrange(6, 14), gy - 2, left - 6, gy + 3, label)
    pw, ph = right - left - 8, bottom - top - 8

    def at(fx: float, fy: float) -> tuple[int, int]:
        return left + 4 + int(fx * pw), bottom - 4 - int(min(1.0, max(0.0, fy)) * ph)

    first = rng.randrange(len(_PALETTE))
    color = bytes(_PALETTE[first])
    if kind == "line":
        curves = []
        for _ in range(rng.randrange(1, 4)):
            f, p = rng.random() * 3 + 1, rng.random() * _TWO_PI
            d, s = rng.random() * 8, rng.random() - 0.5
            curves.append(
                [
                    _sin(f * _TWO_PI * t + p) / (1 + d * t * t) + s * t
                    for t in (x / pw for x in range(pw))
                ]
            )
        lo, hi = min(min(c) for c in curves), max(max(c) for c in curves)
        for idx, ys in enumerate(curves):
            c = bytes(_PALETTE[(first + idx) % len(_PALETTE)])
            pts = [at(x / pw, (v - lo) / (hi - lo or 1.0)) for x, v in enumerate(ys)]
            for (xa, ya), (xb, yb) in itertools.pairwise(pts):
                cv.line(xa, ya, xb, yb, c, 2)
            lx, ly = right - 34, top + 6 + 8 * idx  # legend entry
            cv.rect(lx - 3, ly - 3, right - 3, ly + 5, bytes((255, 255, 255)))
            cv.line(lx, ly, lx + 10, ly, c, 2)
            cv.rect(lx + 14, ly - 1, lx + 26, ly + 2, label)
    elif kind == "scatter":
        slope = rng.random() * 1.6 - 0.8
        xs = [rng.random() for _ in range(rng.randrange(40, 120))]
        pts2 = [(x, 0.5 + slope * (x - 0.5) + 0.12 * _normalish(rng)) for x in xs]
        for x, y in pts2:
            cv.disc(*at(x, y), color)
        mx, my = sum(xs) / len(xs), sum(p[1] for p in pts2) / len(pts2)
        sxx = sum((x - mx) ** 2 for x in xs) or 1.0
        b = sum((x - mx) * (y - my) for x, y in pts2) / sxx
        cv.line(*at(0.0, my - b * mx), *at(1.0, my + b * (1 - mx)), ink, 2)
    elif kind == "hist":
        bins = rng.randrange(12, 31)
        counts = [0] * bins
        shift = rng.random() * 0.2 - 0.1
        for _ in range(600):
            v = (_normalish(rng) * 0.16 + 0.5 + shift) * bins
            if 0 <= v < bins:
                counts[int(v)] += 1
        peak = max(counts) or 1
        edge = bytes(max(0, c - 60) for c in _PALETTE[first])
        for i, n in enumerate(counts):
            x0, y0 = at(i / bins, n / peak)
            x1, _ = at((i + 1) / bins, 0.0)
            cv.rect(x0, y0, x1, bottom - 4, color)
            cv.line(x0, y0, x0, bottom - 5, edge)
            cv.line(x0, y0, x1 - 1, y0, edge)
    else:  # errorbar: the eight schools, estimate +/- standard error
        mean = rng.random() * 0.3 + 0.35
        cv.line(*at(0.0, mean), *at(1.0, mean), bytes((150, 150, 150)))
        for j in range(8):
            est, err = 0.5 + 0.15 * _normalish(rng), rng.random() * 0.2 + 0.08
            cx, cy = at((j + 0.5) / 8, est)
            ylo, yhi = at(0.0, est - err)[1], at(0.0, est + err)[1]
            cv.line(cx, ylo, cx, yhi, color)
            cv.line(cx - 3, ylo, cx + 3, ylo, color)
            cv.line(cx - 3, yhi, cx + 3, yhi, color)
            cv.disc(cx, cy, color)
    cv.line(left, top, right - 1, top, ink)  # spines
    cv.line(left, bottom, right - 1, bottom, ink)
    cv.line(left, top, left, bottom, ink)
    cv.line(right - 1, top, right - 1, bottom, ink)
    return kind, bytes(cv.buf)


@functools.lru_cache(maxsize=4 * IMAGE_POOL_SIZE)
def _image(seed: int, slot: int) -> tuple[str, bytes]:
    """(kind, base64 PNG) for pool slot ``slot``; cached so big notebooks stay fast."""
    kind, scanlines = _render(seed, slot)
    return kind, base64.b64encode(encode_png(IMAGE_WIDTH, IMAGE_HEIGHT, scanlines))
