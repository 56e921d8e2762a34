"""Mergeable model-performance accumulators computed from ground truth.

* :class:`RegressionMetrics` keeps sums (n, Σerr, Σ|err|, Σerr², Σy, Σy²) → MAE, MSE, RMSE, R².
* :class:`ClassificationMetrics` keeps confusion counts keyed by (actual, predicted) label.
  Binary problems use the labels ``"True"``/``"False"`` (positive = ``"True"``); numeric scores
  are turned into predictions with ``score >= threshold``.

>>> import numpy as np
>>> r = RegressionMetrics()
>>> r.track(np.array([1.0, 2.0]), np.array([1.5, 2.0]))
>>> r.summary()["mae"]
0.25
>>> c = ClassificationMetrics()
>>> c.track_pairs({("True", "True"): 3, ("False", "True"): 1})
>>> c.summary()["precision"]
0.75
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ClassificationMetrics", "RegressionMetrics"]

_SEP = "\x1f"


class RegressionMetrics:
    """Sums for regression metrics; ``err = prediction - target``."""

    kind = "regression"

    def __init__(self) -> None:
        self.n = 0
        self.sum_err = 0.0
        self.sum_abs_err = 0.0
        self.sum_sq_err = 0.0
        self.sum_y = 0.0
        self.sum_y2 = 0.0

    def track(self, y: npt.NDArray[np.float64], pred: npt.NDArray[np.float64]) -> None:
        """Add aligned arrays of targets and predictions (finite floats)."""
        err = pred - y
        self.n += int(y.size)
        self.sum_err += float(err.sum())
        self.sum_abs_err += float(np.abs(err).sum())
        self.sum_sq_err += float(np.dot(err, err))
        self.sum_y += float(y.sum())
        self.sum_y2 += float(np.dot(y, y))

    def merge(self, other: RegressionMetrics) -> RegressionMetrics:
        out = RegressionMetrics()
        for k in ("n", "sum_err", "sum_abs_err", "sum_sq_err", "sum_y", "sum_y2"):
            setattr(out, k, getattr(self, k) + getattr(other, k))
        return out

    def summary(self) -> dict[str, Any]:
        n = self.n
        if n == 0:
            return {
                "kind": self.kind,
                "count": 0,
                "mae": None,
                "mse": None,
                "rmse": None,
                "r2": None,
                "mean_error": None,
            }
        mse = self.sum_sq_err / n
        ss_tot = self.sum_y2 - self.sum_y * self.sum_y / n
        r2 = 1.0 - self.sum_sq_err / ss_tot if ss_tot > 0 else None
        return {
            "kind": self.kind,
            "count": n,
            "mae": self.sum_abs_err / n,
            "mse": mse,
            "rmse": math.sqrt(mse),
            "r2": r2,
            "mean_error": self.sum_err / n,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sums": [self.n, self.sum_err, self.sum_abs_err, self.sum_sq_err, self.sum_y, self.sum_y2],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RegressionMetrics:
        sums = d["sums"]
        if not isinstance(sums, list) or len(sums) != 6 or not isinstance(sums[0], int):
            raise ValueError("bad regression sums")
        out = cls()
        out.n = sums[0]
        out.sum_err, out.sum_abs_err, out.sum_sq_err, out.sum_y, out.sum_y2 = (float(x) for x in sums[1:])
        return out


class ClassificationMetrics:
    """Confusion counts ``(actual, predicted) -> n`` (binary or multiclass)."""

    kind = "classification"

    def __init__(self) -> None:
        self.confusion: dict[tuple[str, str], int] = {}

    def track_pairs(self, pairs: Mapping[tuple[str, str], int]) -> None:
        """Add counts per (actual, predicted) label pair (e.g. from one polars group-by)."""
        for k, v in pairs.items():
            self.confusion[k] = self.confusion.get(k, 0) + int(v)

    def merge(self, other: ClassificationMetrics) -> ClassificationMetrics:
        out = ClassificationMetrics()
        out.track_pairs(self.confusion)
        out.track_pairs(other.confusion)
        return out

    @property
    def labels(self) -> list[str]:
        return sorted({a for a, _ in self.confusion} | {p for _, p in self.confusion})

    def summary(self) -> dict[str, Any]:
        labels = self.labels
        n = sum(self.confusion.values())
        matrix = [[self.confusion.get((a, p), 0) for p in labels] for a in labels]
        out: dict[str, Any] = {"kind": self.kind, "count": n, "labels": labels, "confusion_matrix": matrix}
        if n == 0:
            return out | dict.fromkeys(("accuracy", "precision", "recall", "f1", "fpr", "fnr", "tpr", "tnr"))
        out["accuracy"] = sum(self.confusion.get((lab, lab), 0) for lab in labels) / n
        binary = set(labels) <= {"True", "False"}
        per: list[dict[str, float | None]] = []
        for pos in ["True"] if binary else labels:
            tp = self.confusion.get((pos, pos), 0)
            fp = sum(c for (a, p), c in self.confusion.items() if p == pos and a != pos)
            fn = sum(c for (a, p), c in self.confusion.items() if a == pos and p != pos)
            tn = n - tp - fp - fn
            if binary:
                out.update(tp=tp, fp=fp, fn=fn, tn=tn)
            prec = tp / (tp + fp) if tp + fp else None
            rec = tp / (tp + fn) if tp + fn else None
            f1 = 2 * prec * rec / (prec + rec) if prec is not None and rec is not None and prec + rec else None
            per.append(
                {
                    "precision": prec,
                    "recall": rec,
                    "f1": f1,
                    "fpr": fp / (fp + tn) if fp + tn else None,
                    "fnr": fn / (fn + tp) if fn + tp else None,
                    "tpr": rec,
                    "tnr": tn / (tn + fp) if tn + fp else None,
                }
            )
        for key in ("precision", "recall", "f1", "fpr", "fnr", "tpr", "tnr"):
            vals = [p[key] for p in per if p[key] is not None]
            out[key] = (sum(v for v in vals if v is not None) / len(vals)) if vals else None
        out["average"] = "binary" if binary else "macro"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "confusion": {f"{a}{_SEP}{p}": c for (a, p), c in self.confusion.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassificationMetrics:
        conf = d["confusion"]
        if not isinstance(conf, dict):
            raise ValueError("bad confusion counts")
        out = cls()
        for k, v in conf.items():
            a, sep, p = k.partition(_SEP)
            if not sep or not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError("bad confusion entry")
            out.confusion[(a, p)] = v
        return out
