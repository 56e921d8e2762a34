"""Model performance from ground truth on the running product: events carry outputs and their
`ground_truth`; the worker pairs `gt.X` with `out.X` per hourly window, and WhyLabs analyzers on the
performance metrics (`classification.*`, `regression.*`, dataset target) report their exact values
through `/analyzer-results`; `GET /performance` answers each hour's whole summary (confusion counts
and matrix, every metric) and, rolled up over the range, the summary of all events merged. A fixed
analyzer on `classification.accuracy` flags exactly the hour whose accuracy is below its threshold,
and its EVERY_ANOMALY monitor sends exactly that one alert. A multiclass model (macro averages)
whose events share the worker's batches with another model's keeps its own columns and its own
metrics (its windows hold only its own `gt.species`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import HOUR, Stack, now_hour
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration
ACCURACY_FLOOR = 0.7
# Per hour (oldest first): binary confusion counts (tp, fp, fn, tn) of `approved`, and the errors
# (pred - y) of `price`, cycled over the hour's events; accuracy 0.8, 0.45 (below 0.7), 0.9.
CONFUSION = [(8, 2, 2, 8), (4, 6, 5, 5), (9, 1, 1, 9)]
ERRORS = [[0.25, -0.5, 1.0, -0.75, 0.0], [2.0, -1.5, 0.5, -3.0, 1.25], [0.0, 0.25, -0.25, 0.5, 0.0]]
# Multiclass `species` (another model): (actual, predicted) → count per hour.
SPECIES = [{("cat", "cat"): 5, ("cat", "dog"): 1, ("dog", "dog"): 4, ("dog", "owl"): 2, ("owl", "owl"): 3,
            ("owl", "cat"): 1},
           {("cat", "cat"): 2, ("cat", "owl"): 3, ("dog", "dog"): 6, ("owl", "owl"): 1, ("owl", "dog"): 4}]
CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "fpr", "fnr", "tpr", "tnr")
REGRESSION = ("mae", "mse", "rmse", "r2")


def _binary_pairs(tp: int, fp: int, fn: int, tn: int) -> list[tuple[bool, bool]]:
    """(actual, predicted) per event."""
    return [(True, True)] * tp + [(False, True)] * fp + [(True, False)] * fn + [(False, False)] * tn


def _binary_expected(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"accuracy": (tp + tn) / (tp + fp + fn + tn), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "fpr": fp / (fp + tn), "fnr": fn / (fn + tp),
            "tpr": recall, "tnr": tn / (tn + fp)}


def _macro_expected(pairs: Mapping[tuple[str, str], int]) -> dict[str, float]:
    """Accuracy and the macro averages (over the labels where each is defined) of a multiclass matrix."""
    labels = sorted({a for a, _ in pairs} | {p for _, p in pairs})
    n = sum(pairs.values())
    per: dict[str, list[float]] = {k: [] for k in CLASSIFICATION[1:]}
    for pos in labels:
        tp = pairs.get((pos, pos), 0)
        fp = sum(c for (a, p), c in pairs.items() if p == pos and a != pos)
        fn = sum(c for (a, p), c in pairs.items() if a == pos and p != pos)
        tn = n - tp - fp - fn
        prec = tp / (tp + fp) if tp + fp else None
        rec = tp / (tp + fn) if tp + fn else None
        values = {"precision": prec, "recall": rec, "tpr": rec,
                  "f1": 2 * prec * rec / (prec + rec) if prec is not None and rec is not None and prec + rec else None,
                  "fpr": fp / (fp + tn) if fp + tn else None, "fnr": fn / (fn + tp) if fn + tp else None,
                  "tnr": tn / (tn + fp) if tn + fp else None}
        for k, v in values.items():
            if v is not None:
                per[k].append(v)
    return {"accuracy": sum(pairs.get((lab, lab), 0) for lab in labels) / n,
            **{k: sum(v) / len(v) for k, v in per.items()}}


def _regression_expected(ys: list[float], preds: list[float]) -> dict[str, float]:
    # Every value, error and square here is a small multiple of 1/16: sums are exact in any order.
    n = len(ys)
    errs = [p - y for y, p in zip(ys, preds, strict=True)]
    sse = sum(e * e for e in errs)
    sum_y, sum_y2 = sum(ys), sum(y * y for y in ys)
    mse = sse / n
    return {"mae": sum(abs(e) for e in errs) / n, "mse": mse, "rmse": math.sqrt(mse),
            "r2": 1.0 - sse / (sum_y2 - sum_y * sum_y / n)}


def _classification_summary(pairs: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """`ClassificationMetrics.summary()` of these (actual, predicted) label counts: binary for the
    labels "True"/"False" (positive "True", with its confusion counts), else macro averages."""
    labels = sorted({a for a, _ in pairs} | {p for _, p in pairs})
    out: dict[str, Any] = {"kind": "classification", "count": sum(pairs.values()), "labels": labels,
                           "confusion_matrix": [[pairs.get((a, p), 0) for p in labels] for a in labels]}
    if set(labels) <= {"True", "False"}:
        tp, fp = pairs.get(("True", "True"), 0), pairs.get(("False", "True"), 0)
        fn, tn = pairs.get(("True", "False"), 0), pairs.get(("False", "False"), 0)
        return out | {"tp": tp, "fp": fp, "fn": fn, "tn": tn, **_binary_expected(tp, fp, fn, tn), "average": "binary"}
    return out | {**_macro_expected(pairs), "average": "macro"}


def _regression_summary(ys: list[float], preds: list[float]) -> dict[str, Any]:
    """`RegressionMetrics.summary()` of these targets and predictions."""
    return {"kind": "regression", "count": len(ys), **_regression_expected(ys, preds),
            "mean_error": sum(p - y for y, p in zip(ys, preds, strict=True)) / len(ys)}


def _labels(pairs: list[tuple[Any, Any]]) -> Counter[tuple[str, str]]:
    """(actual, predicted) per event → count per label pair (booleans are the labels "True"/"False")."""
    return Counter((str(a), str(p)) for a, p in pairs)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _performance(stack: Stack, model: str, start: int, end: int, *,
                 rollup: bool = False) -> dict[tuple[int, str], tuple[int, dict[str, Any]]]:
    """`GET /performance`: (window start, segment) → (row count, metrics per `gt.X`)."""
    r = stack.client().get(f"/v1/models/{model}/performance",
                           params={"start": start, "end": end, "rollup": str(rollup).lower()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["granularity"], body["rollup"]) == (model, "hourly", rollup)
    assert (_ms(body["start"]), _ms(body["end"])) == (start, end)
    return {(_ms(w["window_start"]), w["segment"]): (w["row_count"], w["performance"]) for w in body["windows"]}


def _analyzers(prefix: str, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One fixed analyzer per metric, bounds no value reaches: its results carry the metric's value."""
    return [{"id": f"{prefix}-{k}", "targetMatrix": {"type": "dataset"},
             "config": {"type": "fixed", "metric": f"{prefix}.{k}", "upper": 1e9}} for k in keys]


