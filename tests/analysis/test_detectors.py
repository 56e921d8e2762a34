"""River change detectors on synthetic streams with known change points, and the runner the worker uses:
series from decoded frames, offset fencing on replays, state round trips, cooldown, parameter checks."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest
from pydantic import ValidationError

from stream.analysis.detectors import (
    BINARY_DETECTORS,
    DETECTORS,
    DetectorBody,
    DetectorConfig,
    DetectorRunner,
    DetectorState,
    Series,
    detection_alert,
    series_values,
    state_key,
)
from stream.events.decode import RawMessage, decode_messages

CHANGE = 5_000
T0 = 1_764_000_000_000


def first_detection(config: DetectorConfig, values: np.ndarray) -> int | None:
    state = DetectorState.fresh(config)
    hits = state.feed(values)
    return hits[0][0] if hits else None


def stream(kind: str, seed: int, n: int = 2 * CHANGE) -> np.ndarray:
    """A stream whose distribution changes at CHANGE: mean 0 → 1 (σ 1), or an error rate 0.1 → 0.3."""
    rng = np.random.default_rng(seed)
    if kind == "binary":
        return (rng.random(n) < np.where(np.arange(n) < CHANGE, 0.1, 0.3)).astype(float)
    return rng.normal(np.where(np.arange(n) < CHANGE, 0.0, 1.0), 1.0)


# Parameters for the detectors whose river defaults alarm on stable data (docs/online-analysis.md).
QUIET: dict[str, dict[str, Any]] = {
    "ADWIN": {}, "HDDM_W": {}, "PageHinkley": {}, "DDM": {}, "HDDM_A": {},  # defaults (DEFAULT_PARAMS)
    "KSWIN": {"alpha": 1e-4, "window_size": 300, "stat_size": 100, "seed": 3},
}


def config(detector: str, params: dict[str, Any] | None = None, **extra: Any) -> DetectorConfig:
    kind = "error" if detector in BINARY_DETECTORS else "output"
    return DetectorConfig(id="d", series=Series(kind=kind, column="y"), detector=detector,  # type: ignore[arg-type]
                          params=QUIET[detector] if params is None else params, **extra)


@pytest.mark.parametrize("detector", sorted(DETECTORS))
def test_a_known_change_point_is_found_after_it_with_a_bounded_delay(detector: str) -> None:
    delays = []
    for seed in range(3):
        values = stream("binary" if detector in BINARY_DETECTORS else "normal", seed)
        if detector == "KSWIN":
            values = values[CHANGE - 600:CHANGE + 600]  # KSWIN costs ~0.6 ms a value: a shorter stream
        change = 600 if detector == "KSWIN" else CHANGE
        found = first_detection(config(detector), values)
        assert found is not None and found >= change, (detector, seed, found)
        delays.append(found - change)
    print(f"{detector} with {QUIET[detector] or 'the default parameters'}: detection delay {delays} events")
    assert max(delays) < 2_000


@pytest.mark.parametrize("detector", ["ADWIN", "HDDM_W", "PageHinkley", "DDM", "HDDM_A"])
def test_no_false_alarm_over_100k_stable_events_at_default_parameters(detector: str) -> None:
    """Driftline's defaults: river's, or DEFAULT_PARAMS where river's alarm on stable data."""
    rng = np.random.default_rng(42)
    values = (rng.random(100_000) < 0.1).astype(float) if detector in BINARY_DETECTORS else rng.normal(0, 1, 100_000)
    assert first_detection(config(detector, {}), values) is None


# ------------------------------------------------------------------------------------- the runner
def messages(values: list[Any], start: int = 0, model: str = "m", partition: int = 0,
             label: list[Any] | None = None, column: str = "y") -> list[RawMessage]:
    out = []
    for i, v in enumerate(values):
        event: dict[str, Any] = {"model": model, "timestamp": T0 + (start + i) * 1000, "outputs": {column: v}}
        if label is not None:
            event["ground_truth"] = {column: label[i]}
        out.append(RawMessage(orjson.dumps(event), partition, start + i, 0, []))
    return out


def frame_of(msgs: list[RawMessage]) -> pl.DataFrame:
    return decode_messages(msgs).frame


