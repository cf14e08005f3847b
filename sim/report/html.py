"""The report's ``index.html``: one self-contained static page (inline CSS, no JS, no external
resources). Every string that comes from an input file goes through :func:`html.escape` — the
inputs are data, never markup."""

from __future__ import annotations

import datetime
import html
import math
import os
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path

from sim.report.data import Check, GateResult, Inputs, RunResult, ScaleResult, loader_peer
from sim.report.figures import FigureInfo

__all__ = ["render_index", "write_index"]

GOOD_VERDICTS = frozenset(
    {"linear", "sublinear", "constant", "zero", "flat", "pass", "ok", "passed", "yes"}
)
WARN_VERDICTS = frozenset({"superlinear", "unknown", "inconclusive", "noisy", "n/a"})

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 color:#1d2330;background:#f6f7f9;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:24px 32px 48px}
h1{margin:0 0 4px;font-size:26px}
h2{margin:32px 0 10px;font-size:19px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
.meta{color:#5b6475;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:12px;margin-top:18px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 14px}
.card .k{font-size:12px;color:#5b6475;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px}
.card .s{font-size:12px;color:#5b6475;margin-top:2px;overflow-wrap:anywhere}
.good{color:#1a7f37}.bad{color:#c62828}.warn{color:#b26a00}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px;margin:6px 0 12px}
th,td{border:1px solid #dde1e7;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.p{overflow-wrap:anywhere}td{max-width:420px}
figure{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:16px 0;padding:12px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{font-size:13px;color:#3b4354;margin-top:8px}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600}
.badge.good{background:#1a7f37;color:#fff}.badge.bad{background:#c62828;color:#fff}
.badge.warn{background:#b26a00;color:#fff}
ul.files{font-size:13px;padding-left:20px}code{font-size:12px}
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ms(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    ms = seconds * 1000.0
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.3f} ms"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _tone(verdict: str) -> str:
    v = verdict.lower()
    return "good" if v in GOOD_VERDICTS else "warn" if v in WARN_VERDICTS else "bad"


def _badge(verdict: str) -> str:
    return f'<span class="badge {_tone(verdict)}">{esc(verdict)}</span>'


def _yes_no(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return f'<span class="badge {"good" if ok else "bad"}">{"yes" if ok else "no"}</span>'


def _href(source: Path, out: Path) -> str:
    try:
        rel = os.path.relpath(source.resolve(), out.resolve())
    except ValueError:  # another drive (Windows): fall back to an absolute file URL
        return esc(source.resolve().as_uri())
    return esc(urllib.parse.quote(Path(rel).as_posix()))


def _link(source: Path, out: Path, text: str | None = None) -> str:
    return f'<a href="{_href(source, out)}">{esc(text or source.name)}</a>'


def _card(key: str, value: str, sub: str = "", tone: str = "") -> str:
    cls = f"v {tone}" if tone else "v"
    sub_html = f'<div class="s">{sub}</div>' if sub else ""
    head = f'<div class="k">{esc(key)}</div><div class="{cls}">{value}</div>'
    return f'<div class="card">{head}{sub_html}</div>'


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --------------------------------------------------------------------------- sections


def _headline_sim(sims: Sequence[RunResult]) -> RunResult | None:
    """The run the headline speaks for: the default scenario if present, else the one with the
    fewest peers (a 100-peer stress run says how the daemon copes, not what a user sees)."""
    if not sims:
        return None
    return min(sims, key=lambda s: (s.scenario != "default", len(s.peers)))


def _headline(inputs: Inputs) -> str:
    cards: list[str] = []
    sims = inputs.sims
    main_sim = _headline_sim(sims)
    run: RunResult | None = main_sim or (inputs.runs[0] if inputs.runs else None)
    if run is not None:
        cells = run.cells if run.cells is not None else run.notebook.cells
        tone = "" if run.cells is None or run.cells == run.notebook.cells else "bad"
        cards.append(
            _card(
                "cells",
                f"{cells} / {run.notebook.cells}",
                f"loaded / in notebook · {esc(run.label)}",
                tone,
            )
        )
    if sims:
        ok = all(bool(s.converged) for s in sims)
        peers = sum(len(s.peers) for s in sims)
        good = sum(p.converged for s in sims for p in s.peers)
        cards.append(
            _card(
                "converged",
                "yes" if ok else "no",
                f"{good}/{peers} peers in {len(sims)} sim run(s)",
                "good" if ok else "bad",
            )
        )
        assert main_sim is not None
        peer = loader_peer(main_sim)
        if peer is not None:
            ttfc, full = peer.time_to_first_cell_s, peer.time_to_full_s
            where = f"peer {esc(peer.name)} · {esc(main_sim.label)}"
            cards.append(_card("time to first cell", esc(_ms(ttfc)), where))
            ratio = ttfc / full if ttfc is not None and full else None
            cards.append(
                _card(
                    "first cell / full",
                    "n/a" if ratio is None else esc(f"{100 * ratio:.1f}%"),
                    f"full load {esc(_ms(full))}; lower = more progressive",
                )
            )
    if inputs.scales:
        for path in inputs.scales[0].paths.values():
            cards.append(
                _card(
                    f"exponent · {path.name}",
                    esc(f"{path.exponent:.2f}"),
                    f"{_badge(path.verdict)} CI [{path.ci[0]:.2f}, {path.ci[1]:.2f}]",
                )
            )
    for gate in inputs.gates:
        cards.append(_card(gate.command, _badge(gate.verdict), esc(gate.label)))
    return f'<div class="cards">{"".join(cards)}</div>'


def _runs_table(runs: Sequence[RunResult], out: Path) -> str:
    rows = []
    for r in runs:
        peer = loader_peer(r)
        ttfc = peer.time_to_first_cell_s if peer else None
        full = peer.time_to_full_s if peer else None
        rows.append(
            [
                _link(r.source, out, r.label),
                esc(r.command),
                f'<span class="p">{esc(r.notebook.path)}</span>',
                esc(r.notebook.cells),
                esc(f"{r.notebook.bytes / 1e6:.2f}"),
                _yes_no(r.converged),
                esc(_ms(ttfc)),
                esc(_ms(full)),
                esc(_ms(r.phases.total_s)),
                esc(_num(r.daemon_overhead_ratio)),
            ]
        )
    headers = [
        "result",
        "command",
        "notebook",
        "cells",
        "MB",
        "converged",
        "first cell",
        "full",
        "load total",
        "daemon overhead (x raw)",
    ]
    return _table(headers, rows, numeric=(3, 4, 6, 7, 8, 9))


def _scale_table(scales: Sequence[ScaleResult], out: Path) -> str:
    rows = []
    for s in scales:
        for p in s.paths.values():
            counters = ", ".join(f"{esc(k)}: {_badge(v)}" for k, (v, _) in p.counters.items())
            trend = "n/a"
            if p.batch_trend is not None:
                t = p.batch_trend
                slope = esc(f"{t.robust_relative_slope:+.3f}")
                trend = f"{_badge('flat' if t.flat else 'not flat')} {slope}"
            rows.append(
                [
                    _link(s.source, out, s.label),
                    esc(p.name),
                    esc(f"{p.exponent:.3f}"),
                    esc(f"[{p.ci[0]:.3f}, {p.ci[1]:.3f}]"),
                    _badge(p.verdict),
                    esc(_num(p.r_squared, 3)),
                    counters or "n/a",
                    trend,
                ]
            )
    headers = ["result", "path", "exponent k", "95% CI", "verdict", "R²", "counters", "batch trend"]
    return _table(headers, rows, numeric=(2, 5))


def _gate_table(gates: Sequence[GateResult], out: Path) -> str:
    rows = []
    for g in gates:
        ci = "n/a" if g.ci is None else f"[{g.ci[0]:.3f}, {g.ci[1]:.3f}]"
        failed = ", ".join(c.name for c in g.checks if not c.ok) or "none"
        rows.append(
            [
                _link(g.source, out, g.label),
                esc(g.command),
                _badge(g.verdict),
                esc("n/a" if g.threshold is None else f"{g.threshold:g}"),
                esc(len(g.ratios)),
                esc(_num(g.median_ratio, 3)),
                esc(ci),
                esc(failed),
            ]
        )
    headers = [
        "result",
        "command",
        "verdict",
        "threshold",
        "pairs",
        "median ratio",
        "CI",
        "flagged",
    ]
    return _table(headers, rows, numeric=(3, 4, 5))


def _checks_table(checks: Sequence[Check], out: Path) -> str:
    rows = [
        [
            _link(c.source, out, c.source.stem),
            esc(c.name),
            _badge("pass" if c.ok else "fail"),
            f'<span class="p">{esc(c.detail)}</span>',
        ]
        for c in sorted(checks, key=lambda c: c.ok)  # failures first, otherwise in input order
    ]
    return _table(["result", "check", "status", "detail"], rows)


def _all_checks(inputs: Inputs) -> list[Check]:
    checks = [c for r in inputs.runs for c in r.checks]
    checks += [c for s in inputs.scales for c in s.checks]
    return checks + [c for g in inputs.gates for c in g.checks]


def render_index(
    inputs: Inputs, figures: Sequence[FigureInfo], out: Path, *, generated_at: str
) -> str:
    """The page as a string (pure; :func:`write_index` writes it)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>nbstream report</title><style>{CSS}</style></head><body><main>",
        "<h1>nbstream report</h1>",
        f'<div class="meta">generated {esc(generated_at)} from {len(inputs.sources)} result file(s)'
        + (f" and {len(inputs.asv.files)} asv result file(s)" if inputs.asv else "")
        + "</div>",
        _headline(inputs),
    ]
    if inputs.runs:
        parts += ["<h2>Runs</h2>", _runs_table(inputs.runs, out)]
    if inputs.scales:
        parts += ["<h2>Scaling</h2>", _scale_table(inputs.scales, out)]
    if inputs.gates:
        parts += ["<h2>Gate</h2>", _gate_table(inputs.gates, out)]
    if figures:
        parts.append("<h2>Figures</h2>")
    for fig in figures:
        src = esc(urllib.parse.quote(fig.filename))
        parts.append(
            f'<figure id="{esc(Path(fig.filename).stem)}"><img src="{src}" alt="{esc(fig.title)}">'
            f"<figcaption><strong>{esc(fig.title)}.</strong> {esc(fig.caption)} "
            f"See <code>reports/README.md</code>.</figcaption></figure>"
        )
    checks = _all_checks(inputs)
    if checks:
        failed = sum(not c.ok for c in checks)
        parts += [
            f"<h2>Checks ({len(checks) - failed}/{len(checks)} pass)</h2>",
            _checks_table(checks, out),
        ]
    parts.append('<h2>Inputs</h2><ul class="files">')
    parts += [f"<li>{_link(src, out, str(src))}</li>" for src in inputs.sources]
    if inputs.asv is not None:
        parts.append(
            f"<li>asv results: <code>{esc(inputs.asv.root)}</code> "
            f"({len(inputs.asv.files)} files, {len(inputs.asv.commits)} commits)</li>"
        )
    parts.append("</ul>")
    parts.append(
        '<div class="meta">scanned: ' + esc(", ".join(str(p) for p in inputs.scanned)) + "</div>"
    )
    if inputs.skipped:
        parts.append('<h2>Skipped</h2><ul class="files">')
        parts += [f"<li><code>{esc(p)}</code>: {esc(why)}</li>" for p, why in inputs.skipped]
        parts.append("</ul>")
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def write_index(inputs: Inputs, figures: Sequence[FigureInfo], out: Path) -> Path:
    """Write ``out/index.html`` and return its path."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    target = out / "index.html"
    target.write_text(render_index(inputs, figures, out, generated_at=now), encoding="utf-8")
    return target
