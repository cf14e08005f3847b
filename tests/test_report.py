from __future__ import annotations

import argparse
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from sim.report.command import (
    add_report_arguments,
    load_asv_history,
    load_inputs,
    run_report_command,
)
from sim.report.html import render_index
from sim.results.self_test import SelfTestResult, SelfTestRun

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIL_PATH = "/tmp/<script>alert('x')</script>&nb.ipynb"


# --------------------------------------------------------------------------- synthetic inputs
# Shapes follow "Result JSON files" in spec/INTERFACES.md exactly.


def phases(scale: float = 1.0) -> dict[str, float]:
    p = {
        "read_s": 0.002 * scale,
        "parse_s": 0.004 * scale,
        "manifest_s": 0.010 * scale,
        "insert_s": 0.030 * scale,
        "sync_gen_s": 0.008 * scale,
        "network_s": 0.006 * scale,
    }
    return {**p, "total_s": sum(p.values()) + 0.003 * scale}


def batches(n: int, peers: list[str], late: str | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        start = 0.01 + 0.004 * i
        lat: dict[str, float | None] = {
            name: 0.0015 + 0.0002 * k + 0.0001 * math.sin(i + k) for k, name in enumerate(peers)
        }
        if late is not None and i < n // 2:
            lat[late] = None
        out.append(
            {
                "index": i,
                "cells": 3,
                "outputs": 2,
                "manifest_s": 0.0002,
                "insert_s": 0.0006,
                "notify_s": 0.0001,
                "started_at": start,
                "finished_at": start + 0.001,
                "latency_s": lat,
            }
        )
    return out


def sim_result(
    cells: int = 50, path: str = "/data/nb.ipynb", converged: bool = True
) -> dict[str, Any]:
    names = ["loader", "watcher", "late-joiner"]
    scale = cells / 50
    n_batches = max(1, cells // 3)
    peers = []
    for k, name in enumerate(names):
        peers.append(
            {
                "name": name,
                "behaviour": "loader" if k == 0 else "reader",
                "joined_at_batch": None if k < 2 else n_batches // 2,
                "time_to_first_cell_s": 0.012 * (1 + 0.1 * k) * scale**0.25,
                "time_to_full_s": 0.07 * scale + 0.001 * k,
                "converged": converged,
                "frames_in": 20,
                "bytes_in": 1234,
                "arrivals": [{"t": 0.011, "cells": 3, "bytes": 100, "changed": True}],
            }
        )
    return {
        "command": "sim",
        "version": "0.1.0",
        "seed": 0,
        "scenario": "default",
        "transport": "memory",
        "insert_path": "full",
        "batch_size": 3,
        "notebook": {"path": path, "cells": cells, "bytes": 28_000 * cells, "sha256": "0" * 64},
        "converged": converged,
        "cells": cells,
        "peers": peers,
        "batches": batches(n_batches, names, late="late-joiner"),
        "phases": phases(scale),
        "counters": {
            "ops": 40 * cells,
            "transactions": n_batches,
            "scan_steps": 0,
            "sync_messages": n_batches,
            "sync_bytes": 1000 * cells,
        },
        "raw_automerge_s": 0.02 * scale,
        "daemon_overhead_ratio": 1.7,
        "checks": [
            {
                "name": "all peers converged",
                "ok": converged,
                "detail": "3/3 peers match the server",
            },
            {"name": "source round-trips", "ok": True, "detail": f"export == {path}"},
        ],
    }


def profile_result(cells: int = 200) -> dict[str, Any]:
    return {
        "command": "profile",
        "notebook": {
            "path": "/data/big.ipynb",
            "cells": cells,
            "bytes": 28_000 * cells,
            "sha256": "1" * 64,
        },
        "phases": phases(cells / 50),
        "batches": batches(4, []),
        "counters": {
            "ops": 40 * cells,
            "transactions": 4,
            "scan_steps": 0,
            "sync_messages": 4,
            "sync_bytes": 9,
        },
    }


def scale_path(k: float, verdict: str) -> dict[str, Any]:
    sizes = [50, 100, 200, 400]
    points = [
        {
            "cells": n,
            "total_s": 1e-4 * n**k * (1 + 0.03 * r),
            "ops": 40 * n,
            "scan_steps": 0 if k < 1.5 else n * n // 2,
            "transactions": n // 3,
        }
        for n in sizes
        for r in range(2)
    ]
    return {
        "exponent": k,
        "ci": [k - 0.06, k + 0.06],
        "verdict": verdict,
        "r_squared": 0.995,
        "points": points,
        "counters": {
            "scan_steps": {
                "verdict": "zero" if k < 1.5 else "quadratic",
                "exponent": None if k < 1.5 else 2.0,
            },
            "ops": {"verdict": "linear", "exponent": 1.0},
        },
        "batch_trend": {
            "relative_slope": 0.01 if k < 1.5 else 1.4,
            "robust_relative_slope": 0.008 if k < 1.5 else 1.3,
            "flat": k < 1.5,
            "cells": 400,
            "latencies_s": [0.002 * (1 + (0 if k < 1.5 else i / 40)) for i in range(133)],
        },
    }


def scale_result() -> dict[str, Any]:
    return {
        "command": "scale",
        "sizes": [50, 100, 200, 400],
        "repeats": 2,
        "seed": 0,
        "paths": {"full": scale_path(1.02, "linear"), "naive": scale_path(1.93, "quadratic")},
        "raw_automerge": {
            "points": [{"cells": n, "total_s": 5e-5 * n} for n in (50, 100, 200, 400)],
            "exponent": 1.0,
        },
    }


def gate_result(verdict: str = "pass") -> dict[str, Any]:
    ratios = [0.97, 1.0, 1.02, 0.99, 1.01, 1.03, 0.98, 1.0, 1.04]
    return {
        "command": "gate",
        "verdict": verdict,
        "base": {"ref": "HEAD", "commit": "a" * 40},
        "candidate": {"commit": "b" * 40, "dirty": True},
        "pairs": len(ratios),
        "cells": 200,
        "seed": 0,
        "thresholds": {"time": 1.1, "exponent_tolerance": 0.1, "counter_tolerance": 0.0},
        "time": {
            "median_ratio": 1.0 if verdict == "pass" else 1.2,
            "ci": [0.98, 1.02] if verdict == "pass" else [1.15, 1.25],
            "ci_level": 0.96,
            "threshold": 1.1,
            "regressed": verdict != "pass",
            "inconclusive": False,
            "base_median_s": 0.1,
            "candidate_median_s": 0.1,
            "ratios": ratios,
            "samples": {"base": [0.1] * len(ratios), "candidate": [0.1 * r for r in ratios]},
        },
        "cpu_time": {
            "median_ratio": 1.0,
            "ci": [0.98, 1.02],
            "ci_level": 0.96,
            "threshold": 1.1,
            "regressed": verdict != "pass",
            "inconclusive": False,
            "base_median_s": 0.1,
            "candidate_median_s": 0.1,
            "ratios": ratios,
            "samples": {"base": [0.1] * len(ratios), "candidate": [0.1 * r for r in ratios]},
        },
        "counters": {
            "ops": {
                "base": 8000,
                "candidate": 8000,
                "delta": 0,
                "deterministic": True,
                "tolerance": 0.0,
                "regressed": False,
            },
        },
        "exponent": {
            "base": 1.01,
            "candidate": 1.02,
            "delta": 0.01,
            "delta_ci": [-0.05, 0.07],
            "base_ci": [0.9, 1.1],
            "candidate_ci": [0.9, 1.1],
            "base_verdict": "linear",
            "candidate_verdict": "linear",
            "allowed": 1.11,
            "tolerance": 0.1,
            "sizes": [50, 100, 200],
            "regressed": False,
        },
        "flagged_by": [] if verdict == "pass" else ["time"],
        "elapsed_s": 12.5,
    }


def write(directory: Path, name: str, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def write_asv(root: Path) -> None:
    write(
        root,
        "benchmarks.json",
        {
            "bench_load.Load.time_load": {
                "name": "bench_load.Load.time_load",
                "type": "time",
                "unit": "seconds",
                "param_names": ["n_cells"],
                "params": [["50", "200"]],
            },
            "bench_load.track_ops": {
                "name": "bench_load.track_ops",
                "type": "track",
                "unit": "ops",
                "param_names": [],
                "params": [],
            },
            "bench_load.Load.peakmem_load": {
                "name": "bench_load.Load.peakmem_load",
                "type": "peakmemory",
                "unit": "bytes",
                "param_names": ["path"],
                "params": [["'full'", "'naive'"]],
            },
            "version": 2,
        },
    )
    write(root / "box", "machine.json", {"machine": "box", "version": 1})
    columns = ["result", "params", "version", "started_at", "duration"]
    for i, commit in enumerate(["aaaaaaaa11", "bbbbbbbb22", "cccccccc33"]):
        write(
            root / "box",
            f"{commit[:8]}-virtualenv-py3.11.json",
            {
                "commit_hash": commit,
                "env_name": "virtualenv-py3.11",
                "date": 1_700_000_000_000 + i * 86_400_000,
                "params": {"machine": "box"},
                "python": "3.11",
                "requirements": {},
                "env_vars": {},
                "result_columns": columns,
                "results": {
                    "bench_load.Load.time_load": [
                        [0.02 + 0.001 * i, 0.08 + 0.002 * i],
                        [["50", "200"]],
                        "v",
                        1,
                        2,
                    ],
                    "bench_load.track_ops": [[2000 + i], [], "v", 1, 2],
                    "bench_load.broken": [None, [], "v", 1, 2],
                    "bench_load.Load.peakmem_load": [
                        [9e7, 1e8],
                        [["'full'", "'naive'"]],
                        "v",
                        1,
                        2,
                    ],
                },
                "durations": {},
                "version": 2,
            },
        )


# --------------------------------------------------------------------------- helpers


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.srcs.append(values["src"] or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    return run_report_command(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    base = tmp_path_factory.mktemp("report")
    results = base / "results"
    write(results, "sim.json", sim_result(50, path=EVIL_PATH))
    write(results, "sim_200.json", sim_result(200))
    write(results, "profile.json", profile_result())
    write(results, "scale.json", scale_result())
    write(results, "gate.json", gate_result())
    write(results, "broken.json", "{not json")
    write(results, "other.json", {"command": "something-else"})
    write(results, "bad_sim.json", {"command": "sim", "notebook": {}})
    write_asv(base / "asv")
    out = base / "out"
    code = run("--input", str(results), "--asv-results", str(base / "asv"), "--out", str(out))
    return out, (out / "index.html").read_text(encoding="utf-8"), code


# --------------------------------------------------------------------------- tests


def test_every_referenced_image_exists_and_is_png(full_report: tuple[Path, str, int]) -> None:
    out, page, code = full_report
    assert code == 0
    parser = _Images()
    parser.feed(page)
    assert set(parser.srcs) == {
        "latency_timeline.png",
        "ttfc_vs_size.png",
        "scaling_loglog.png",
        "phases.png",
        "asv_history.png",
        "gate_ratios.png",
    }
    for src in parser.srcs:
        assert (out / src).read_bytes()[:8] == PNG_SIGNATURE
    for href in parser.links:  # links to the source JSON are relative and resolve
        assert not href.startswith("/")
        assert (out / href).is_file()


def test_headline_values_appear(full_report: tuple[Path, str, int]) -> None:
    _, page, _ = full_report
    assert "50 / 50" in page  # cells
    assert ">yes<" in page  # converged
    assert "12.0 ms" in page  # the loader's time to first cell
    assert "17.1%" in page  # first cell / full: 0.012 / 0.07
    assert "1.02" in page and "1.93" in page
    assert "linear" in page and "quadratic" in page
    assert "gate" in page and "pass" in page


def test_strings_from_json_are_escaped(full_report: tuple[Path, str, int]) -> None:
    _, page, _ = full_report
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;nb.ipynb" in page


def test_invalid_files_are_skipped_and_listed(
    full_report: tuple[Path, str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, page, _ = full_report
    for name in ("broken.json", "other.json", "bad_sim.json"):
        assert name in page
    assert "unknown command" in page


def test_warning_line_lists_skipped_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "gate.json", gate_result("regression"))
    write(tmp_path, "junk.json", [1, 2, 3])
    assert (
        run(
            "--input",
            str(tmp_path),
            "--asv-results",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
        )
        == 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "junk.json" in err[0]
    page = (tmp_path / "o" / "index.html").read_text(encoding="utf-8")
    assert "gate_ratios.png" in page and "latency_timeline.png" not in page


def test_missing_input_exits_2_with_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        "--input",
        str(tmp_path / "nothing"),
        "--asv-results",
        str(tmp_path / "x"),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no results found in" in err and "nbstream sim --json > results/sim.json" in err
    assert not (tmp_path / "o").exists()


def test_only_invalid_files_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "broken.json", "{")
    code = run(
        "--input", str(tmp_path), "--asv-results", str(tmp_path / "x"), "--out", str(tmp_path / "o")
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results found" in err[0] and "broken.json" in err[0]


def test_schema_validation_reports_the_field(tmp_path: Path) -> None:
    bad = sim_result()
    bad["peers"][0]["converged"] = "yes"
    write(tmp_path, "a.json", bad)
    write(tmp_path, "b.json", sim_result())
    inputs = load_inputs([tmp_path])
    assert [r.label for r in inputs.runs] == ["b"]
    assert inputs.skipped[0][0].name == "a.json"
    assert "peers[0].converged" in inputs.skipped[0][1]


def test_asv_history_reads_v2_results(tmp_path: Path) -> None:
    write_asv(tmp_path)
    history, skipped = load_asv_history(tmp_path)
    assert history is not None and not skipped
    assert [c for c, _ in history.commits] == ["aaaaaaaa11", "bbbbbbbb22", "cccccccc33"]
    by_key = {(s.benchmark, s.params): [p.value for p in s.points] for s in history.series}
    assert by_key[("bench_load.Load.time_load", "n_cells=200")] == [0.08, 0.082, 0.084]
    assert by_key[("bench_load.track_ops", "")] == [2000, 2001, 2002]
    assert not any(s.benchmark == "bench_load.broken" for s in history.series)
    assert by_key[("bench_load.Load.peakmem_load", "path=naive")] == [1e8, 1e8, 1e8]
    assert history.benchmarks["bench_load.Load.peakmem_load"].type == "peakmem"


def test_stale_figures_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out, "gate_ratios.png", "stale")
    write(tmp_path / "r", "profile.json", profile_result())
    assert (
        run("--input", str(tmp_path / "r"), "--asv-results", str(tmp_path / "x"), "--out", str(out))
        == 0
    )
    assert not (out / "gate_ratios.png").exists()
    assert (out / "phases.png").read_bytes()[:8] == PNG_SIGNATURE


def test_gate_error_and_self_test_are_read(tmp_path: Path) -> None:
    write(tmp_path, "gate_err.json", {"command": "gate", "verdict": "error", "error": "<b>git</b>"})

    def run_(condition: str, flagged: bool) -> SelfTestRun:
        ci = (0.95, 1.05)
        return SelfTestRun(condition, 1, flagged, (), 1.0, ci, 1.0, ci, 0.0, (0.0, 0.0), 1.0)

    missed = SelfTestResult(
        1, {"unchanged": 5}, 200, 1.2, (run_("unchanged", False), run_("slowdown_1.5x", False)), 2.0
    )
    write(tmp_path, "self.json", missed.to_json())
    inputs = load_inputs([tmp_path])
    assert not inputs.skipped
    by_cmd = {g.command: g for g in inputs.gates}
    assert by_cmd["gate"].verdict == "error" and not by_cmd["gate"].checks[0].ok
    assert by_cmd["gate-self-test"].verdict == "fail"
    page = render_index(inputs, [], tmp_path, generated_at="2024-01-01T00:00:00+00:00")
    assert "&lt;b&gt;git&lt;/b&gt;" in page and "<b>git" not in page
    assert "slowdown_1.5x detected" in page and "2024-01-01T00:00:00+00:00" in page


def test_asv_only_report_and_single_file_input(tmp_path: Path) -> None:
    write_asv(tmp_path / "asv")
    out = tmp_path / "out"
    args = ("--input", str(tmp_path / "none"), "--asv-results", str(tmp_path / "asv"))
    assert run(*args, "--out", str(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == ["asv_history.png", "index.html"]
    single = write(tmp_path / "r", "one.json", sim_result(50))
    assert run("--input", str(single), "--asv-results", str(tmp_path / "x"), "--out", str(out)) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "asv_history.png" not in page and not (out / "asv_history.png").exists()
    assert "latency_timeline.png" in page and "ttfc_vs_size.png" in page


def test_the_headline_speaks_for_the_default_scenario_not_a_stress_run() -> None:
    """`sim-many.json` sorts before `sim.json`: the 100-peer run used to be the headline."""
    from sim.report.data import NotebookInfo as Info
    from sim.report.data import RunResult
    from sim.report.html import _headline_sim
    from sim.results.sim import PeerRow

    def run(name: str, scenario: str, peers: int) -> RunResult:
        rows = tuple(
            PeerRow(f"p{i}", "normal", None, 0.01, 0.1, True, 1, 1, ()) for i in range(peers)
        )
        return RunResult(
            Path(name),
            name,
            "sim",
            Info("nb", 3, 10, "x"),
            None,
            (),
            rows,  # type: ignore[arg-type]
            scenario=scenario,
        )

    many, default = run("sim-many.json", "many-peers", 100), run("sim.json", "default", 3)
    assert _headline_sim([many, default]) is default
    assert _headline_sim([many, run("x.json", "slow-reader", 2)]).label == "x.json"
