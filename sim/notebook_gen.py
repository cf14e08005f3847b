"""Deterministic, seeded, versioned generator of reference-shaped notebooks.

The default notebook (50 cells, seed 0) mirrors the reference workload of the streaming-load
benchmark (the "gelmanschools" notebook: 50 cells, ~1.4 MB, 11 image outputs). ``cells=N`` scales
it for complexity sweeps with roughly constant bytes per cell.

Determinism across machines: randomness comes only from ``random.Random`` seeded with strings
(SHA-512 based, stable across platforms and Python versions); drawing uses only IEEE basic
arithmetic (no libm transcendental functions); PNGs are hand-encoded with STORED deflate blocks,
so no zlib build can change the bytes. Bump ``GENERATOR_VERSION`` whenever the output bytes change.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import json
import os
import pathlib
import random
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any

GENERATOR_VERSION = "1"
DEFAULT_CELLS = 50
DEFAULT_SEED = 0
DEFAULT_IMAGES = 11
IMAGE_POOL_SIZE = 64  # distinct images per seed; notebooks with more images cycle through them
IMAGE_WIDTH = 200
IMAGE_HEIGHT = 153
DEFAULT_NOTEBOOK_SHA256 = "0d2d2ea79ab00a58f5a33ff5c358cfd34739d2915e53c3904f90f3aa25ba53dc"

FIGURE_TEXT = "<Figure size 640x480 with 1 Axes>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_KINDS = ("line", "scatter", "hist", "errorbar")
_PALETTE: tuple[tuple[int, int, int], ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44))
_PALETTE += ((214, 39, 40), (148, 103, 189))
_PALETTE += ((140, 86, 75), (227, 119, 194), (23, 190, 207))


@dataclass(frozen=True, slots=True)
class GeneratedInfo:
    """What ``write_notebook`` produced."""

    path: pathlib.Path
    cells: int
    images: int
    bytes: int
    sha256: str
    generator_version: str


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


# Images are serialized as placeholders and spliced into the encoded bytes afterwards: the JSON
# encoder then never copies megabytes of base64 around (nor widens them to UCS-4 when the
# notebook text contains non-BMP characters), which keeps 3200-cell notebooks fast.
_PLACEHOLDER = re.compile(rb"<nbstream-png:(\d+)>")


# --------------------------------------------------------------------------- text content
# The "gelmanschools" theme: the eight schools example (Gelman et al., BDA3 section 5.5).
_SCHOOLS: tuple[str, ...] = ("Choate", "Deerfield", "Phillips Andover", "Phillips Exeter")
_SCHOOLS += ("Hotchkiss", "Lawrenceville", "St. Paul's", "Mt. Hermon")
_Y = (28, 8, -3, 7, -1, 1, 18, 12)
_SIGMA = (15, 10, 16, 11, 9, 11, 10, 18)
_TITLES: tuple[str, ...] = ("The eight schools problem", "Data", "Complete pooling", "No pooling")
_TITLES += ("Centered hierarchical model", "Sampling", "Divergences and the funnel")
_TITLES += ("Non-centered parameterisation", "Posterior predictive checks", "Shrinkage")
_TITLES += ("Sensitivity to the prior on τ", "Model comparison", "Conclusions")
_SENTENCES = (  # deliberately non-ASCII in places: exercises UTF-8 / UTF-16 offset handling
    r"Each school $j$ reports an estimated effect $y_j$ with a known standard error $\sigma_j$.",
    r"We model the true effects as $\theta_j \sim \mathcal{N}(\mu, \tau^2)$ — partial pooling.",
    r"When $\tau \to 0$ all schools share one effect; as $\tau \to \infty$ they are independent.",
    r"Gelman–Rubin diagnostics ($\hat{R} ≈ 1.00$) and bulk ESS look healthy now.",  # noqa: RUF001
    "The centered model produces divergent transitions near the neck of Neal’s funnel 🌪️.",  # noqa: RUF001
    "Shrinkage pulls the noisiest estimates (Choate, Mt. Hermon) hardest towards μ.",
    "See *Bayesian Data Analysis*, §5.5, for the original SAT coaching experiments.",
    "The naïve pooled estimate ignores between-school variation, so its interval is too narrow.",
    "Posterior intervals are 94 % highest-density intervals (HDI), ArviZ’s default.",  # noqa: RUF001
    "在分层模型中，τ 控制着各学校效应之间的收缩程度。",  # noqa: RUF001
    "Ограничение τ ≥ 0 задаётся полу-Коши априорным распределением.",
    "We draw 4 chains × 2 000 draws after 1 000 tuning steps; `target_accept` helps too.",  # noqa: RUF001
)
_MATH = (
    "$$\np(\\mu, \\tau \\mid y) \\propto p(\\mu, \\tau) \\prod_{j=1}^{8} "
    "\\mathcal{N}\\left(y_j \\mid \\mu, \\sigma_j^2 + \\tau^2\\right)\n$$"
)


def _markdown(rng: random.Random, section: int) -> str:
    title = _TITLES[section % len(_TITLES)]
    if section >= len(_TITLES):
        title += f" (part {section // len(_TITLES) + 1})"
    parts = [("# " if section == 0 else rng.choice(("## ", "## ", "### "))) + title]
    for _ in range(rng.randrange(1, 4)):
        parts.append(" ".join(rng.choice(_SENTENCES) for _ in range(rng.randrange(1, 4))))
    extra = rng.random()
    if extra < 0.3:
        items = [rng.choice(_SENTENCES) for _ in range(rng.randrange(2, 5))]
        bullet = "{n}. " if extra < 0.1 else "- "
        parts.append("\n".join(bullet.format(n=i + 1) + s for i, s in enumerate(items)))
    elif extra < 0.5:
        parts.append(_MATH)
    elif extra < 0.62:
        rows = [f"| {s} | {y} | {e} |" for s, y, e in zip(_SCHOOLS, _Y, _SIGMA, strict=True)]
        parts.append("\n".join(["| school | $y_j$ | $\\sigma_j$ |", "|---|---:|---:|", *rows]))
    elif extra < 0.72:
        parts.append("> " + rng.choice(_SENTENCES))
    return "\n\n".join(parts)


def _f(rng: random.Random, lo: float, hi: float, digits: int = 2) -> str:
    return f"{lo + (hi - lo) * rng.random():.{digits}f}"


def _imports_source(rng: random.Random) -> str:
    return (
        "import arviz as az\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
        "import pandas as pd\nimport pymc as pm\n\n%matplotlib inline\n"
        f'az.style.use("arviz-darkgrid")\nRANDOM_SEED = {rng.randrange(10_000)}\n'
        "rng = np.random.default_rng(RANDOM_SEED)"
    )


def _silent_source(rng: random.Random) -> str:
    pick = rng.randrange(4)
    if pick == 0:
        names = ", ".join(f'"{s}"' for s in _SCHOOLS)
        return (
            f"schools = np.array([{names}])\ny = np.array({list(_Y)}, dtype=float)\n"
            f"sigma = np.array({list(_SIGMA)}, dtype=float)\nJ = len(schools)"
        )
    if pick == 1:
        return (
            'with pm.Model(coords={"school": schools}) as model:\n'
            f'    mu = pm.Normal("mu", mu=0.0, sigma={_f(rng, 2, 10, 1)})\n'
            f'    tau = pm.HalfCauchy("tau", beta={_f(rng, 1, 10, 1)})\n'
            '    theta_tilde = pm.Normal("theta_tilde", mu=0.0, sigma=1.0, dims="school")\n'
            '    theta = pm.Deterministic("theta", mu + tau * theta_tilde, dims="school")\n'
            '    pm.Normal("obs", mu=theta, sigma=sigma, observed=y, dims="school")'
        )
    if pick == 2:
        return (
            'def shrinkage(idata, var_name: str = "theta") -> pd.Series:\n'
            '    """Fraction of the way each school estimate moves towards the grand mean."""\n'
            '    post = idata.posterior[var_name].mean(("chain", "draw")).values\n'
            '    grand = idata.posterior["mu"].mean().item()\n'
            '    return pd.Series((y - post) / (y - grand), index=schools, name="shrinkage")'
        )
    return (
        'df = pd.DataFrame({"school": schools, "y": y, "sigma": sigma})\n'
        f'df["z"] = (df["y"] - df["y"].mean()) / {_f(rng, 5, 15, 1)}\n'
        'df = df.set_index("school")'
    )


def _stream_cell(rng: random.Random) -> tuple[str, str, str]:
    """(source, stream name, text)."""
    pick = rng.randrange(3)
    if pick == 0:
        fmt = "{school:<17} {effect:+6.1f} ± {se:4.1f}"
        body = "".join(
            fmt.format(school=s, effect=y, se=e) + "\n"
            for s, y, e in zip(_SCHOOLS, _Y, _SIGMA, strict=True)
        )
        return (
            f'for school, effect, se in zip(schools, y, sigma):\n    print(f"{fmt}")',
            "stdout",
            body,
        )
    if pick == 1:
        draws, tune = rng.choice((1000, 2000, 4000)), rng.choice((500, 1000, 2000))
        src = (
            f"with model:\n    idata = pm.sample({draws}, tune={tune}, "
            f"target_accept={_f(rng, 0.8, 0.99)}, random_seed=rng)"
        )
        body = (
            "Auto-assigning NUTS sampler...\nInitializing NUTS using jitter+adapt_diag...\n"
            "Multiprocess sampling (4 chains in 4 jobs)\nNUTS: [mu, tau, theta_tilde]\n"
            f"Sampling 4 chains for {tune:_} tune and {draws:_} draw iterations "
            f"({4 * tune:_} + {4 * draws:_} draws total) took {rng.randrange(2, 30)} seconds.\n"
        )
        if rng.random() < 0.5:
            body += (
                f"There were {rng.randrange(1, 60)} divergences after tuning. "
                "Increase `target_accept` or reparameterize.\n"
            )
        return src, "stderr", body
    lines = [f"divergences: {rng.randrange(0, 40)}", f"max r_hat: {_f(rng, 1.0, 1.02, 3)}"]
    lines += [f"ess_bulk[{v}]: {rng.randrange(400, 9000)}" for v in ("mu", "tau")]
    src = (
        'print("divergences:", int(idata.sample_stats["diverging"].sum()))\n'
        'print("max r_hat:", float(az.rhat(idata).to_array().max()))\n'
        'for v in ("mu", "tau"):\n    print(f"ess_bulk[{v}]:", int(az.ess(idata)[v]))'
    )
    return src, "stdout", "\n".join(lines) + "\n"


_HTML_STYLE = (
    "<div>\n<style scoped>\n    .dataframe tbody tr th:only-of-type {\n"
    "        vertical-align: middle;\n    }\n\n    .dataframe tbody tr th {\n"
    "        vertical-align: top;\n    }\n\n    .dataframe thead th {\n"
    "        text-align: right;\n    }\n</style>\n"
)


def _frame(index: list[str], columns: list[str], rows: list[list[str]]) -> tuple[str, str]:
    """(text/plain, text/html) renderings of a small table, in pandas' style."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    iw = max(len(s) for s in index)

    def plain_row(head: str, cells: list[str]) -> str:
        return f"{head:<{iw}}" + "".join(f"  {v:>{w}}" for v, w in zip(cells, widths, strict=True))

    plain = [plain_row("", columns)] + [plain_row(i, r) for i, r in zip(index, rows, strict=True)]
    head = "".join(f"      <th>{c}</th>\n" for c in columns)
    body = "".join(
        f"    <tr>\n      <th>{i}</th>\n"
        + "".join(f"      <td>{v}</td>\n" for v in r)
        + "    </tr>\n"
        for i, r in zip(index, rows, strict=True)
    )
    html = (
        f'{_HTML_STYLE}<table border="1" class="dataframe">\n  <thead>\n'
        f'    <tr style="text-align: right;">\n      <th></th>\n{head}    </tr>\n  </thead>\n'
        f"  <tbody>\n{body}  </tbody>\n</table>\n</div>"
    )
    return "\n".join(plain), html


