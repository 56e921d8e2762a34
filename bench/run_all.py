"""Run every bench script and print one table of ratios (`make bench`; docs/benchmarks.md).

Each script runs as its own process with `--json` (and `--quick` when given here); its output is passed
through as it comes, and its `BENCH-JSON` line (bench/common.py) gives its rows of the table: each
figure against the peer or limit it was measured with in the same run (whylogs, a bare Kafka consumer,
the worst case) or against its target. A script that fails or prints no figures is a FAILED row, and
the exit status is then 1.

    .venv/bin/python bench/run_all.py [--quick] [--only scale,query_latency]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import JSON_PREFIX

HERE = Path(__file__).resolve().parent
# (script, arguments of a full run, arguments of a quick run: the script's own small mode, smaller still
# where that mode alone would take most of CI's budget).
BENCHES: list[tuple[str, list[str], list[str]]] = [
    ("profile_vs_whylogs", ["--mix", "all"], ["--quick"]),
    ("stream_throughput", [], ["--quick", "--events", "5000", "--arrow-events", "50000"]),
    ("query_latency", [], ["--quick"]),
    ("api_load", [], ["--quick"]),
    ("scale", [], ["--quick"]),
]


def run(name: str, args: list[str]) -> tuple[int, dict[str, Any] | None, float]:
    """Run one script, echoing its output; (exit status, its BENCH-JSON document or None, seconds)."""
    started = time.perf_counter()
    doc = None
    with subprocess.Popen([sys.executable, str(HERE / f"{name}.py"), "--json", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=HERE.parent) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(JSON_PREFIX):
                doc = json.loads(line[len(JSON_PREFIX):])
            else:
                print(f"[{name}] {line}", end="", flush=True)
    return proc.returncode, doc, time.perf_counter() - started


def table(results: list[tuple[str, int, dict[str, Any] | None, float]]) -> str:
    """The ratio table: one row per figure, a FAILED row per script without figures or with an error."""
    rows = [("bench", "figure", "value", "against", "ratio")]
    for name, status, doc, seconds in results:
        figures = (doc or {}).get("ratios", [])
        for r in figures:
            unit = r["unit"]
            rows.append((name, r["name"], f"{r['value']:,.1f} {unit}", f"{r['versus']} {r['peer']:,.1f} {unit}",
                         f"{r['ratio']:.2f}x"))
        if status or not figures:
            rows.append((name, f"FAILED (exit {status}, {len(figures)} figures, {seconds:.0f} s)", "", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="each script's small --quick mode (CI)")
    parser.add_argument("--only", default="", help="comma-separated script names (default: all)")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    results = []
    for name, full, quick in BENCHES:
        if only and name not in only:
            continue
        status, doc, seconds = run(name, quick if args.quick else full)
        results.append((name, status, doc, seconds))
    print()
    print("ratio > 1: better than the peer or target it is measured against (for times: peer / value)")
    print(table(results))
    return 0 if all(status == 0 and doc and doc.get("ratios") for _, status, doc, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
