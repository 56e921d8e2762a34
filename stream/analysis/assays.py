"""Wallaroo-style assays over stored profiles (`sketches.assay`).

An assay compares one numeric column (`iopath` `in.x` / `out.y`, or Wallaroo's `input x 0` /
`output y 0`, plus an optional list index) in consecutive windows against a baseline:

* baseline: a time range of stored windows (their merged KLL sketch) or uploaded `values`; it is
  binned once, when the assay is created, and kept with the assay so results stay comparable;
* windows: `[start + k * interval, start + k * interval + width)`; a window's data is the merge of
  the stored windows (the model's granularity, overall segment) starting inside it;
* summarizer: bin mode quantile|equal|provided (+ outlier bins), number of bins, bin weights,
  aggregation density|cumulative, metric PSI|MaxDiff|SumDiff → score and per-bin scores; status
  OK | Warning | Alert from the thresholds (strictly greater).

Assay configurations and their scheduled results are kept by `stream.store.assays.AssayRepository`,
one result per (assay, window), computed for complete windows (window end <= now) that hold data and
are not stored yet.

>>> parse_width("24 hours"), parse_width("PT1H"), parse_width("1 day")
(86400000, 3600000, 86400000)
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sketches import ColumnProfile, DatasetProfile
from sketches.assay import AssayBaseline, AssayStats, assay_status, score
from stream.analysis.channels import ActionId
from stream.analysis.monitor_config import parse_duration
from stream.store import profiles
from stream.store.assays import AssayRepository
from stream.store.client import Store

MAX_WINDOWS = 10_000
MAX_VALUES = 1_000_000
MIN_WIDTH_MS = 60_000
MAX_WIDTH_MS = 366 * 86_400_000
_UNITS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000, "week": 7 * 86_400_000}
_WIDTH = re.compile(r"^\s*(\d{1,6})\s*(minute|hour|day|week)s?\s*$", re.IGNORECASE)
Finite = Annotated[float, Field(allow_inf_nan=False)]


class AssayError(ValueError):
    """The assay cannot be created or run as asked (answered as 422)."""


def parse_width(text: str) -> int:
    """`"24 hours"`, `"1 day"`, `"30 minutes"`, `"1 week"` or an ISO 8601 duration (`PT1H`) → ms."""
    m = _WIDTH.match(text)
    if m:
        ms = int(m.group(1)) * _UNITS[m.group(2).lower()]
    else:
        try:
            ms = int(parse_duration(text.strip()).total_seconds() * 1000)
        except ValueError:
            raise ValueError(f"{text[:64]!r} is not a duration: use e.g. '24 hours', '30 minutes', '1 week' "
                             "or ISO 8601 'PT1H'") from None
    if not MIN_WIDTH_MS <= ms <= MAX_WIDTH_MS:
        raise ValueError("must be between 1 minute and 366 days")
    return ms


def parse_ms(text: str) -> int:
    """ISO-8601 (naive = UTC) or epoch milliseconds → epoch ms."""
    t = text.strip()
    if re.fullmatch(r"-?\d{1,19}", t):
        ms = int(t)
    else:
        try:
            dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text[:64]!r} is not a time: use ISO-8601 or epoch milliseconds") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = int(dt.timestamp() * 1000)
    if not 0 <= ms <= 7_258_118_400_000:
        raise ValueError("must be between 1970-01-01 and 2200-01-01")
    return ms


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------------- configuration
class BaselineSpec(BaseModel):
    """`{start, end}` (stored windows) or `{values: [...]}` (uploaded values)."""

    model_config = ConfigDict(extra="forbid")

    start: str | None = Field(default=None, max_length=64)
    end: str | None = Field(default=None, max_length=64)
    values: list[Finite] | None = Field(default=None, max_length=MAX_VALUES)

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None:
            parse_ms(v)
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> BaselineSpec:
        ranged = self.start is not None or self.end is not None
        if ranged and self.values is not None:
            raise ValueError("give either start/end or values, not both")
        if self.values is None:
            if self.start is None or self.end is None:
                raise ValueError("a baseline needs start and end (a time range) or values")
            if parse_ms(self.start) >= parse_ms(self.end):
                raise ValueError("start must be before end")
        elif not self.values:
            raise ValueError("values must not be empty")
        return self


class WindowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: str = Field(max_length=64, description="e.g. '24 hours', '1 hour', 'PT1H'")
    interval: str | None = Field(default=None, max_length=64, description="default: the width")
    start: str | None = Field(default=None, max_length=64,
                              description="first window start; default: the baseline's end, else the first data")

    @field_validator("width", "interval")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None:
            parse_width(v)
        return v

    @field_validator("start")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None:
            parse_ms(v)
        return v

    @property
    def width_ms(self) -> int:
        return parse_width(self.width)

    @property
    def interval_ms(self) -> int:
        return parse_width(self.interval) if self.interval is not None else self.width_ms


class Summarizer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bin_mode: Literal["quantile", "equal", "provided"] = "quantile"
    num_bins: int = Field(default=5, ge=1, le=1000)
    provided_edges: list[Finite] | None = Field(default=None, max_length=1001)
    bin_weights: list[Finite] | None = Field(default=None, max_length=1002)
    aggregation: Literal["density", "cumulative"] = "density"
    metric: Literal["PSI", "MaxDiff", "SumDiff"] = "PSI"

    @model_validator(mode="after")
    def _consistent(self) -> Summarizer:
        if self.bin_mode == "provided" and not self.provided_edges:
            raise ValueError("bin_mode 'provided' needs provided_edges")
        if self.provided_edges and self.bin_mode != "provided":
            raise ValueError("provided_edges need bin_mode 'provided'")
        if self.bin_weights is not None:
            if len(self.bin_weights) != self.num_bins + 2:
                raise ValueError(f"bin_weights needs num_bins + 2 = {self.num_bins + 2} values (outlier bins "
                                 "included)")
            if any(w < 0 for w in self.bin_weights) or sum(self.bin_weights) <= 0:
                raise ValueError("bin_weights must be non-negative with a positive sum")
        return self


class AssayBody(BaseModel):
    """A Wallaroo assay: what to compare, against which baseline, in which windows."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    baseline: BaselineSpec
    iopath: str = Field(min_length=1, max_length=300, description="'in.x' / 'out.y' or Wallaroo 'output y 0'")
    index: int | None = Field(default=None, ge=0, le=1_000_000, description="list element index")
    window: WindowSpec
    summarizer: Summarizer = Field(default_factory=Summarizer)
    warning_threshold: Finite | None = Field(default=None, ge=0)
    alert_threshold: Finite = Field(default=0.25, ge=0)
    active: bool = True
    notification_actions: list[ActionId] = Field(
        default_factory=list, max_length=20,
        description="ids of notification actions (/v1/notification-actions) that receive this assay's alerts")

    @field_validator("iopath")
    @classmethod
    def _iopath(cls, v: str) -> str:
        column_of(v)
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> AssayBody:
        column_of(self.iopath, self.index)
        if self.warning_threshold is not None and self.warning_threshold > self.alert_threshold:
            raise ValueError("warning_threshold must not exceed alert_threshold")
        return self


