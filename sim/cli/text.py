"""How results read in a terminal: tables, sizes, counts, the progress line, and the text
summaries of ``sim`` and ``profile`` (``--json`` and ``--output`` are the machine forms)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sim.results.sim import PHASE_NAMES as PHASES

__all__ = ["count", "ms", "print_profile", "print_sim", "size", "table"]


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def count(n: int, word: str, plural: str | None = None) -> str:
    """``1 peer``, ``2 peers``, ``0 images``, ``3 batches``."""
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def size(nbytes: float) -> str:
    """Bytes for a person: ``812 B``, ``3.4 KB`` under a MB, ``1.40 MB`` from there (decimal)."""
    if nbytes < 1000:
        return f"{int(nbytes)} B"
    if nbytes < 1e6:
        return f"{nbytes / 1e3:.1f} KB"
    return f"{nbytes / 1e6:.2f} MB"


MIN_BATCHES_FOR_TARGETS = 5
"""Below this many batches the first cell *is* most of the load: a target says nothing."""


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def print_sim(data: dict[str, Any], description: str) -> None:
    nb = data["notebook"]
    print(f"nbstream sim — scenario {data['scenario']!r}: {description}")
    print(f"notebook: {nb['path']} ({count(nb['cells'], 'cell')}, {size(nb['bytes'])})")
    print(
        f"transport {data['transport']}, insert path {data['insert_path']}, "
        f"batch size {data['batch_size']}, seed {data['seed']}\n"
    )
    peers = [p["name"] for p in data["peers"]][:6]
    rows = []
    for b in data["batches"]:
        lat = b["latency_s"]
        rows.append(
            [
                str(b["index"]),
                str(b["cells"]),
                ms(b["manifest_s"]),
                ms(b["insert_s"]),
                *(ms(lat.get(p)) for p in peers),
            ]
        )
    print("per-batch latency (ms): server phases, then batch start → cells at each peer")
    print(table(rows, ["batch", "cells", "manifest", "insert", *peers]))
    print()
    prow = [
        [
            p["name"],
            p["behaviour"],
            "-" if p["joined_at_batch"] is None else str(p["joined_at_batch"]),
            ms(p["time_to_first_cell_s"]),
            ms(p["time_to_full_s"]),
            str(p["frames_in"]),
            "yes" if p["converged"] else "no",
        ]
        for p in data["peers"]
    ]
    print(
        table(
            prow, ["peer", "behaviour", "joined", "first cell ms", "full ms", "frames", "converged"]
        )
    )
    ph = data["phases"]
    if ph:
        print("\nphases (ms): " + ", ".join(f"{k[:-2]} {ms(v)}" for k, v in ph.items()))
    else:
        print("\nphases: absent (the server does not answer `statistics`, PROTOCOL.md 6.7)")
    ratio = data["daemon_overhead_ratio"]
    ratio_text = (
        f"{ratio:.2f}x"
        if data["cells"] and data["raw_automerge_s"] >= 0.001 and ratio
        else "n/a (raw Automerge took under 1 ms: no meaningful ratio)"
    )
    print(
        f"raw Automerge build+sync of the same cells: {ms(data['raw_automerge_s'])} ms; "
        f"daemon time-to-full / raw = {ratio_text}"
    )
    workers = data.get("workers")
    if workers is not None:
        each = ", ".join(
            f"worker {w['index']} ({w['peers']} peers) {size(w['peak_rss_kib'] * 1024)}"
            for w in workers
        )
        daemon = data.get("peak_rss_kib")
        own = "" if daemon is None else f"daemon process {size(daemon * 1024)}; "
        print(f"peak RSS: {own}{each}")
    elif data.get("peak_rss_kib") is not None:
        print(f"peak RSS of the run (daemon and peers): {size(data['peak_rss_kib'] * 1024)}")
    c = data["counters"]
    if c:
        print("counters: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    targets = data.get("targets", {})
    if "ttfc_over_full" in targets and len(data["batches"]) < MIN_BATCHES_FOR_TARGETS:
        print(
            f"targets: not judged ({count(len(data['batches']), 'batch', 'batches')}; "
            f"below {MIN_BATCHES_FOR_TARGETS} the first cell is most of the load)"
        )
    elif "ttfc_over_full" in targets:
        t = targets["ttfc_over_full"]
        trend = targets.get("batch_latency_trend")
        line = (
            f"targets: {t['peer']}'s first cell at {100 * t['value']:.0f}% of its time to full "
            f"(target <= 25%: {'met' if t['met'] else 'MISSED'})"
        )
        if trend is not None:
            line += (
                f"; its per-batch latency trend {trend['robust_relative_slope']:+.2f} over the "
                f"load ({'flat' if trend['flat'] else 'NOT flat'})"
            )
        print(line)
    print()
    for check in data["checks"]:
        mark = "ok  " if check["ok"] else "FAIL"
        detail = check["detail"] if not check["ok"] else check["detail"].split("\n")[0]
        print(f"[{mark}] {check['name']}" + (f" — {detail}" if detail else ""))
    print(f"\nconverged: {'yes' if data['converged'] else 'NO'}")


def print_profile(data: dict[str, Any]) -> None:
    if not data["phases"]:
        nb = data["notebook"]
        print(
            f"profile of {nb['path']} ({nb['cells']} cells) on {data.get('server')}, "
            f"median of {data['runs']} runs: phases absent (the server does not answer "
            "`statistics`, PROTOCOL.md 6.7)"
        )
        print(
            f"time to first cell {ms(data['time_to_first_cell_s'])} ms, "
            f"time to full {ms(data['time_to_full_s'])} ms, raw Automerge "
            f"{ms(data['raw_automerge_s'])} ms"
        )
    else:
        ph = data["phases"]
        total = ph["total_s"] or 1.0
        names = {
            "read_s": "read",
            "parse_s": "parse",
            "manifest_s": "manifests/blobs",
            "insert_s": "insert (add_cell_full)",
            "sync_gen_s": "sync generation",
            "network_s": "network (write+drain)",
            "total_s": "load total",
        }
        rows = [[names[k], ms(ph[k]), f"{100 * ph[k] / total:.0f}%"] for k in PHASES]
        nb = data["notebook"]
        print(
            f"profile of {nb['path']} ({count(nb['cells'], 'cell')}, {size(nb['bytes'])}), "
            f"median of {data['runs']} runs"
        )
        print(table(rows, ["phase", "ms", "of load"]))
        print(
            f"time to first cell {ms(data['time_to_first_cell_s'])} ms, "
            f"time to full {ms(data['time_to_full_s'])} ms, raw Automerge "
            f"{ms(data['raw_automerge_s'])} ms"
        )
        print("note: sync generation and network overlap the load; they are not additive.")
