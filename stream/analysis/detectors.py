"""Change detection inside the window: river's drift detectors run by the worker on every event batch.

A model's *detectors* (configured through ``/v1/models/{model}/detectors``, stored in the ``config``
table as kind ``detector``) each watch one series of its events:

* ``output`` / ``input``: a numeric ``out.<column>`` / ``in.<column>`` (the first element of a list
  column, booleans as 0/1; events without a finite value are skipped);
* ``error``: the prediction ``out.<column>`` against the ground truth ``gt.<label>`` — 0/1 (1 = wrong)
  for the binary detectors and for non-numeric classes, the absolute error for numeric columns under
  ADWIN / PageHinkley / KSWIN.

The detector is one of river's (``ADWIN``, ``PageHinkley``, ``KSWIN`` from ``river.drift``; ``DDM``,
``HDDM_A``, ``HDDM_W`` from ``river.drift.binary``, fed the 0/1 error series only) with river's defaults,
except where those alarm on stable data (:data:`DEFAULT_PARAMS`, measured in docs/online-analysis.md);
``params`` may set any scalar argument of the detector's constructor (an allowlist read from its
signature: numbers, booleans, short strings — nothing is evaluated), checked by building the detector
and feeding it a short synthetic stream, so a value river would choke on is a 422, not a worker crash.

State: one detector per (events partition, model, detector id) — the producer keys events by model, so
a model's events share a partition — kept in the worker's window table (changelog-backed) under
``<partition>|~detector|<model>|<id>|<segment>`` as a versioned pickle (:data:`STATE_VERSION`, the river
version and a fingerprint of the configuration; any mismatch starts the detector afresh). Like a window
state it remembers the highest source offset it was fed, so a replayed message (after SIGKILL, before
the offset commit) never updates it twice.

River updates one value at a time (that is its API): :meth:`DetectorState.feed` keeps that loop to a
bound-method call and a flag test per value over a ``tolist()`` of the numpy series; everything else
(selecting, casting, error computation, fencing) is vectorized in polars.

A detection becomes a :class:`Detection` (stored by :mod:`stream.store.detections`) and, unless it falls
within the detector's cooldown (event time since the last alerted detection), an alert with
``source: "detector"`` and ``mode: "DETECTOR"`` on the alerts topic (:func:`detection_alert`).

>>> config = DetectorConfig(id="price-shift", series=Series(kind="output", column="price"))
>>> config.detector, config.series.name, config.cooldown_minutes
('ADWIN', 'out.price', 10.0)
>>> sorted(allowed_params("PageHinkley"))
['alpha', 'delta', 'min_instances', 'mode', 'threshold']
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import logging
import math
import pickle
import struct
import time
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import orjson
import polars as pl
import river
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from river import drift
from river.drift import binary

from stream.analysis.alerts import SCHEMA, alert_id
from stream.store.analysis import AlertRecord

__all__ = ["BINARY_DETECTORS", "DETECTORS", "STATE_VERSION", "Detection", "DetectorBody", "DetectorConfig",
           "DetectorJob", "DetectorRunner", "DetectorState", "Series", "allowed_params", "detection_alert",
           "series_values", "state_key"]

log = logging.getLogger(__name__)

DETECTORS: dict[str, type[Any]] = {
    "ADWIN": drift.ADWIN, "PageHinkley": drift.PageHinkley, "KSWIN": drift.KSWIN,
    "DDM": binary.DDM, "HDDM_A": binary.HDDMA, "HDDM_W": binary.HDDMW,
}
BINARY_DETECTORS = frozenset({"DDM", "HDDM_A", "HDDM_W"})
_NAMES = {kind: name for name, kind in DETECTORS.items()}
DetectorName = Literal["ADWIN", "PageHinkley", "KSWIN", "DDM", "HDDM_A", "HDDM_W"]
STATE_VERSION = 1
_MAGIC = b"DLDT"
_HEADER = struct.Struct(">4sH")
_MAX_INT_PARAM = 1_000_000
_MAX_STR_PARAM = 32
_ANY_POSITIVE = (1, None, False)
# Ranges of the numeric parameters, (low, high, high inclusive) with low inclusive for integers and
# exclusive for fractions: river checks few of them and its Rust ADWIN panics (a process abort, not
# an exception) on a zero `clock`, so values outside are a 422 before anything runs.
_RANGES: dict[tuple[str, str], tuple[float, float | None, bool]] = {
    ("ADWIN", "delta"): (0.0, 1.0, False), ("ADWIN", "clock"): _ANY_POSITIVE,
    ("ADWIN", "max_buckets"): _ANY_POSITIVE, ("ADWIN", "min_window_length"): _ANY_POSITIVE,
    ("ADWIN", "grace_period"): _ANY_POSITIVE,
    ("PageHinkley", "min_instances"): _ANY_POSITIVE, ("PageHinkley", "delta"): (0.0, None, False),
    ("PageHinkley", "threshold"): (0.0, None, False), ("PageHinkley", "alpha"): (0.0, 1.0, True),
    ("KSWIN", "alpha"): (0.0, 1.0, False), ("KSWIN", "window_size"): (2, 100_000, True),
    ("KSWIN", "stat_size"): _ANY_POSITIVE, ("KSWIN", "seed"): (0, None, False),
    ("DDM", "warm_start"): _ANY_POSITIVE, ("DDM", "warning_threshold"): (0.0, None, False),
    ("DDM", "drift_threshold"): (0.0, None, False),
    ("HDDM_A", "drift_confidence"): (0.0, 1.0, False), ("HDDM_A", "warning_confidence"): (0.0, 1.0, False),
    ("HDDM_W", "drift_confidence"): (0.0, 1.0, False), ("HDDM_W", "warning_confidence"): (0.0, 1.0, False),
    ("HDDM_W", "lambda_val"): (0.0, 1.0, True),
}


def allowed_params(detector: str) -> dict[str, type]:
    """The constructor arguments of a detector that the API accepts, with their type: those with a
    scalar default (bool, int, float, str) or an optional int (`seed`); iterables are left out."""
    out: dict[str, type] = {}
    for name, p in inspect.signature(DETECTORS[detector].__init__).parameters.items():
        default = p.default
        if name == "self" or default is inspect.Parameter.empty:
            continue
        if isinstance(default, bool | int | float | str):
            out[name] = type(default)
        elif default is None and str(p.annotation).replace(" ", "") in ("int|None", "typing.Optional[int]"):
            out[name] = int
    return out


def _check_param(detector: str, name: str, value: Any, kind: type) -> None:
    bad = f"parameter {name!r} of {detector} must be "
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(bad + "a boolean")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_INT_PARAM:
            raise ValueError(bad + f"an integer within ±{_MAX_INT_PARAM}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(bad + "a finite number")
    elif not isinstance(value, str) or len(value) > _MAX_STR_PARAM:
        raise ValueError(bad + f"a string of at most {_MAX_STR_PARAM} characters")
    if (detector, name) in _RANGES and not isinstance(value, bool | str):
        low, high, high_inclusive = _RANGES[(detector, name)]
        above = value >= low if kind is int else value > low
        below = high is None or (value <= high if high_inclusive else value < high)
        if not (above and below):
            opening = "[" if kind is int else "("
            closing = "]" if high_inclusive else ")"
            raise ValueError(bad + f"in {opening}{low:g}, {'∞' if high is None else f'{high:g}'}{closing}")


# Driftline's defaults where river's raise false alarms over 100,000 stable events (PageHinkley 66, DDM 2,
# HDDM_A 1); a detector's `params` override them one by one.
DEFAULT_PARAMS: dict[str, dict[str, float | int]] = {
    "PageHinkley": {"alpha": 1.0, "delta": 0.1, "threshold": 100.0},
    "DDM": {"warm_start": 1000, "drift_threshold": 4.0},
    "HDDM_A": {"drift_confidence": 1e-4},
}


def build_detector(detector: str, params: Mapping[str, Any]) -> Any:
    """A fresh river detector: :data:`DEFAULT_PARAMS` under `params`, checked against
    :func:`allowed_params` first."""
    allowed = allowed_params(detector)
    params = {**DEFAULT_PARAMS.get(detector, {}), **params}
    for name, value in params.items():
        if name not in allowed:
            raise ValueError(f"{detector} has no parameter {name!r} (allowed: {', '.join(sorted(allowed))})")
        _check_param(detector, name, value, allowed[name])
    try:
        return DETECTORS[detector](**{k: float(v) if allowed[k] is float else v for k, v in params.items()})
    except (ValueError, TypeError, AssertionError) as exc:
        raise ValueError(f"{detector} rejected its parameters: {exc}") from None


def _smoke_test(detector: str, params: Mapping[str, Any]) -> None:
    """Feed a fresh detector a short stream with a change: parameters river accepts at construction but
    fails on while updating (a negative delta under a logarithm, ...) are rejected here, not in a worker."""
    det = build_detector(detector, params)
    rng = np.random.default_rng(0)
    if detector in BINARY_DETECTORS:
        values = np.concatenate([rng.random(300) < 0.1, rng.random(300) < 0.6]).astype(float)
    else:
        values = np.concatenate([rng.normal(0, 1, 300), rng.normal(3, 1, 300)])
    try:
        for v in values.tolist():
            det.update(v)
            _ = det.drift_detected
    except BaseException as exc:  # river raises whatever its arithmetic raises; its Rust parts panic
        if not _failed_inside(exc):
            raise
        raise ValueError(f"{detector} fails with these parameters: {type(exc).__name__}: {exc}") from None


def _failed_inside(exc: BaseException) -> bool:
    """An error of the detector's own computation: any Exception, or a panic of river's Rust code
    (pyo3's PanicException is a BaseException); not an interrupt or a cancellation."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


class Series(BaseModel):
    """The values a detector watches (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["output", "input", "error"] = Field(description="an output, an input, or the error of an "
                                                                  "output against its ground truth")
    column: str = Field(min_length=1, max_length=256, description="the column's name in the event, without "
                                                                   "its section prefix (`price` for out.price)")
    label: str | None = Field(default=None, min_length=1, max_length=256,
                              description="error only: the ground-truth column (default: the same name)")

    @model_validator(mode="after")
    def _label_for_error(self) -> Series:
        if self.label is not None and self.kind != "error":
            raise ValueError("`label` applies to the error series only")
        return self

    @property
    def prediction_column(self) -> str:
        return ("in." if self.kind == "input" else "out.") + self.column

    @property
    def label_column(self) -> str:
        return "gt." + (self.label or self.column)

    @property
    def name(self) -> str:
        """How detections and alerts name the series: `out.price`, `in.x`, `error(out.cls,gt.cls)`."""
        if self.kind == "error":
            return f"error({self.prediction_column},{self.label_column})"
        return self.prediction_column


class DetectorBody(BaseModel):
    """A detector as the API accepts it (PUT /v1/models/{model}/detectors/{id})."""

    model_config = ConfigDict(extra="forbid")

    series: Series
    detector: DetectorName = "ADWIN"
    params: dict[str, bool | int | float | str] = Field(
        default_factory=dict, max_length=16, description="constructor arguments of the river detector; river's "
                                                         "defaults for those left out")
    cooldown_minutes: float = Field(default=10.0, ge=0, le=7 * 24 * 60,
                                    description="event-time minutes after an alerted detection during which "
                                                "further detections are stored but do not alert")
    severity: Literal["warning", "critical"] = "warning"
    enabled: bool = True

    @model_validator(mode="after")
    def _valid_detector(self, info: ValidationInfo) -> DetectorBody:
        if self.detector in BINARY_DETECTORS and self.series.kind != "error":
            raise ValueError(f"{self.detector} watches a 0/1 stream: use it on the `error` series")
        if (info.context or {}).get("stored"):  # checked when it was accepted: build it, skip the trial run
            build_detector(self.detector, self.params)
        else:
            _smoke_test(self.detector, self.params)
        return self


class DetectorConfig(DetectorBody):
    """A stored detector: the body plus its id (unique per model)."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @property
    def fingerprint(self) -> str:
        """What a detector's state depends on: a change here starts the detector afresh."""
        what = {"series": self.series.model_dump(), "detector": self.detector, "params": self.params}
        return hashlib.sha256(orjson.dumps(what, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _first(column: pl.Series) -> pl.Series:
    """The column as float64: lists by their first element, booleans as 0/1, anything else null."""
    if isinstance(column.dtype, pl.List):
        column = column.list.first()
    if column.dtype == pl.Boolean or column.dtype.is_numeric():
        return column.cast(pl.Float64)
    return pl.Series(column.name, [None] * column.len(), dtype=pl.Float64)


def series_values(rows: pl.DataFrame, config: DetectorConfig) -> pl.DataFrame:
    """The detector's series over `rows`, in source order: columns value (finite float64), timestamp,
    __offset, __index. Rows without a value are left out."""
    series = config.series
    empty = pl.DataFrame(schema={"value": pl.Float64, "timestamp": pl.Int64, "__offset": pl.Int64,
                                 "__index": pl.UInt32})
    if series.prediction_column not in rows.columns:
        return empty
    predicted = rows.get_column(series.prediction_column)
    if series.kind != "error":
        value = _first(predicted)
    else:
        if series.label_column not in rows.columns:
            return empty
        label = rows.get_column(series.label_column)
        p, t = _first(predicted), _first(label)
        numeric = p.null_count() < p.len() and t.null_count() < t.len()
        if numeric and config.detector not in BINARY_DETECTORS:
            value = (p - t).abs()
        elif numeric:
            value = (p != t).cast(pl.Float64)
        else:  # classes as text: a mismatch is an error; a missing side is no observation
            pt, tt = predicted.cast(pl.String, strict=False), label.cast(pl.String, strict=False)
            value = (pt != tt).cast(pl.Float64)
    out = pl.DataFrame({"value": value, "timestamp": rows.get_column("timestamp"),
                        "__offset": rows.get_column("__offset"), "__index": rows.get_column("__index")})
    return out.filter(pl.col("value").is_finite()).sort("__offset", "__index")


def state_key(partition: int, model: str, detector_id: str, segment: str = "") -> str:
    """Window-table key of a detector's state (its partition first, like every key of that table)."""
    return f"{partition}|~detector|{model}|{detector_id}|{segment}"


@functools.cache
def _parameter_names(detector: str) -> frozenset[str]:
    return frozenset(inspect.signature(DETECTORS[detector]).parameters)


def _statistics(det: Any) -> dict[str, float | None]:
    """What a river detector exposes about itself, as numbers: ADWIN's width / estimation / variance,
    PageHinkley's sums, KSWIN's p-value, DDM's minimum error rate, ... (private names lose their `_`;
    the constructor's parameters are in the configuration, not repeated here)."""
    out: dict[str, Any] = {}
    for name in ("width", "estimation", "variance", "n_detections", "total"):
        if isinstance(getattr(type(det), name, None), property):
            out[name] = getattr(det, name)
    skip = _parameter_names(_NAMES[type(det)])
    for name, value in vars(det).items():
        if name in skip or isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
            continue
        out.setdefault(name.lstrip("_"), value)
    return {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in sorted(out.items())}


@dataclass
class Detection:
    """One change found by one detector, where (source offset, event time) and with what statistics."""

    model: str
    detector_id: str
    detector: str
    series: str
    segment: str
    partition: int
    offset: int
    index: int
    event_time: int  # epoch ms of the event at which the change was detected
    value: float
    statistics: dict[str, float | None]
    alerted: bool
    detected_at: int = field(default_factory=lambda: int(time.time() * 1000))

    @property
    def alert_id(self) -> str:
        """Deterministic: a replay that finds the same change finds the alert already sent."""
        return alert_id(self.model, "detector", self.detector_id, self.segment, self.partition, self.offset,
                        self.index)


@dataclass
class DetectorState:
    """A detector's river object and what fences and paces it."""

    fingerprint: str
    detector: Any
    max_offset: int = -1
    updates: int = 0
    last_alert_ms: int | None = None
    river_version: str = river.__version__

    @classmethod
    def fresh(cls, config: DetectorConfig) -> DetectorState:
        return cls(config.fingerprint, build_detector(config.detector, config.params))

    def to_text(self) -> str:
        body = pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)
        return base64.b64encode(_HEADER.pack(_MAGIC, STATE_VERSION) + body).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> DetectorState | None:
        """The state, or None when it is from another state version or river version (start afresh).
        The bytes come from our own changelog topic."""
        try:
            raw = base64.b64decode(text)
            magic, version = _HEADER.unpack_from(raw)
            if magic != _MAGIC or version != STATE_VERSION:
                return None
            state = pickle.loads(raw[_HEADER.size:])  # our own changelog's bytes (see above)
        except (ValueError, struct.error, pickle.UnpicklingError, AttributeError, ImportError, EOFError) as exc:
            log.warning("unreadable detector state, starting afresh: %s", exc)
            return None
        if not isinstance(state, cls) or state.river_version != river.__version__:
            return None
        return state

    def feed(self, values: np.ndarray) -> list[tuple[int, dict[str, float | None]]]:
        """Update the detector with every value in order; (position, statistics) of each detection.
        River's API is one value per call: the loop is kept to the call and a flag test."""
        det = self.detector
        update = det.update
        hits: list[tuple[int, dict[str, float | None]]] = []
        for i, v in enumerate(values.tolist()):
            update(v)
            if det.drift_detected:
                hits.append((i, _statistics(det)))
        self.updates += len(values)
        return hits


@dataclass
class DetectorJob:
    """One detector over one (model, partition) slice of a batch, with the state text it starts from."""

    key: str
    model: str
    partition: int
    rows: pl.DataFrame
    config: DetectorConfig
    state_text: str | None

    def compute(self) -> tuple[str, list[Detection]] | None:
        """(new state text, detections); None when every row was fed before (a replay). Touches nothing
        shared, so the worker runs it off the event loop."""
        state = DetectorState.from_text(self.state_text) if self.state_text is not None else None
        config = self.config
        if state is None or state.fingerprint != config.fingerprint:
            state = DetectorState.fresh(config)
        new = self.rows.filter(pl.col("__offset") > state.max_offset)  # offset fencing
        if new.height == 0:
            return None
        series = series_values(new, config)
        try:
            hits = state.feed(series.get_column("value").to_numpy())
        except BaseException as exc:  # a detector failing on odd data must not stop the stream
            if not _failed_inside(exc):
                raise
            log.error("detector %s of model %s failed (%s: %s); it restarts with the next batch", config.id,
                      self.model, type(exc).__name__, exc)
            state, hits = DetectorState.fresh(config), []
        state.max_offset = int(new.get_column("__offset").max())  # type: ignore[arg-type]
        detections = []
        cooldown_ms = int(config.cooldown_minutes * 60_000)
        for position, statistics in hits:
            value, ts, offset, index = series.row(position)
            alerted = state.last_alert_ms is None or ts - state.last_alert_ms >= cooldown_ms
            if alerted:
                state.last_alert_ms = int(ts)
            detections.append(Detection(self.model, config.id, config.detector, config.series.name, "",
                                        self.partition, int(offset), int(index), int(ts), float(value),
                                        {**statistics, "updates": float(state.updates)}, alerted))
        return state.to_text(), detections


class DetectorRunner:
    """Runs the configured detectors of every model over decoded batches, with state in `table`.

    :meth:`prepare` (reads the table) → :meth:`DetectorJob.compute` per job (pure: the worker runs the
    jobs in a thread so heartbeats and /metrics keep being served) → :meth:`save` (writes the table)."""

    def __init__(self, table: MutableMapping[str, str]) -> None:
        self.table = table

    def prepare(self, frame: pl.DataFrame, configs: Mapping[str, Sequence[DetectorConfig]]) -> list[DetectorJob]:
        """A job per enabled detector of each model in the batch and each partition its rows came from."""
        if frame.height == 0 or not configs:
            return []
        models = [m for m in frame.get_column("model").unique().to_list() if configs.get(m)]
        if not models:
            return []
        wanted = frame.filter(pl.col("model").is_in(models))
        jobs = []
        for (model, partition), rows in wanted.partition_by("model", "__partition", as_dict=True).items():
            for config in configs[str(model)]:
                if config.enabled:
                    key = state_key(int(partition), str(model), config.id)
                    jobs.append(DetectorJob(key, str(model), int(partition), rows, config, self.table.get(key)))
        return jobs

    @staticmethod
    def compute(jobs: Sequence[DetectorJob]) -> list[tuple[str, str, list[Detection]]]:
        """(state key, new state text, detections) of every job that had new rows."""
        out = []
        for job in jobs:
            done = job.compute()
            if done is not None:
                out.append((job.key, *done))
        return out

    def save(self, results: Sequence[tuple[str, str, list[Detection]]]) -> list[Detection]:
        """Write the new states; the detections found, in job order."""
        found: list[Detection] = []
        for key, text, detections in results:
            self.table[key] = text
            found += detections
        return found

    def run(self, frame: pl.DataFrame, configs: Mapping[str, Sequence[DetectorConfig]]) -> list[Detection]:
        """prepare → compute → save in one call: the detections found in the batch (rows at or below a
        detector's fenced offset are skipped)."""
        return self.save(self.compute(self.prepare(frame, configs)))

    def forget(self, configs: Mapping[str, Iterable[DetectorConfig]]) -> int:
        """Drop the states of detectors no longer configured; returns how many."""
        live = {(m, c.id) for m, cs in configs.items() for c in cs}
        stale = []
        for key in list(self.table):
            if "|~detector|" in key:
                _, _, model, detector_id, _ = key.split("|", 4)
                if (model, detector_id) not in live:
                    stale.append(key)
        for key in stale:
            del self.table[key]
        return len(stale)


def detection_alert(d: Detection, config: DetectorConfig) -> AlertRecord:
    """The alert of an alerted detection (`source: "detector"`, `mode: "DETECTOR"`)."""
    reason = f"{d.detector} detected a change in {d.series} at offset {d.offset} of partition {d.partition}"
    body = {
        "schema": SCHEMA, "alert_id": d.alert_id, "source": "detector", "model": d.model, "monitor_id": None,
        "rule_id": d.detector_id, "severity": config.severity, "mode": "DETECTOR",
        "dataset_timestamp": d.event_time, "dataset_timestamps": [d.event_time],
        "anomalies": [{"analyzer_id": None, "column": d.series, "segment": d.segment,
                       "dataset_timestamp": d.event_time, "metric": "change", "value": d.value, "reason": reason}],
        "detector": {"id": d.detector_id, "type": d.detector, "series": d.series, "params": config.params,
                     "segment": d.segment, "event_time": d.event_time, "source_partition": d.partition,
                     "source_offset": d.offset, "source_index": d.index, "statistics": d.statistics},
        "created_at": d.detected_at,
    }
    return AlertRecord(d.alert_id, d.model, "detector", "", d.detector_id, config.severity, "DETECTOR",
                       d.event_time, body, False, d.detected_at)