def _table_cell(rng: random.Random) -> tuple[str, str, str]:
    """(source, text/plain, text/html)."""
    if rng.random() < 0.6:
        index = ["mu", "tau"] + [f"theta[{s}]" for s in _SCHOOLS]
        columns = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "r_hat"]
        rows = []
        for _ in index:
            m, sd = 4.4 + 6 * (rng.random() - 0.5), 3.0 + 3 * rng.random()
            mcse, ess, rhat = _f(rng, 0.02, 0.2), rng.randrange(800, 9000), _f(rng, 1.0, 1.01)
            row = [f"{m:.2f}", f"{sd:.2f}", f"{m - 1.9 * sd:.2f}", f"{m + 1.9 * sd:.2f}"]
            rows.append([*row, mcse, f"{ess}.0", rhat])
        hdi = _f(rng, 0.89, 0.95)
        src = f'az.summary(idata, var_names=["mu", "tau", "theta"], hdi_prob={hdi})'
        return (src, *_frame(index, columns, rows))
    k = rng.randrange(1, 4)
    rows = [
        [f"{y * k:.1f}", f"{e:.1f}", f"{y * k / e:.3f}"] for y, e in zip(_Y, _SIGMA, strict=True)
    ]
    src = f'df.assign(y=df["y"] * {k}, t=df["y"] * {k} / df["sigma"])[["y", "sigma", "t"]]'
    return (src, *_frame(list(_SCHOOLS), ["y", "sigma", "t"], rows))


