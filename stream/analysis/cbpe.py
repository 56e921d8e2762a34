"""Label-free performance estimation for binary classifiers (confidence-based, as NannyML's CBPE).

From a reference with scores and labels, :func:`fit` learns a calibration of the score: isotonic
(``scipy.optimize.isotonic_regression``) when it lowers the expected calibration error measured out of
sample (2-fold cross-fit on the reference), the identity otherwise. For a window of events without labels,
each calibrated score ``p`` is the probability that the event is positive, so the expected confusion matrix
is a sum over the window — with ``ŷ = [score >= threshold]``::

    TP = Σ p·ŷ    FP = Σ (1−p)·ŷ    FN = Σ p·(1−ŷ)    TN = Σ (1−p)·(1−ŷ)

Sums merge by addition, so windows, partitions and segments merge like every other metric, and
:func:`estimated_metrics` turns merged sums into ``estimated_accuracy`` / ``_precision`` / ``_recall`` /
``_f1`` / ``_specificity``.

>>> est = fit(np.array([0.1, 0.4, 0.6, 0.9] * 50), np.array([0, 0, 1, 1] * 50), threshold=0.5)
>>> sums = expected_confusion(est, np.array([0.2, 0.8]))
>>> [round(float(v), 3) for v in sums]  # n, TP, FP, FN, TN
[2.0, 1.0, 0.0, 0.0, 1.0]
>>> estimated_metrics(sums)["estimated_accuracy"]
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import isotonic_regression

__all__ = ["ECE_BINS", "Estimator", "estimated_metrics", "expected_calibration_error", "expected_confusion", "fit"]

ECE_BINS = 10
FloatArray = npt.NDArray[np.float64]


class Estimator(BaseModel):
    """A fitted estimator of one score column: its calibration as a step function (`knots` ascending
    scores, `values` the calibrated probability from each knot on) or the identity."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="the score output, `out.<name>`")
    threshold: float = Field(ge=0, le=1)
    calibration: Literal["isotonic", "identity"]
    knots: list[float] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)
    reference_rows: int
    reference_ece: dict[str, float] = Field(description="out-of-sample expected calibration error of each choice")

    def calibrate(self, scores: FloatArray) -> FloatArray:
        if self.calibration == "identity":
            return np.clip(scores, 0.0, 1.0)
        index = np.searchsorted(np.asarray(self.knots), scores, side="right") - 1
        return np.asarray(self.values)[np.clip(index, 0, len(self.values) - 1)]


def _isotonic(scores: FloatArray, labels: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(knots, values) of the isotonic fit of labels on scores (ties pooled first)."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order]
    knots, start, counts = np.unique(s, return_index=True, return_counts=True)
    means = np.add.reduceat(y, start) / counts
    fitted = np.asarray(isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x)
    steps = np.concatenate([[True], np.diff(fitted) != 0])  # a knot only where the value changes
    return knots[steps], fitted[steps]


def _apply(knots: FloatArray, values: FloatArray, scores: FloatArray) -> FloatArray:
    return values[np.clip(np.searchsorted(knots, scores, side="right") - 1, 0, len(values) - 1)]


def expected_calibration_error(p: FloatArray, labels: FloatArray, bins: int = ECE_BINS) -> float:
    """Σ over equal-width probability bins of |mean label − mean p| weighted by the bin's share."""
    which = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(which, minlength=bins).astype(np.float64)
    gap = np.abs(np.bincount(which, labels, bins) - np.bincount(which, p, bins))
    return float(gap.sum() / max(n.sum(), 1.0))


def fit(scores: FloatArray, labels: FloatArray, threshold: float = 0.5, column: str = "out.score",
        seed: int = 0) -> Estimator:
    """Fit the calibration on a reference (finite scores in [0, 1], labels 0/1)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if scores.shape != labels.shape or scores.size < 20:
        raise ValueError("the reference needs at least 20 aligned scores and labels")
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise ValueError("reference scores must be finite probabilities in [0, 1]")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("reference labels must be 0/1 (or booleans)")
    fold = np.random.default_rng(seed).permutation(scores.size) % 2 == 0
    ece = {"identity": expected_calibration_error(np.clip(scores, 0, 1), labels), "isotonic": 0.0}
    for train in (fold, ~fold):
        knots, values = _isotonic(scores[train], labels[train])
        held = ~train
        ece["isotonic"] += expected_calibration_error(_apply(knots, values, scores[held]), labels[held]) / 2
    if ece["isotonic"] < ece["identity"]:
        knots, values = _isotonic(scores, labels)
        return Estimator(column=column, threshold=threshold, calibration="isotonic", knots=knots.tolist(),
                         values=values.tolist(), reference_rows=int(scores.size), reference_ece=ece)
    return Estimator(column=column, threshold=threshold, calibration="identity", reference_rows=int(scores.size),
                     reference_ece=ece)


def expected_confusion(estimator: Estimator, scores: FloatArray) -> FloatArray:
    """[n, TP, FP, FN, TN] expected over `scores` (finite ones; others are left out)."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    p = estimator.calibrate(scores)
    positive = scores >= estimator.threshold
    tp, fp = float(p[positive].sum()), float((1 - p[positive]).sum())
    fn, tn = float(p[~positive].sum()), float((1 - p[~positive]).sum())
    return np.array([scores.size, tp, fp, fn, tn], dtype=np.float64)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def estimated_metrics(sums: Sequence[float] | FloatArray) -> dict[str, float | None]:
    """Estimated metrics from (merged) [n, TP, FP, FN, TN] sums; None where undefined."""
    n, tp, fp, fn, tn = (float(v) for v in sums)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {"estimated_accuracy": _ratio(tp + tn, n), "estimated_precision": precision,
            "estimated_recall": recall, "estimated_f1": f1, "estimated_specificity": _ratio(tn, tn + fp)}