class FrozenBaseline(BaseModel):
    """The binned baseline, kept with the assay (inner edges; outlier bins implied)."""

    column: str
    inner_edges: list[float]
    proportions: list[float]
    stats: dict[str, Any]


class Assay(AssayBody):
    id: str
    model: str
    created_at: str
    binned_baseline: FrozenBaseline


def baseline_summary(spec: BaselineSpec, include_values: bool = False) -> dict[str, Any]:
    """An assay's baseline as API responses show it: its time range, or how many values were uploaded
    (the values themselves only when asked for; the binning is in `binned_baseline`).

    >>> baseline_summary(BaselineSpec(values=[1.0, 2.0, 3.0]))
    {'start': None, 'end': None, 'values_count': 3, 'values': None}
    >>> baseline_summary(BaselineSpec(values=[1.0, 2.0]), include_values=True)["values"]
    [1.0, 2.0]
    """
    return {"start": spec.start, "end": spec.end,
            "values_count": None if spec.values is None else len(spec.values),
            "values": spec.values if include_values else None}


def assay_view(assay: Assay, include_values: bool = False) -> dict[str, Any]:
    """The assay as API responses show it: every field, the baseline summarized (`baseline_summary`)."""
    return {**assay.model_dump(exclude={"baseline"}), "baseline": baseline_summary(assay.baseline, include_values)}


_SECTIONS = {"input": "in.", "inputs": "in.", "output": "out.", "outputs": "out."}