def _result_cell(rng: random.Random) -> tuple[str, str]:
    """(source, text/plain)."""
    pick = rng.randrange(3)
    if pick == 0:
        return 'idata.posterior["tau"].mean().item()', repr(rng.random() * 6 + 1)
    if pick == 1:
        vals = ", ".join(f"{rng.random() * 10:.8f}" for _ in range(8))
        return 'idata.posterior["theta"].mean(("chain", "draw")).values', f"array([{vals}])"
    ratios = ", ".join(f"{y / e:.2f}" for y, e in zip(_Y, _SIGMA, strict=True))
    plain = f"({sum(_Y) / 8}, {_f(rng, 10.0, 10.5, 12)}, array([{ratios}]))"
    return "y.mean(), y.std(ddof=1), (y / sigma).round(2)", plain


def _error_cell(rng: random.Random, count: int) -> tuple[str, str, str, list[str]]:
    """(source, ename, evalue, traceback) of an IPython-style KeyError."""
    school = rng.choice(("Exeter", "Andover", "Groton"))
    var = f"theta_{school.lower()}"
    src = f'{var} = idata.posterior["theta"].sel(school="{school}")\n{var}.mean()'
    red, green, grey, off = "\x1b[0;31m", "\x1b[0;32m", "\x1b[38;5;241m", "\x1b[0m"
    traceback = [
        red + "-" * 75 + off,
        f"{red}KeyError{off}" + " " * 34 + "Traceback (most recent call last)",
        f"Cell {green}In[{count}], line 1{off}\n{green}----> 1{off} {var} {grey}={off} idata"
        f'{grey}.{off}posterior["theta"]{grey}.{off}sel(school{grey}={off}"{school}")\n',
        f"File {green}/opt/conda/lib/python3.11/site-packages/xarray/core/indexes.py:773{off}, "
        f"in \x1b[0;36mPandasIndex.sel\x1b[0;34m(self, labels, method, tolerance){off}\n"
        f"\x1b[1;32m    771{off}     raise KeyError(label_value)\n",
        f"{red}KeyError{off}: \"'{school}'\"",
    ]
    return src, "KeyError", f"\"'{school}'\"", traceback


