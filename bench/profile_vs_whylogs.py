"""Profile the same generated rows with Driftline and with whylogs ``why.log`` and compare rows/s.

Usage::

    .venv/bin/python bench/profile_vs_whylogs.py            # 1M rows x (10 numeric + 5 string)
    .venv/bin/python bench/profile_vs_whylogs.py --rows 100000

whylogs needs numpy<2, so it runs in its own virtualenv at ``bench/.venv-whylogs`` (created on first
use with pip; needs network access to PyPI) as a subprocess.  The data is generated once,
deterministically, and written to a temporary Parquet file that both sides read; only the profiling
call is timed on each side (Driftline: ``DatasetProfile().track(df)``; whylogs: ``why.log(pandas_df)``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
WHYLOGS_VENV = HERE / ".venv-whylogs"
WHYLOGS_REQS = ["whylogs", "numpy<2", "pandas<2.3", "pyarrow<16"]

WHYLOGS_SCRIPT = r"""
import json, sys, time
import pandas as pd
import whylogs as why
df = pd.read_parquet(sys.argv[1])
why.log(df.head(1000))  # warm-up (imports, resolver setup), not timed
t0 = time.perf_counter()
results = why.log(df)
elapsed = time.perf_counter() - t0
view = results.view()
print(json.dumps({"seconds": elapsed, "rows": len(df), "columns": len(view.get_columns()),
                  "whylogs": why.__version__ if hasattr(why, "__version__") else "?"}))
"""


def generate(rows: int, seed: int = 20240601) -> pl.DataFrame:
    """Deterministic rows: 10 numeric (5 float, 5 int) + 5 string columns with ``in.`` names."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(5):
        cols[f"in.f{i}"] = rng.normal(loc=i, scale=1.0 + i, size=rows)
        cols[f"in.i{i}"] = rng.integers(0, 10 ** (i + 2), size=rows)
    vocab = np.array([f"token_{j:05d}" for j in range(20_000)])
    sizes = [5, 50, 500, 5_000, 20_000]
    for i, k in enumerate(sizes):
        cols[f"in.s{i}"] = vocab[rng.integers(0, k, size=rows)]
    return pl.DataFrame(cols)


def whylogs_python() -> Path:
    py = WHYLOGS_VENV / "bin" / "python"
    probe = [str(py), "-c", "import whylogs, pandas, pyarrow"]
    if not py.exists() or subprocess.run(probe, capture_output=True).returncode:
        print(f"creating {WHYLOGS_VENV} with {' '.join(WHYLOGS_REQS)} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(WHYLOGS_VENV)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *WHYLOGS_REQS], check=True)
    return py


def run_driftline(path: Path) -> dict[str, float]:
    sys.path.insert(0, str(HERE.parent))
    from sketches import DatasetProfile

    df = pl.read_parquet(path)
    DatasetProfile().track(df.head(1000))  # warm-up, not timed
    t0 = time.perf_counter()
    p = DatasetProfile()
    p.track(df)
    elapsed = time.perf_counter() - t0
    assert p.row_count == df.height
    return {"seconds": elapsed, "rows": df.height, "columns": len(p.columns)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--skip-whylogs", action="store_true", help="only time Driftline")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        path = Path(tmp) / "data.parquet"
        generate(args.rows).write_parquet(path)
        print(f"data: {args.rows:,} rows x 15 columns (10 numeric + 5 string) -> {path}", flush=True)

        ours = run_driftline(path)
        ours_rps = ours["rows"] / ours["seconds"]
        print(f"driftline: {ours['seconds']:.3f} s  {ours_rps:,.0f} rows/s  ({ours['columns']} columns)", flush=True)
        if args.skip_whylogs:
            return 0

        py = whylogs_python()
        out = subprocess.run([str(py), "-c", WHYLOGS_SCRIPT, str(path)], capture_output=True, text=True)
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        theirs_rps = theirs["rows"] / theirs["seconds"]
        print(
            f"whylogs {theirs['whylogs']}: {theirs['seconds']:.3f} s  {theirs_rps:,.0f} rows/s  "
            f"({theirs['columns']} columns)"
        )
        ratio = ours_rps / theirs_rps
        print(f"ratio driftline/whylogs: {ratio:.1f}x (target >= 10x) -> {'PASS' if ratio >= 10 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
