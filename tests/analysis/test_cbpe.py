"""CBPE: calibration choice, estimates against realized accuracy under covariate shift, mergeable sums
through the worker's batch path (decoded frames → window states), and replays counted once."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from sketches.segments import OVERALL_SEGMENT
from stream.analysis.cbpe import Estimator, estimated_metrics, expected_confusion, fit
from stream.config.models import ConfigSnapshot, ModelConfig, ModelState
from stream.config.validations import ValidationSet
from stream.events.decode import RawMessage, decode_messages
from stream.worker.plan import WindowTable, apply_plan, plan_batch
from stream.worker.windows import WindowKey

HOUR = 3_600_000
T0 = 1_764_000_000_000 // HOUR * HOUR
SHIFTS = [(5.0, 2.0), (2.0, 5.0), (1.0, 1.0)]  # score distributions of three hours (the reference: Beta(2, 2))


def calibrated(rng: np.random.Generator, a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    scores = rng.beta(a, b, n)
    return scores, (rng.random(n) < scores).astype(float)


def realized_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> float:
    return float(((scores >= threshold) == labels.astype(bool)).mean())


def test_calibration_is_identity_for_calibrated_scores_and_isotonic_when_it_helps() -> None:
    rng = np.random.default_rng(0)
    assert fit(*calibrated(rng, 2, 2, 20_000)).calibration == "identity"
    scores = rng.random(20_000)
    labels = (rng.random(20_000) < scores**2).astype(float)  # overconfident: P(y=1) = score²
    est = fit(scores, labels)
    assert est.calibration == "isotonic" and est.reference_ece["isotonic"] < est.reference_ece["identity"]
    test = rng.random(5000)
    truth = rng.random(5000) < test**2
    estimate = estimated_metrics(expected_confusion(est, test))["estimated_accuracy"]
    assert estimate is not None and abs(estimate - realized_accuracy(test, truth)) < 0.02


@pytest.mark.parametrize(("scores", "labels", "message"), [
    ([0.5] * 10, [1] * 10, "at least 20"),
    ([1.5] * 30, [1] * 30, "probabilities in [0, 1]"),
    ([0.5] * 30, [2] * 30, "labels must be 0/1"),
])
def test_bad_references_are_rejected(scores: list[float], labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        fit(np.array(scores), np.array(labels, dtype=float))


def _messages(rng: np.random.Generator, n: int) -> tuple[list[RawMessage], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """n events per hour for each shift, scores only (labels held back, per hour), cities as segments."""
    msgs, truth = [], {}
    offset = 0
    for h, (a, b) in enumerate(SHIFTS):
        scores, labels = calibrated(rng, a, b, n)
        truth[T0 + h * HOUR] = (scores, labels)
        cities = rng.choice(["Boston", "Paris", "Lima"], n)
        for i in range(n):
            event: dict[str, Any] = {"model": "m", "timestamp": T0 + h * HOUR + i * (HOUR // n),
                                     "inputs": {"city": str(cities[i])}, "outputs": {"score": float(scores[i])}}
            msgs.append(RawMessage(orjson.dumps(event), 0, offset, 0, []))
            offset += 1
    return msgs, truth


def _fold(table: dict[str, str], msgs: list[RawMessage], estimator: Estimator) -> WindowTable:
    model = ModelConfig(name="m", segment_keys=["in.city"])
    snapshot = ConfigSnapshot(version=1, models={"m": ModelState(model=model, validations=ValidationSet(), version=1)})
    windows = WindowTable(table)
    decoded = decode_messages(msgs)
    plan = plan_batch(decoded.frame, snapshot, windows.watermarks(), windows.known_segments(), carried=decoded.carried)
    apply_plan(windows, plan, snapshot, {}, estimators={"m": [estimator]})
    return windows


def test_estimates_per_window_under_covariate_shift_merge_from_segments_and_ignore_replays() -> None:
    rng = np.random.default_rng(7)
    estimator = fit(*calibrated(rng, 2, 2, 20_000), column="out.score")
    msgs, truth = _messages(rng, 4000)
    table: dict[str, str] = {}
    windows = _fold(table, msgs, estimator)
    for start, (scores, labels) in truth.items():
        whole = np.zeros(5)
        merged = np.zeros(5)
        for text in windows.window_keys():
            key = WindowKey.decode(text)
            state = windows.get(text)
            if key.granularity != "hourly" or key.window_start != start or state is None:
                continue
            sums = np.array(state.estimates["out.score"])
            if key.segment == OVERALL_SEGMENT:
                whole += sums
            else:
                merged += sums
        estimate = estimated_metrics(whole)["estimated_accuracy"]
        assert whole[0] == len(scores) and estimate is not None
        assert abs(estimate - realized_accuracy(scores, labels)) < 0.02, (start, estimate)
        assert np.allclose(merged, whole)  # the segments merge into the whole window
        assert estimated_metrics(merged) == pytest.approx(estimated_metrics(whole))
    before = {k: windows.get(k).estimates for k in windows.window_keys()}  # type: ignore[union-attr]
    windows = _fold(table, msgs[:5000], estimator)  # a replay of messages already folded in
    assert {k: windows.get(k).estimates for k in windows.window_keys()} == before  # type: ignore[union-attr]