_PLOT_SNIPPETS = {
    "line": "x = np.linspace(0, 1, 200)\nfor k in range({n}):\n"
    '    ax.plot(x, np.sin({f} * x + k) / (1 + {d} * x**2), label=f"k={{k}}")\nax.legend()',
    "scatter": 'ax.scatter(df["sigma"], df["y"], alpha={a})\n'
    'ax.axline((0, {b}), slope={s}, color="k")',
    "hist": 'ax.hist(idata.posterior["mu"].values.ravel(), bins={n}, alpha={a})\n'
    'ax.set_xlabel("μ")',
    "errorbar": 'ax.errorbar(schools, y, yerr=sigma, fmt="o", capsize={n})\n'
    'ax.axhline(y.mean(), ls="--", color="{c}")',
}


def _plot_source(rng: random.Random, kinds: list[str]) -> str:
    blocks = []
    for kind in kinds:
        params = {"n": rng.randrange(2, 30), "f": _f(rng, 1, 9), "d": _f(rng, 0, 8)}
        params |= {"a": _f(rng, 0.3, 0.9), "b": _f(rng, -5, 5), "s": _f(rng, -1, 1)}
        params["c"] = rng.choice(("gray", "k", "C3"))
        snippet = _PLOT_SNIPPETS[kind].format(**params)
        blocks.append(f'fig, ax = plt.subplots()\n{snippet}\nax.set_title("{rng.choice(_TITLES)}")')
    return "\n\n".join(blocks)


