"""Every bench script runs once in its small `--quick` mode through `bench/run_all.py` (`make bench`'s
driver), so none of them rots: each must finish, print its `ratio:` lines and land in the ratio table.
No timing is asserted — on a shared CI machine the figures mean nothing, only that they are produced."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["profile_vs_whylogs", "stream_throughput", "query_latency", "api_load", "scale"]
WHYLOGS_VENV = ROOT / "bench" / ".venv-whylogs" / "bin" / "python"


@pytest.mark.integration
def test_every_bench_script_runs_in_quick_mode_and_reports_its_ratios() -> None:
    # profile_vs_whylogs builds its whylogs virtualenv from PyPI on first use; without one already
    # there it is run alone with --skip-whylogs (no peer, so no ratio line) to keep this test offline.
    scripts = SCRIPTS if WHYLOGS_VENV.exists() else SCRIPTS[1:]
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--only", ",".join(scripts)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-2000:]
    table = out[out.index("ratio > 1:"):]
    assert "FAILED" not in table, table
    for name in scripts:
        assert f"[{name}] ratio: " in out, f"{name} printed no ratio line:\n{out[-4000:]}"
        rows = [line for line in table.splitlines() if line.startswith(name + " ")]
        assert rows and all(line.rstrip().endswith("x") for line in rows), table
    if not WHYLOGS_VENV.exists():
        alone = subprocess.run([sys.executable, str(ROOT / "bench" / "profile_vs_whylogs.py"), "--quick",
                                "--skip-whylogs", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert alone.returncode == 0, alone.stdout[-2000:] + alone.stderr[-2000:]
        assert "[default] driftline:" in alone.stdout


def test_a_failing_script_is_a_failed_row() -> None:
    """run_all's table marks a script without figures as FAILED (checked on its table alone)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run_all
    finally:
        sys.path.remove(str(ROOT / "bench"))
    doc = {"ratios": [{"name": "x vs target", "value": 50.0, "unit": "ms", "versus": "target", "peer": 200.0,
                       "ratio": 4.0}]}
    text = run_all.table([("query_latency", 0, doc, 1.0), ("scale", 1, None, 2.0)])
    assert "4.00x" in text
    assert "scale" in text and "FAILED (exit 1, 0 figures" in text