def _hour_rows(stack: Stack, model: str, start: int, end: int) -> dict[int, int]:
    r = stack.client().get(f"/v1/models/{model}/profiles", params={"start": start, "end": end})
    if r.status_code == 404:  # the model's first events are still on their way
        return {}
    assert r.status_code == 200, r.text
    return {_ms(w["window_start"]): w["row_count"] for w in r.json()["windows"]}


def _results(stack: Stack, model: str, start: int, count: int) -> list[dict[str, Any]] | None:
    r = stack.client().get(f"/v1/models/{model}/analyzer-results", params={"start": start, "page_size": 1000})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items if len(items) >= count else None


def _wait_stored(stack: Stack, model: str, first: int, want: dict[int, int]) -> None:
    """Every event is in its stored hourly profile before the analyzers exist: each result is
    computed once, on the whole hour."""
    eventually(lambda: _hour_rows(stack, model, first, first + 3 * HOUR) == want, timeout=90, interval=0.5)


def _columns(stack: Stack, model: str, first: int) -> set[str]:
    r = stack.client().get(f"/v1/models/{model}/profiles", params={"start": first, "end": first + 3 * HOUR})
    assert r.status_code == 200, r.text
    return {c for w in r.json()["windows"] for c in w["columns"]}


def _put_doc(stack: Stack, model: str, analyzers: list[dict[str, Any]], monitors: list[dict[str, Any]]) -> None:
    doc = {"id": f"perf-{model}", "schemaVersion": 1, "orgId": "org-0", "datasetId": model, "granularity": "hourly",
           "analyzers": analyzers, "monitors": monitors}
    r = stack.client().put(f"/v1/models/{model}/monitor-config", json=doc)
    assert r.status_code == 200, r.text