def column_of(iopath: str, index: int | None = None) -> str:
    """`in.x` → `in.x`; `output dense_1 0` → `out.dense_1[0]`; `in.x` with index 2 → `in.x[2]`."""
    text = iopath.strip()
    if text.startswith(("in.", "out.", "gt.", "tag.")):
        column = text
    else:
        parts = text.split()
        if len(parts) not in (2, 3) or parts[0].lower() not in _SECTIONS:
            raise ValueError(f"iopath {iopath[:100]!r}: use a column 'in.x' / 'out.y' or Wallaroo's "
                             "'input x' / 'output y 0'")
        column = _SECTIONS[parts[0].lower()] + parts[1]
        if len(parts) == 3:
            if not parts[2].isdigit():
                raise ValueError(f"iopath {iopath[:100]!r}: the index must be a non-negative integer")
            if index is not None and int(parts[2]) != index:
                raise ValueError("iopath and index name different list indexes")
            index = int(parts[2])
    return column if index is None else f"{column}[{index}]"


def _candidates(column: str) -> list[str]:
    """A list-element column `c[i]` falls back to the element-wise profile `c[]` when not stored per index."""
    m = re.fullmatch(r"(.*)\[(\d+)\]", column)
    return [column, f"{m.group(1)}[]"] if m else [column]


def pick_column(profile: DatasetProfile, column: str) -> ColumnProfile | None:
    for name in _candidates(column):
        col = profile.columns.get(name)
        if col is not None:
            return col
    return None


# ------------------------------------------------------------------------------------- baseline
def build_baseline(store: Store, model: str, granularity: str, body: AssayBody) -> FrozenBaseline:
    s = body.summarizer
    column = column_of(body.iopath, body.index)
    source: Sequence[float] | ColumnProfile
    if body.baseline.values is not None:
        source = body.baseline.values
    else:
        assert body.baseline.start is not None and body.baseline.end is not None
        start_ms, end_ms = parse_ms(body.baseline.start), parse_ms(body.baseline.end)
        merged = profiles.rollup(store, model, granularity, start_ms, end_ms, "")
        col = pick_column(merged[""][1], column) if "" in merged else None
        if col is None or col.kll.is_empty():
            raise AssayError(f"no numeric values of {column!r} in the stored windows between "
                             f"{body.baseline.start} and {body.baseline.end}")
        source = col
    try:
        b = AssayBaseline.from_values(source, bin_mode=s.bin_mode, num_bins=s.num_bins,
                                      provided_edges=s.provided_edges, weights=s.bin_weights,
                                      aggregation=s.aggregation)
    except ValueError as exc:
        raise AssayError(f"cannot bin the baseline: {exc}") from None
    if not all(math.isfinite(e) for e in b.inner_edges):
        raise AssayError("cannot bin the baseline: its values are too large to bin (edges overflow)")
    return FrozenBaseline(column=column, inner_edges=b.inner_edges, proportions=b.proportions,
                          stats=dict(b.stats.__dict__))


def thaw(assay: AssayBody, frozen: FrozenBaseline) -> AssayBaseline:
    s = assay.summarizer
    return AssayBaseline(edges=[-math.inf, *frozen.inner_edges, math.inf], proportions=frozen.proportions,
                         stats=AssayStats(**frozen.stats), bin_mode=s.bin_mode, num_bins=s.num_bins,
                         aggregation=s.aggregation, weights=s.bin_weights, provided_edges=s.provided_edges)


# ------------------------------------------------------------------------------------- running
def _stored_columns(store: Store, model: str, granularity: str, column: str, start_ms: int,
                    end_ms: int) -> list[tuple[int, ColumnProfile]]:
    """(window start ms, the column's merged profile) of the stored overall windows in [start, end)."""
    parts: dict[int, list[ColumnProfile]] = {}
    for ws, profile in profiles.partition_profiles(store, model, granularity, start_ms, end_ms, ""):
        col = pick_column(profile, column)
        if col is not None:
            parts.setdefault(ws, []).append(col)
    return [(ws, cols[0] if len(cols) == 1 else ColumnProfile.merge_many(cols)) for ws, cols in sorted(parts.items())]


def data_bounds(store: Store, model: str, granularity: str) -> tuple[int, int] | None:
    """(first window start, last window end) of the model's stored overall windows."""
    return profiles.window_bounds(store, model, granularity, "")