def _warning_text(rng: random.Random) -> str:
    path = "/opt/conda/lib/python3.11/site-packages/arviz/plots/backends/matplotlib/distplot.py"
    return (
        f"{path}:{rng.randrange(100, 900)}: UserWarning: The figure layout has changed to tight\n"
        "  self._figure.tight_layout(*args, **kwargs)\n"
    )


# --------------------------------------------------------------------------- notebook layout
def default_images(cells: int) -> int:
    """Image outputs for ``cells`` cells: round(11 * cells / 50), at least 1 from 5 cells on."""
    count = round(DEFAULT_IMAGES * cells / DEFAULT_CELLS)
    return max(1, count) if cells >= 5 else count


def _layout(cells: int, images: int) -> list[tuple[str, list[int]]]:
    """Per cell: (role, image indices). About 1/3 markdown; images evenly spread over code cells."""
    kinds = ["markdown" if i % 3 == 0 else "code" for i in range(cells)]
    code = [i for i, kind in enumerate(kinds) if kind == "code"]
    if images and not code:
        raise ValueError(f"a {cells}-cell notebook has no code cell to hold {images} images")
    eligible = code[1:] if len(code) - 1 >= images else code
    image_at: dict[int, list[int]] = {}
    for k in range(images):
        image_at.setdefault(eligible[(2 * k + 1) * len(eligible) // (2 * images)], []).append(k)
    cycle = ("stream", "table", "silent", "result")
    layout: list[tuple[str, list[int]]] = []
    j = 0
    for i, kind in enumerate(kinds):
        if kind == "markdown":
            layout.append(("markdown", []))
        elif i in image_at:
            layout.append(("image", image_at[i]))
        elif i == code[0]:
            layout.append(("imports", []))
        else:
            role = "error" if j % 20 == 13 else cycle[j % 4]
            layout.append(("unexecuted" if role == "silent" and j % 8 == 6 else role, []))
            j += 1
    return layout


def _lines(value: str) -> list[str]:
    return value.splitlines(True)


def _stream(name: str, body: str) -> dict[str, Any]:
    return {"name": name, "output_type": "stream", "text": _lines(body)}


def _result(count: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"data": data, "execution_count": count, "metadata": {}, "output_type": "execute_result"}


def _code_cell(
    rng: random.Random, role: str, image_ids: list[int], count: int, seed: int
) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """(source, outputs, metadata) of one code cell."""
    outputs: list[dict[str, Any]] = []
    metadata: dict[str, Any] = {}
    if role == "imports":
        return _imports_source(rng), outputs, metadata
    if role == "image":
        kinds = [_image(seed, k % IMAGE_POOL_SIZE)[0] for k in image_ids]
        source = _plot_source(rng, kinds)
        if image_ids[0] % 4 == 3:
            outputs.append(_stream("stderr", _warning_text(rng)))
        if kinds[-1] == "line" and image_ids[0] % 2 == 1:
            plain = f"[<matplotlib.lines.Line2D at 0x7f{rng.getrandbits(40):010x}>]"
            outputs.append(_result(count, {"text/plain": [plain]}))
        for k in image_ids:
            data = {
                "image/png": f"<nbstream-png:{k % IMAGE_POOL_SIZE}>",
                "text/plain": [FIGURE_TEXT],
            }
            outputs.append({"data": data, "metadata": {}, "output_type": "display_data"})
        return source, outputs, metadata
    if role == "stream":
        source, name, body = _stream_cell(rng)
        outputs.append(_stream(name, body))
        if len(body) > 400:
            metadata["scrolled"] = True
    elif role == "table":
        source, plain, html = _table_cell(rng)
        outputs.append(_result(count, {"text/html": _lines(html), "text/plain": _lines(plain)}))
    elif role == "result":
        source, plain = _result_cell(rng)
        outputs.append(_result(count, {"text/plain": _lines(plain)}))
    elif role == "error":
        source, ename, evalue, tb = _error_cell(rng, count)
        outputs.append({"ename": ename, "evalue": evalue, "output_type": "error", "traceback": tb})
    else:  # silent / unexecuted
        source = _silent_source(rng)
        if rng.random() < 0.25:
            metadata["tags"] = ["hide-input"]
    return source, outputs, metadata


def _build_cells(cells: int, seed: int, images: int) -> list[dict[str, Any]]:
    rng = random.Random(f"nbstream/v{GENERATOR_VERSION}/notebook/{seed}")
    id_rng = random.Random(f"nbstream/v{GENERATOR_VERSION}/ids/{seed}")
    used: set[str] = set()
    out: list[dict[str, Any]] = []
    count = section = 0
    for role, image_ids in _layout(cells, images):
        cid = f"{id_rng.getrandbits(32):08x}"  # like nbformat's uuid4().hex[:8]
        while cid in used:
            cid = f"{id_rng.getrandbits(32):08x}"
        used.add(cid)
        if role == "markdown":
            source = _markdown(rng, section)
            metadata = {"tags": ["intro"]} if section == 0 else {}
            cell: dict[str, Any] = {"cell_type": "markdown", "id": cid, "metadata": metadata}
            out.append(cell | {"source": _lines(source)})
            section += 1
            continue
        execution_count: int | None = None
        if role != "unexecuted":
            count += 2 if rng.random() < 0.2 else 1
            execution_count = count
        source, outputs, metadata = _code_cell(rng, role, image_ids, count, seed)
        cell = {"cell_type": "code", "execution_count": execution_count, "id": cid}
        out.append(cell | {"metadata": metadata, "outputs": outputs, "source": _lines(source)})
    return out


# --------------------------------------------------------------------------- public API
def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _resolve_images(cells: int, images: int | None) -> int:
    if _check_int("cells", cells) < 0:
        raise ValueError(f"cells must be >= 0, got {cells}")
    n_images = default_images(cells) if images is None else _check_int("images", images)
    if n_images < 0:
        raise ValueError(f"images must be >= 0, got {n_images}")
    return n_images


def generate_notebook(
    cells: int = DEFAULT_CELLS, seed: int = DEFAULT_SEED, *, images: int | None = None
) -> bytes:
    """nbformat 4.5 JSON bytes, serialized the way Jupyter writes them (indent 1, sorted keys)."""
    n_images = _resolve_images(cells, images)
    _check_int("seed", seed)
    language_info = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    metadata = {
        "kernelspec": {
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "name": "python3",
        },
        "language_info": language_info,
        "nbstream_generator": {"version": GENERATOR_VERSION, "seed": seed, "cells": cells},
    }
    notebook = {
        "cells": _build_cells(cells, seed, n_images),
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    text = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
    encoded = (text + "\n").encode("utf-8")
    return _PLACEHOLDER.sub(lambda m: _image(seed, int(m[1]))[1], encoded)


def notebook_fingerprint(data: bytes) -> str:
    """SHA-256 hex digest of notebook bytes."""
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_notebook(
    path: str | os.PathLike[str],
    cells: int = DEFAULT_CELLS,
    seed: int = DEFAULT_SEED,
    *,
    images: int | None = None,
) -> GeneratedInfo:
    """Generate a notebook and write it atomically to ``path`` (for ``nbstream generate``)."""
    n_images = _resolve_images(cells, images)
    data = generate_notebook(cells, seed, images=n_images)
    target = pathlib.Path(path)
    _atomic_write(target, data)
    digest = notebook_fingerprint(data)
    return GeneratedInfo(target, cells, n_images, len(data), digest, GENERATOR_VERSION)


def _cache_root() -> pathlib.Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return pathlib.Path(xdg) / "nbstream"
    return pathlib.Path.home() / ".cache" / "nbstream"


def default_notebook_path(cache_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
    """Path of the cached default notebook, (re)written atomically if missing or corrupted."""
    root = pathlib.Path(cache_dir) if cache_dir is not None else _cache_root()
    path = root / f"reference-{DEFAULT_CELLS}-seed{DEFAULT_SEED}-v{GENERATOR_VERSION}.ipynb"
    if path.is_file() and notebook_fingerprint(path.read_bytes()) == DEFAULT_NOTEBOOK_SHA256:
        return path
    data = generate_notebook()
    digest = notebook_fingerprint(data)
    if digest != DEFAULT_NOTEBOOK_SHA256:
        raise RuntimeError(
            f"generated default notebook hashes to {digest}, not the pinned "
            f"{DEFAULT_NOTEBOOK_SHA256}: nondeterminism, or output changed without a version bump"
        )
    _atomic_write(path, data)
    return path