def _values(stack: Stack, model: str, first: int, want: dict[tuple[str, int], float]) -> list[dict[str, Any]]:
    """The analyzer results once every expected one is stored; their values must be exactly `want`."""
    try:
        items = eventually(lambda: _results(stack, model, first, len(want)), timeout=60, interval=0.5) or []
    except AssertionError:
        items = _results(stack, model, first, 0) or []
    got = {(r["analyzer_id"], r["dataset_timestamp"]): r["value"] for r in items}
    assert got == want  # exact: the same arithmetic on the same counts and on sums that are exact
    assert all(r["segment"] == "" and r["column"] == "" and r["failure"] is None for r in items)
    return items


def test_binary_and_regression_metrics_and_accuracy_analyzer(stack: Stack, model: str) -> None:
    assert stack.client().post("/v1/models", json={"name": model}).status_code == 201
    first = now_hour() - 3 * HOUR
    hours = [first + h * HOUR for h in range(3)]
    events: list[dict[str, Any]] = []
    expected: dict[tuple[str, int], float] = {}  # (analyzer id, hour) → value
    windows: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}  # /performance per hour
    all_pairs: Counter[tuple[str, str]] = Counter()
    all_ys: list[float] = []
    all_preds: list[float] = []
    for h, (start, counts, errors) in enumerate(zip(hours, CONFUSION, ERRORS, strict=True)):
        pairs = _binary_pairs(*counts)
        ys = [10.0 + 0.5 * ((i * 7 + h) % 23) for i in range(len(pairs))]
        preds = [y + errors[i % len(errors)] for i, y in enumerate(ys)]
        for i, ((actual, predicted), y, pred) in enumerate(zip(pairs, ys, preds, strict=True)):
            events.append({"model": model, "timestamp": start + i * (HOUR // len(pairs)), "event_id": f"{h}-{i}",
                           "inputs": {"x": float(i)}, "outputs": {"approved": predicted, "price": pred},
                           "ground_truth": {"approved": actual, "price": y}})
        for k, v in _binary_expected(*counts).items():
            expected[(f"classification-{k}", start)] = v
        for k, v in _regression_expected(ys, preds).items():
            expected[(f"regression-{k}", start)] = v
        expected[("accuracy-floor", start)] = _binary_expected(*counts)["accuracy"]
        windows[(start, "")] = (len(pairs), {"gt.approved": _classification_summary(_labels(pairs)),
                                             "gt.price": _regression_summary(ys, preds)})
        all_pairs += _labels(pairs)
        all_ys += ys
        all_preds += preds
    stack.produce(events)
    _wait_stored(stack, model, first, {start: sum(CONFUSION[h]) for h, start in enumerate(hours)})
    assert _columns(stack, model, first) == {"in.x", "out.approved", "out.price", "gt.approved", "gt.price"}
    # Every hour's whole summary, exactly (the same arithmetic on the same counts and exact sums).
    assert windows[(hours[1], "")][1]["gt.approved"]["accuracy"] == 9 / 20
    assert _performance(stack, model, first, first + 3 * HOUR) == windows
    # Rolled up over the range: the summary of all events merged (counts and sums add exactly).
    assert sum(all_pairs.values()) == len(events) == 60 and all_pairs[("True", "True")] == 8 + 4 + 9
    assert _performance(stack, model, first, first + 3 * HOUR, rollup=True) == {
        (first, ""): (60, {"gt.approved": _classification_summary(all_pairs),
                           "gt.price": _regression_summary(all_ys, all_preds)})}

    _put_doc(stack, model, [
        {"id": "accuracy-floor", "targetMatrix": {"type": "dataset"},
         "config": {"type": "fixed", "metric": "classification.accuracy", "lower": ACCURACY_FLOOR}},
        *_analyzers("classification", CLASSIFICATION), *_analyzers("regression", REGRESSION)],
        [{"id": "accuracy-every", "analyzerIds": ["accuracy-floor"], "schedule": {"type": "immediate"},
          "severity": 2, "mode": {"type": "EVERY_ANOMALY"}}])
    items = _values(stack, model, first, expected)
    flagged = [r for r in items if r["anomaly"]]
    assert [(r["analyzer_id"], r["dataset_timestamp"]) for r in flagged] == [("accuracy-floor", hours[1])]
    assert flagged[0]["metric"] == "classification.accuracy" and flagged[0]["lower"] == ACCURACY_FLOOR
    assert flagged[0]["value"] == 9 / 20 < ACCURACY_FLOOR

    alerts = stack.alerts(lambda a: a["model"] == model, until=1, settle=3 * 2.0 + 1)  # and three passes more
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["source"] == "monitor" and alert["monitor_id"] == "accuracy-every"
    assert alert["mode"] == "EVERY_ANOMALY" and alert["dataset_timestamp"] == hours[1]
    assert [(a["analyzer_id"], a["metric"], a["value"], a["dataset_timestamp"]) for a in alert["anomalies"]] == [
        ("accuracy-floor", "classification.accuracy", 9 / 20, hours[1])]


def test_multiclass_metrics_of_a_model_sharing_batches_with_another(stack: Stack, model: str) -> None:
    """A multiclass model whose events share the worker's batches with another model's (one
    partition, interleaved, as on any shared events topic): each model's profiles hold only its own
    columns, and its macro-averaged metrics are its own."""
    neighbour = f"{model}-nb"
    for name in (model, neighbour):
        assert stack.client().post("/v1/models", json={"name": name}).status_code == 201
    first = now_hour() - 3 * HOUR
    hours = [first + h * HOUR for h in range(len(SPECIES))]
    events: list[dict[str, Any]] = []
    expected: dict[tuple[str, int], float] = {}
    windows: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}  # /performance per hour, per model
    nb_windows: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}
    nb_all: Counter[tuple[str, str]] = Counter()
    for h, pairs in enumerate(SPECIES):
        flat = [pair for pair, c in pairs.items() for _ in range(c)]
        nb_pairs = _labels([(i % 3 == 0, i % 2 == 0) for i in range(len(flat))])
        windows[(hours[h], "")] = (len(flat), {"gt.species": _classification_summary(pairs)})
        nb_windows[(hours[h], "")] = (len(flat), {"gt.approved": _classification_summary(nb_pairs)})
        nb_all += nb_pairs
        for i, (actual, predicted) in enumerate(flat):
            ts = hours[h] + i * (HOUR // len(flat))
            events.append({"model": model, "timestamp": ts, "event_id": f"mc-{h}-{i}",
                           "outputs": {"species": predicted}, "ground_truth": {"species": actual}})
            events.append({"model": neighbour, "timestamp": ts, "event_id": f"nb-{h}-{i}",
                           "inputs": {"age": float(i)}, "outputs": {"approved": i % 2 == 0},
                           "ground_truth": {"approved": i % 3 == 0}})
        for k, v in _macro_expected(pairs).items():
            expected[(f"classification-{k}", hours[h])] = v
    stack.produce(events, partition=0)
    want = {hours[h]: sum(p.values()) for h, p in enumerate(SPECIES)}
    _wait_stored(stack, model, first, want)
    _wait_stored(stack, neighbour, first, want)
    _put_doc(stack, model, _analyzers("classification", CLASSIFICATION), [])
    # Each model's stored profiles: its own columns only (not the other model's, all null for it).
    assert (_columns(stack, model, first), _columns(stack, neighbour, first)) == (
        {"out.species", "gt.species"}, {"in.age", "out.approved", "gt.approved"})
    # /performance: each model's windows hold only its own ground truth, with its own exact metrics
    # (the multiclass one: its 3×3 matrix and macro averages; no `gt.approved` of the neighbour).
    end = first + 3 * HOUR
    got = _performance(stack, model, first, end)
    assert all(set(perf) == {"gt.species"} for _, perf in got.values()) and len(got) == len(SPECIES)
    assert got == windows
    assert windows[(hours[0], "")][1]["gt.species"]["confusion_matrix"] == [[5, 1, 0], [0, 4, 2], [1, 0, 3]]
    assert _performance(stack, neighbour, first, end) == nb_windows
    merged: Counter[tuple[str, str]] = Counter()
    for pairs in SPECIES:
        merged.update(pairs)
    assert _performance(stack, model, first, end, rollup=True) == {
        (first, ""): (sum(merged.values()), {"gt.species": _classification_summary(merged)})}
    assert _performance(stack, neighbour, first, end, rollup=True) == {
        (first, ""): (sum(nb_all.values()), {"gt.approved": _classification_summary(nb_all)})}
    _values(stack, model, first, expected)