def windows(first_ms: int, width_ms: int, interval_ms: int, until_ms: int, limit: int = MAX_WINDOWS,
            data_from_ms: int | None = None) -> list[int]:
    """Starts of the complete windows (end <= until) from `first_ms`, at most `limit`; windows that end
    before `data_from_ms` (no stored data) are skipped."""
    k = 0
    if data_from_ms is not None and data_from_ms - first_ms - width_ms >= 0:
        k = (data_from_ms - first_ms - width_ms) // interval_ms + 1
    out: list[int] = []
    ws = first_ms + k * interval_ms
    while ws + width_ms <= until_ms and len(out) < limit:
        out.append(ws)
        ws += interval_ms
    return out


def _starts(assay: AssayBody, store: Store, model: str, granularity: str, now_ms: int | None,
            limit: int) -> list[int]:
    """Window starts to score: from the window start (default: the baseline's end, else the first stored
    window), complete by now, skipping windows before the first and after the last stored data."""
    bounds = data_bounds(store, model, granularity)
    if bounds is None:
        return []
    if assay.window.start is not None:
        first = parse_ms(assay.window.start)
    elif assay.baseline.end is not None:
        first = parse_ms(assay.baseline.end)
    else:
        first = bounds[0]
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    width, interval = assay.window.width_ms, assay.window.interval_ms
    return windows(first, width, interval, min(now, bounds[1] + width), limit, bounds[0])


def run(store: Store, model: str, granularity: str, assay: AssayBody, frozen: FrozenBaseline, starts: list[int],
        assay_id: str | None = None) -> list[dict[str, Any]]:
    """Score each window starting at `starts` that holds data; one result dict per scored window."""
    if not starts:
        return []
    width = assay.window.width_ms
    stored = _stored_columns(store, model, granularity, frozen.column, starts[0], starts[-1] + width)
    baseline = thaw(assay, frozen)
    out = []
    i0 = 0
    for ws in starts:
        we = ws + width
        while i0 < len(stored) and stored[i0][0] < ws:
            i0 += 1
        parts = []
        i = i0
        while i < len(stored) and stored[i][0] < we:
            parts.append(stored[i][1])
            i += 1
        if not parts:
            continue
        col = ColumnProfile.merge_many(parts)
        if col.kll.is_empty():
            continue
        try:
            r = score(baseline, col, assay.summarizer.metric)
        except ValueError as exc:
            raise AssayError(f"cannot score the window starting {iso(ws)}: {exc}") from None
        status = assay_status(r.score, assay.warning_threshold, assay.alert_threshold)
        out.append({"assay_id": assay_id, "window_start": iso(ws), "window_end": iso(we), "column": frozen.column,
                    "status": status, "warning_threshold": assay.warning_threshold,
                    "alert_threshold": assay.alert_threshold, **r.to_dict(),
                    "edges": [None if math.isinf(e) else e for e in r.edges]})
    return out


def new_id() -> str:
    return f"assay-{secrets.token_hex(6)}"


def create(store: Store, model: str, granularity: str, body: AssayBody) -> Assay:
    frozen = build_baseline(store, model, granularity, body)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return Assay(**body.model_dump(), id=new_id(), model=model, created_at=now, binned_baseline=frozen)


def preview(store: Store, model: str, granularity: str, body: AssayBody, now_ms: int | None = None
            ) -> tuple[FrozenBaseline, list[dict[str, Any]]]:
    """Results over stored history, not saved."""
    frozen = build_baseline(store, model, granularity, body)
    starts = _starts(body, store, model, granularity, now_ms, MAX_WINDOWS)
    return frozen, run(store, model, granularity, body, frozen, starts)


def run_due(repo: AssayRepository, assay: Assay, granularity: str, now_ms: int | None = None,
            stored: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Compute and store the results of complete windows not stored yet (active assays only);
    return the new results. The analysis timer calls this on its schedule; reads call it too."""
    if not assay.active:
        return []
    done = {r["window_start"] for r in (repo.stored_results(assay.id) if stored is None else stored)}
    starts = [ws for ws in _starts(assay, repo.store, assay.model, granularity, now_ms, 10 * MAX_WINDOWS)
              if iso(ws) not in done][:MAX_WINDOWS]
    new = run(repo.store, assay.model, granularity, assay, assay.binned_baseline, starts, assay.id)
    if new:
        repo.store_results(assay, new)
    return new


def scheduled(repo: AssayRepository, assay: Assay, granularity: str, now_ms: int | None = None
              ) -> list[dict[str, Any]]:
    """Every result of the assay, after computing those that are due."""
    stored = repo.stored_results(assay.id)
    new = run_due(repo, assay, granularity, now_ms, stored)
    return sorted(stored + new, key=lambda r: r["window_start"])
