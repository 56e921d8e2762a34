"""Profile the same generated rows with Driftline and with whylogs ``why.log`` and compare rows/s.

Usage::

    .venv/bin/python bench/profile_vs_whylogs.py                  # default mix: 1M rows x (10 numeric + 5 string)
    .venv/bin/python bench/profile_vs_whylogs.py --mix all        # the four mixes, one ratio each
    .venv/bin/python bench/profile_vs_whylogs.py --mix strings --rows 100000

Mixes (``--rows`` is the row count of the 15-column mixes; ``wide`` keeps the same number of cells):

* ``default``: 5 normal floats, 5 ints (10^2 .. 10^6 ranges), 5 strings (5 .. 20k vocabularies);
* ``strings``: 12 string columns drawn from 50k-value vocabularies (uniform and Zipf), 3 floats;
* ``wide``: 200 columns (100 floats, 60 ints, 40 strings of 1k-value vocabularies);
* ``floats``: 15 high-cardinality floats with 10% nulls and about 1% NaN / +-inf.

whylogs needs numpy<2, so it runs in its own virtualenv at ``bench/.venv-whylogs`` (created on first
use with pip; needs network access to PyPI) as a subprocess.  The data is generated once per mix,
deterministically, and written to a temporary Parquet file that both sides read; only the profiling
call is timed on each side (Driftline: ``DatasetProfile().track(df)``; whylogs: ``why.log(pandas_df)``),
the faster of two calls over the whole data on each side (the first-call ratio is printed too),
in the same run, so the ratio is meaningful on a shared machine even when the absolute rates are not.
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
from typing import Any

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
why.log(df.head(1000))  # imports, resolver setup: not timed
t0 = time.perf_counter()
why.log(df)
cold = time.perf_counter() - t0
t0 = time.perf_counter()
results = why.log(df)
elapsed = time.perf_counter() - t0
view = results.view()
print(json.dumps({"seconds": min(cold, elapsed), "cold_seconds": cold, "rows": len(df),
                  "columns": len(view.get_columns()),
                  "whylogs": why.__version__ if hasattr(why, "__version__") else "?"}))
"""


MIXES: tuple[str, ...] = ("default", "strings", "wide", "floats")
TARGET = 20.0


def _vocab(size: int, prefix: str = "token") -> np.ndarray:
    return np.array([f"{prefix}_{j:06d}" for j in range(size)])


def _zipf_codes(rng: np.random.Generator, size: int, rows: int) -> np.ndarray:
    """Codes below ``size`` with a Zipf-like skew (a few values frequent, a long tail)."""
    return (rng.zipf(1.3, size=rows) - 1) % size


