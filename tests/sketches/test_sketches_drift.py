"""Drift math against hand/scipy-computed values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon as scipy_js
from scipy.stats import entropy

from sketches import ColumnProfile
from sketches.drift import (
    ColumnDrift,
    column_distance,
    column_drift,
    hellinger,
    jensen_shannon,
    kl_divergence,
    ks_test,
    psi,
)

P = [0.1, 0.2, 0.3, 0.4]
Q = [0.25, 0.25, 0.25, 0.25]


def test_hellinger_known_values() -> None:
    expected = math.sqrt(sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(P, Q, strict=True))) / math.sqrt(2)
    assert hellinger(P, Q) == pytest.approx(expected, rel=1e-12)
    assert hellinger([1, 0], [0, 1]) == pytest.approx(1.0)
    assert hellinger(P, P) == 0.0
    assert hellinger([], []) == 0.0


def test_kl_and_psi_match_scipy_with_clipping() -> None:
    assert kl_divergence(P, Q) == pytest.approx(entropy(P, Q), rel=1e-12)
    expected_psi = sum((a - b) * math.log(a / b) for a, b in zip(P, Q, strict=True))
    assert psi(P, Q) == pytest.approx(expected_psi, rel=1e-12)
    # zero bins are clipped to 1e-7
    p0, q0 = [0.5, 0.5, 0.0], [0.5, 0.25, 0.25]
    e = 1e-7
    assert kl_divergence(p0, q0) == pytest.approx(0.5 * math.log(2) + e * math.log(e / 0.25), rel=1e-12)
    assert psi(p0, q0) == pytest.approx(0.25 * math.log(2) + (e - 0.25) * math.log(e / 0.25), rel=1e-12)
    assert kl_divergence([], []) == 0.0 and psi([], []) == 0.0


def test_jensen_shannon_matches_scipy_natural_log() -> None:
    assert jensen_shannon(P, Q) == pytest.approx(scipy_js(P, Q), rel=1e-12)
    p0, q0 = [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]
    assert jensen_shannon(p0, q0) == pytest.approx(scipy_js(p0, q0), rel=1e-12)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)))
    assert jensen_shannon([], []) == 0.0


def test_vector_length_mismatch() -> None:
    with pytest.raises(ValueError):
        hellinger([0.5, 0.5], [1.0])


def _num(values: np.ndarray) -> ColumnProfile:
    c = ColumnProfile()
    c.track(pl.Series(values))
    return c


def test_column_distance_numeric() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, 20_000)
    b = _num(base)
    same = ColumnProfile.from_bytes(b.to_bytes())
    rebuilt = _num(base)  # KLL compaction is randomized: a rebuilt sketch differs slightly
    for algo in ("hellinger", "psi", "kl_divergence", "jensenshannon"):
        assert column_distance(algo, b, same) == pytest.approx(0.0, abs=1e-12)
        near = column_distance(algo, b, rebuilt)
        far = column_distance(algo, b, _num(rng.normal(2, 1, 20_000)))
        assert near < 0.3 and far > 0.4 and far > 4 * near, (algo, near, far)
    # hand check: small data, sketch is exact; bins min + i*(max-min)/30
    x, y = _num(np.array([0.0, 0.0, 30.0])), _num(np.array([0.0, 30.0, 30.0]))
    p = [0.0, 2 / 3] + [0.0] * 28 + [1 / 3]
    q = [0.0, 1 / 3] + [0.0] * 28 + [2 / 3]
    assert column_distance("hellinger", x, y) == pytest.approx(hellinger(p, q))
    assert column_distance("psi", x, y) == pytest.approx(psi(p, q))


def test_column_distance_empty_rules() -> None:
    full = _num(np.array([1.0, 2.0]))
    assert column_distance("hellinger", full, ColumnProfile()) == 1.0
    assert column_distance("psi", ColumnProfile(), full) == 1.0
    assert column_distance("hellinger", ColumnProfile(), ColumnProfile()) == 0.0
    const = _num(np.array([3.0, 3.0]))
    assert column_distance("hellinger", const, const) == 0.0
    with pytest.raises(ValueError, match="unknown drift algorithm"):
        column_distance("nope", full, full)


def test_column_distance_discrete() -> None:
    a, b = ColumnProfile(), ColumnProfile()
    a.track(pl.Series(["x"] * 6 + ["y"] * 4))
    b.track(pl.Series(["x"] * 5 + ["z"] * 5))
    p, q = [0.6, 0.4, 0.0], [0.5, 0.0, 0.5]
    assert column_distance("hellinger", a, b) == pytest.approx(hellinger(p, q))
    assert column_distance("jensenshannon", a, b) == pytest.approx(scipy_js(p, q))
    assert column_distance("hellinger", a, a) == 0.0
    assert column_distance("hellinger", a, ColumnProfile()) == 1.0
    flags = ColumnProfile()
    flags.track(pl.Series([True, False, True]))
    assert column_distance("hellinger", flags, flags) == 0.0


def test_ks_test() -> None:
    rng = np.random.default_rng(9)
    a, b, c = _num(rng.normal(0, 1, 20_000)), _num(rng.normal(0, 1, 20_000)), _num(rng.normal(1, 1, 20_000))
    same, diff = ks_test(a, b), ks_test(a, c.kll)
    assert not same.reject and same.statistic < 0.05
    assert diff.reject and diff.statistic == pytest.approx(0.38, abs=0.05)
    assert ks_test(a, ColumnProfile()).statistic == 1.0


def test_column_drift_reports_a_missing_side() -> None:
    """The API's form: one side without values is `missing`, not distance 1.0 (column_distance keeps 1.0,
    WhyLabs' convention for analyzers)."""
    full = _num(np.array([1.0, 2.0, 3.0]))
    nulls = ColumnProfile()
    nulls.track(pl.Series([None, None], dtype=pl.Float64))
    words = ColumnProfile()
    words.track(pl.Series(["a", "b"]))
    assert column_drift("hellinger", full, None) == ColumnDrift(None, False, "target")
    assert column_drift("psi", None, full) == ColumnDrift(None, False, "baseline")
    assert column_drift("hellinger", nulls, full) == ColumnDrift(None, False, "baseline")
    assert column_drift("hellinger", full, nulls) == ColumnDrift(None, False, "target")
    assert column_drift("hellinger", words, None) == ColumnDrift(None, True, "target")
    assert column_drift("hellinger", None, words) == ColumnDrift(None, True, "baseline")
    assert column_drift("hellinger", nulls, nulls) == ColumnDrift(0.0, False)
    shifted = _num(np.array([2.0, 3.0, 4.0]))
    assert column_drift("hellinger", full, shifted) == ColumnDrift(column_distance("hellinger", full, shifted), False)
    assert column_drift("hellinger", words, words) == ColumnDrift(0.0, True)
    with pytest.raises(ValueError, match="unknown drift algorithm"):
        column_drift("nope", full, None)