def shifted(n: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, n // 2), rng.normal(5, 1, n // 2)]).tolist()


def test_runner_finds_a_mean_shift_and_a_replay_of_the_batch_changes_nothing() -> None:
    table: dict[str, str] = {}
    runner = DetectorRunner(table)
    cfg = {"m": [config("ADWIN", {}, cooldown_minutes=10_000)]}
    frame = frame_of(messages(shifted()))
    found = runner.run(frame, cfg)
    assert found and found[0].offset >= 1000 and found[0].alerted
    assert found[0].event_time == T0 + found[0].offset * 1000 and found[0].series == "out.y"
    assert {"width", "estimation", "variance", "updates"} <= set(found[0].statistics)
    assert all(not d.alerted for d in found[1:])  # one change pages once: the rest is in the cooldown
    before = dict(table)
    assert runner.run(frame, cfg) == []  # the same messages again (a replay): fenced, state untouched
    assert table == before
    assert DetectorState.from_text(table[state_key(0, "m", "d")]).updates == 2000  # type: ignore[union-attr]


def test_state_survives_a_round_trip_through_text_and_continues_identically() -> None:
    values = shifted(4000, seed=5)
    whole: dict[str, str] = {}
    cfg = {"m": [config("ADWIN", {})]}
    at_once = DetectorRunner(whole).run(frame_of(messages(values)), cfg)
    split: dict[str, str] = {}
    first = DetectorRunner(split).run(frame_of(messages(values[:1500])), cfg)
    restarted = DetectorRunner(dict(split))  # a new worker reading the changelog's text values
    rest = restarted.run(frame_of(messages(values[1500:], start=1500)), cfg)
    assert [(d.offset, d.statistics) for d in first + rest] == [(d.offset, d.statistics) for d in at_once]


def test_a_changed_configuration_or_another_state_version_starts_afresh() -> None:
    table: dict[str, str] = {}
    runner = DetectorRunner(table)
    runner.run(frame_of(messages([0.0] * 50)), {"m": [config("ADWIN", {})]})
    key = state_key(0, "m", "d")
    assert DetectorState.from_text(table[key]).updates == 50  # type: ignore[union-attr]
    runner.run(frame_of(messages([0.0] * 10, start=50)), {"m": [config("ADWIN", {"delta": 0.01})]})
    assert DetectorState.from_text(table[key]).updates == 10  # type: ignore[union-attr]
    assert DetectorState.from_text("garbage") is None
    assert runner.forget({"m": []}) == 1 and key not in table


def test_cooldown_is_in_event_time() -> None:
    """Two changes ~1000 s of event time apart (events 1 s apart): both page with a 10-minute cooldown,
    only the first with a 30-minute one (the second is stored, not alerted)."""
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, 1000), rng.normal(5, 1, 1000), rng.normal(0, 1, 1000)]).tolist()
    for minutes, alerted in ((10, [True, True]), (30, [True, False])):
        cfg = {"m": [config("ADWIN", {}, cooldown_minutes=minutes)]}
        found = DetectorRunner({}).run(frame_of(messages(values)), cfg)
        assert [d.offset // 1000 for d in found] == [1, 2]
        assert [d.alerted for d in found] == alerted


def test_error_series_for_classes_and_for_numbers() -> None:
    msgs = messages(["a", "b", "a", None], label=["a", "a", "b", "a"])
    binary = DetectorConfig(id="e", series=Series(kind="error", column="y"), detector="DDM")
    assert series_values(frame_of(msgs), binary).get_column("value").to_list() == [0.0, 1.0, 1.0]
    numeric = messages([[1.0, 9.0], [4.0, 0.0]], label=[2.0, 1.0])  # a list output: its first element
    continuous = DetectorConfig(id="e", series=Series(kind="error", column="y"))
    assert series_values(frame_of(numeric), continuous).get_column("value").to_list() == [1.0, 3.0]
    assert series_values(frame_of(messages(["x"])), config("ADWIN", {})).height == 0  # text output: no values


def test_detection_alert_names_the_detector_and_is_deterministic() -> None:
    cfg = config("ADWIN", {})
    d = DetectorRunner({}).run(frame_of(messages(shifted())), {"m": [cfg]})[0]
    alert = detection_alert(d, cfg)
    assert alert.source == "detector" and alert.body["source"] == "detector" and alert.rule_id == "d"
    assert alert.body["detector"]["source_offset"] == d.offset and alert.alert_id == d.alert_id
    again = DetectorRunner({}).run(frame_of(messages(shifted())), {"m": [cfg]})[0]
    assert again.alert_id == d.alert_id


@pytest.mark.parametrize(("body", "message"), [
    ({"detector": "ADWIN", "params": {"nope": 1}}, "has no parameter 'nope'"),
    ({"detector": "ADWIN", "params": {"delta": "0.1"}}, "must be a finite number"),
    ({"detector": "ADWIN", "params": {"clock": 1.5}}, "must be an integer"),
    ({"detector": "KSWIN", "params": {"window_size": 50, "stat_size": 80}},
     "stat_size must be smaller than window_size"),
    ({"detector": "PageHinkley", "params": {"mode": "sideways"}}, "Invalid 'mode'"),
    ({"detector": "ADWIN", "params": {"window": [1, 2]}}, "Input should be a valid"),
    ({"detector": "DDM"}, "use it on the `error` series"),
    ({"detector": "ADWIN", "params": {"delta": -1.0}}, "'delta' of ADWIN must be in (0, 1)"),
    ({"detector": "ADWIN", "params": {"clock": 0}}, "'clock' of ADWIN must be in [1, ∞)"),  # river's Rust panics
    ({"detector": "HDDM_W", "series": {"kind": "error", "column": "y"}, "params": {"lambda_val": 0.0}},
     "must be in (0, 1]"),
])
def test_bad_parameters_are_rejected_with_the_reason(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        DetectorBody.model_validate({"series": {"kind": "output", "column": "y"}, **body})