def generate(rows: int, seed: int = 20240601, mix: str = "default") -> pl.DataFrame:
    """Deterministic rows of one mix (see the module docstring), every column ``in.``-prefixed."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    if mix == "default":
        for i in range(5):
            cols[f"in.f{i}"] = rng.normal(loc=i, scale=1.0 + i, size=rows)
            cols[f"in.i{i}"] = rng.integers(0, 10 ** (i + 2), size=rows)
        vocab = _vocab(20_000)
        for i, k in enumerate([5, 50, 500, 5_000, 20_000]):
            cols[f"in.s{i}"] = vocab[rng.integers(0, k, size=rows)]
    elif mix == "strings":
        vocab = _vocab(50_000, "city-名前")  # non-ASCII: the UTF-8 bytes are what gets hashed
        for i in range(12):
            codes = _zipf_codes(rng, 50_000, rows) if i % 2 else rng.integers(0, 50_000, size=rows)
            cols[f"in.s{i}"] = vocab[codes]
        for i in range(3):
            cols[f"in.f{i}"] = rng.normal(size=rows)
    elif mix == "wide":
        vocab = _vocab(1_000)
        for i in range(100):
            cols[f"in.f{i:03d}"] = rng.normal(loc=i, size=rows)
        for i in range(60):
            cols[f"in.i{i:03d}"] = rng.integers(0, 10 ** (2 + i % 5), size=rows)
        for i in range(40):
            cols[f"in.s{i:03d}"] = vocab[rng.integers(0, 1_000, size=rows)]
    elif mix == "floats":
        for i in range(15):
            x = rng.lognormal(mean=i % 4, sigma=1.5, size=rows) * rng.choice([-1.0, 1.0], size=rows)
            odd = rng.random(rows)
            x[odd < 0.005] = np.nan
            x[(odd >= 0.005) & (odd < 0.0075)] = np.inf
            x[(odd >= 0.0075) & (odd < 0.01)] = -np.inf
            cols[f"in.x{i:02d}"] = pl.Series(x).set(pl.Series(rng.random(rows) < 0.10), None)
    else:
        raise ValueError(f"unknown mix {mix!r}; expected one of {MIXES}")
    return pl.DataFrame(cols)


def mix_rows(mix: str, rows: int) -> int:
    """Rows of ``mix`` for a ``--rows`` budget: the 200-column mix keeps the 15-column mixes' cell count."""
    return max(1, rows * 15 // 200) if mix == "wide" else rows


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
    DatasetProfile().track(df.head(1000))  # imports: not timed
    t0 = time.perf_counter()
    DatasetProfile().track(df)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = DatasetProfile()
    p.track(df)
    elapsed = time.perf_counter() - t0
    assert p.row_count == df.height
    return {"seconds": min(cold, elapsed), "cold_seconds": cold, "rows": df.height, "columns": len(p.columns)}


def run_whylogs(py: Path, path: Path) -> dict[str, Any]:
    out = subprocess.run([str(py), "-c", WHYLOGS_SCRIPT, str(path)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"whylogs failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_mix(mix: str, rows: int, tmp: Path, whylogs: Path | None) -> float | None:
    """Time one mix on both sides; returns the Driftline/whylogs ratio (``None`` without whylogs).

    Each side profiles the whole data twice and the faster call counts (the same rule for both:
    on a shared machine a load spike hits one call, not both; the first large call also pays for
    fresh memory pages); the first-call ("cold") ratio is printed too.
    """
    n = mix_rows(mix, rows)
    path = tmp / f"{mix}.parquet"
    df = generate(n, mix=mix)
    df.write_parquet(path)
    print(f"[{mix}] data: {n:,} rows x {df.width} columns -> {path}", flush=True)
    ours = run_driftline(path)
    ours_rps = ours["rows"] / ours["seconds"]
    print(f"[{mix}] driftline: {ours['seconds']:.3f} s  {ours_rps:,.0f} rows/s  ({ours['columns']} columns; "
          f"first call {ours['cold_seconds']:.3f} s)", flush=True)
    if whylogs is None:
        return None
    theirs = run_whylogs(whylogs, path)
    theirs_rps = theirs["rows"] / theirs["seconds"]
    print(f"[{mix}] whylogs {theirs['whylogs']}: {theirs['seconds']:.3f} s  {theirs_rps:,.0f} rows/s  "
          f"({theirs['columns']} columns; first call {theirs['cold_seconds']:.3f} s)", flush=True)
    ratio = ours_rps / theirs_rps
    print(f"[{mix}] first-call ratio: {theirs['cold_seconds'] / ours['cold_seconds']:.1f}x", flush=True)
    print(f"[{mix}] ratio driftline/whylogs: {ratio:.1f}x (target >= {TARGET:.0f}x) -> "
          f"{'PASS' if ratio >= TARGET else 'FAIL'}", flush=True)
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the 15-column mixes (wide: same cells)")
    ap.add_argument("--mix", choices=(*MIXES, "all"), default="default")
    ap.add_argument("--skip-whylogs", action="store_true", help="only time Driftline")
    ap.add_argument("--quick", action="store_true", help="small run for CI (20k rows)")
    ap.add_argument("--json", action="store_true", help="also print one machine-readable BENCH-JSON line")
    args = ap.parse_args()
    if args.quick:
        args.rows = min(args.rows, 20_000)
    mixes = MIXES if args.mix == "all" else (args.mix,)
    whylogs = None if args.skip_whylogs else whylogs_python()
    ratios: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        for mix in mixes:
            ratios[mix] = bench_mix(mix, args.rows, Path(tmp), whylogs)
    if whylogs is None:
        return 0
    print("\nmix       ratio (same run)")
    for mix, ratio in ratios.items():
        print(f"{mix:<9} {ratio:6.1f}x  {'PASS' if ratio is not None and ratio >= TARGET else 'FAIL'}")
    from common import Ratio, report  # bench/ is on the path when run as a script (not when imported)

    report("profile_vs_whylogs", [Ratio(f"profiling {mix}: Driftline/whylogs rows/s (same run)", r, "x", "target",
                                        TARGET) for mix, r in ratios.items() if r is not None], args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
