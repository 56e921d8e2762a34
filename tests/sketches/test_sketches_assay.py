"""Wallaroo-style assays."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from sketches import ColumnProfile
from sketches.assay import AssayBaseline, assay_status, score

BASE = [1.0, 2.0, 3.0, 4.0]


def test_psi_tiny_case_by_hand() -> None:
    b = AssayBaseline.from_values(BASE, bin_mode="equal", num_bins=2)
    assert b.edges == [-math.inf, 1.0, 2.5, 4.0, math.inf]
    assert b.proportions == [0.0, 0.5, 0.5, 0.0]
    r = score(b, [1.0, 1.5, 2.0, 3.0])
    assert r.window_proportions == [0.0, 0.75, 0.25, 0.0]
    expected = [0.0, 0.25 * math.log(1.5), -0.25 * math.log(0.5), 0.0]
    assert r.scores == pytest.approx(expected)
    assert r.score == pytest.approx(sum(expected))
    assert r.baseline_stats.mean == 2.5 and r.baseline_stats.median == 2.5
    assert r.window_stats.count == 4 and r.window_stats.std == pytest.approx(np.std([1.0, 1.5, 2.0, 3.0]))
    md = score(b, [1.0, 1.5, 2.0, 3.0], metric="MaxDiff")
    assert md.score == pytest.approx(0.25)
    sd = score(b, [1.0, 1.5, 2.0, 3.0], metric="SumDiff")
    assert sd.score == pytest.approx(0.25)


def test_outlier_bins() -> None:
    b = AssayBaseline.from_values(BASE, bin_mode="equal", num_bins=2)
    r = score(b, [0.0, 4.0, 5.0, 6.0], metric="MaxDiff")
    assert r.window_proportions == [0.25, 0.0, 0.25, 0.5]
    e = 1e-7
    psi_r = score(b, [0.0, 4.0, 5.0, 6.0])
    assert psi_r.scores[0] == pytest.approx((0.25 - e) * math.log(0.25 / e))


def test_quantile_edges() -> None:
    vals = np.arange(1, 101, dtype=float)
    b = AssayBaseline.from_values(vals, num_bins=4)
    assert b.edges[1:-1] == pytest.approx(np.quantile(vals, [0, 0.25, 0.5, 0.75, 1.0]).tolist())
    assert b.proportions == pytest.approx([0.0, 0.25, 0.25, 0.25, 0.25, 0.0])
    assert score(b, vals).score == pytest.approx(0.0)


def test_provided_edges() -> None:
    b = AssayBaseline.from_values(BASE, num_bins=2, provided_edges=[2.0, 10.0])
    assert b.bin_mode == "provided"
    assert b.edges == [-math.inf, 1.0, 2.0, 10.0, math.inf]  # baseline min prepended
    b2 = AssayBaseline.from_values(BASE, num_bins=2, edges=[0.0, 2.0, 3.0])
    assert b2.edges == [-math.inf, 0.0, 2.0, 3.0, math.inf]
    assert b2.proportions == [0.0, 0.25, 0.5, 0.25]
    with pytest.raises(ValueError):
        AssayBaseline.from_values(BASE, num_bins=2, provided_edges=[1.0])


def test_cumulative_aggregation() -> None:
    b = AssayBaseline.from_values(BASE, bin_mode="equal", num_bins=2, aggregation="cumulative")
    r = score(b, [1.0, 1.5, 2.0, 3.0], metric="MaxDiff")
    assert r.baseline_proportions == [0.0, 0.5, 1.0, 1.0]
    assert r.window_proportions == [0.0, 0.75, 1.0, 1.0]
    assert r.scores == pytest.approx([0.0, 0.25, 0.0, 0.0])


def test_weights() -> None:
    b = AssayBaseline.from_values(BASE, bin_mode="equal", num_bins=2, weights=[0, 3, 1, 0])
    r = score(b, [1.0, 1.5, 2.0, 3.0], metric="SumDiff")
    # weights normalised to average 1: [0, 3, 1, 0] * 4/4
    assert r.scores == pytest.approx([0.0, 0.75, 0.25, 0.0])
    assert r.score == pytest.approx(0.5) and r.weighted
    with pytest.raises(ValueError):
        AssayBaseline.from_values(BASE, num_bins=2, weights=[1, 1])


def test_from_sketch_matches_values() -> None:
    rng = np.random.default_rng(0)
    base, win = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 5000)
    # KLL compaction is randomized; k=800 keeps its rank error (~0.5%) well inside the tolerance.
    cb, cw = ColumnProfile(kll_k=800), ColumnProfile(kll_k=800)
    cb.track(pl.Series(base))
    cw.track(pl.Series(win))
    exact = score(AssayBaseline.from_values(base), win)
    approx = score(AssayBaseline.from_values(cb), cw)
    assert approx.score == pytest.approx(exact.score, abs=0.05)
    assert approx.baseline_stats.mean == pytest.approx(base.mean())
    assert approx.window_stats.std == pytest.approx(win.std())
    assert approx.scores[0] == pytest.approx(0.0, abs=1e-3)


def test_status() -> None:
    assert assay_status(0.05, 0.1, 0.25) == "OK"
    assert assay_status(0.2, 0.1, 0.25) == "Warning"
    assert assay_status(0.3, 0.1, 0.25) == "Alert"
    assert assay_status(0.25, 0.1, 0.25) == "Warning"
    assert assay_status(0.3, None, 0.5) == "OK"
