"""Pydantic models of the WhyLabs monitor document, accepted as WhyLabs writes it (docs/alerts.md).

The document ``{id, schemaVersion, orgId, datasetId, granularity, metadata, allowPartialTargetBatches,
analyzers, monitors}`` and every nested object allow unknown fields (``extra="allow"``) so nothing a
user pasted is dropped.  :meth:`MonitorDocument.to_json` serializes ``by_alias`` and ``exclude_unset``:
a round trip gives JSON equal to the input (numbers keep their int/float kind, timestamps and ISO 8601
durations stay strings exactly as written — WhyLabs' own docs write ``"2022-02-25T00:00:000Z"``).

Validation errors are raised as :class:`MonitorConfigError`, whose ``errors`` name the path of each
problem with dots (``analyzers.0.config.threshold``): union member tags that pydantic inserts into
locations are removed.

Analyzer ``config`` is discriminated by ``type``: every type of WhyLabs' monitor schema that Driftline
evaluates — fixed, stddev, diff, drift, comparison, list_comparison, frequent_string_comparison,
column_list, seasonal, monotonic, conjunction and disjunction — is validated field by field; any other
type (``experimental``, or one a later schema adds) is kept as a generic :class:`OtherConfig` so the
document is still accepted, and :func:`not_evaluated_reason` / :meth:`MonitorDocument.evaluation_warnings`
say why it is not evaluated (the engine stores a ``NotEvaluated`` result for it, never nothing).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    field_validator,
)

__all__ = [
    "ANALYZER_TYPES",
    "Action",
    "Analyzer",
    "AnalyzerConfig",
    "AnomalyFilter",
    "Baseline",
    "ColumnListConfig",
    "ColumnMatrix",
    "ComparisonConfig",
    "ConjunctionConfig",
    "CronSchedule",
    "CurrentBatchBaseline",
    "DatasetMatrix",
    "DiffConfig",
    "DigestMode",
    "DisjunctionConfig",
    "DriftConfig",
    "EveryAnomalyMode",
    "ExpectedValue",
    "FixedConfig",
    "FixedSchedule",
    "FrequentStringComparisonConfig",
    "ImmediateSchedule",
    "ListComparisonConfig",
    "Metadata",
    "Monitor",
    "MonitorConfigError",
    "MonitorDocument",
    "MonotonicConfig",
    "OtherConfig",
    "ReferenceBaseline",
    "SeasonalConfig",
    "Segment",
    "SegmentTag",
    "StddevConfig",
    "TimeRange",
    "TimeRangeBaseline",
    "TrailingWindowBaseline",
    "format_validation_error",
    "monitor_reference_errors",
    "not_evaluated_reason",
    "parse_analyzer",
    "parse_document",
    "parse_duration",
    "parse_monitor",
    "parse_timestamp",
]

ID_PATTERN = r"^[0-9a-zA-Z\-_.]+$"


# ---------------------------------------------------------------------------------------------- scalars
def _number(v: Any) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("must be a number")
    if isinstance(v, float) and math.isnan(v):
        raise ValueError("must not be NaN")
    return v


Number = Annotated[int | float, PlainValidator(_number)]
"""A JSON number kept as written (``2`` stays ``2``, ``2.0`` stays ``2.0``); booleans rejected."""


def _str_or_list(v: Any) -> str | list[str]:
    if isinstance(v, str):
        return v
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    raise ValueError("must be a string or a list of strings")


StrOrList = Annotated[str | list[str], PlainValidator(_str_or_list)]
"""``include``/``exclude``: WhyLabs' docs show both ``["group:continuous"]`` and ``"group:continuous"``."""

_DURATION_RE = re.compile(
    r"^P(?!$)(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> dt.timedelta:
    """ISO 8601 duration (``P1D``, ``PT18H``, ``P1DT12H``, ``P30D``) → timedelta.

    Years count 365 days and months 30 days (WhyLabs durations are day/hour based in practice).
    """
    m = _DURATION_RE.match(text)
    if m is None:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    g = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
    days = g["y"] * 365 + g["mo"] * 30 + g["w"] * 7 + g["d"]
    return dt.timedelta(days=days, hours=g["h"], minutes=g["mi"], seconds=g["s"])


def _duration(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be an ISO 8601 duration string such as 'P1D' or 'PT18H'")
    parse_duration(v)
    return v


Duration = Annotated[str, PlainValidator(_duration)]

_TS_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2,3})(?:\.(?P<f>\d{1,9}))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(text: str) -> dt.datetime:
    """Tolerant UTC timestamp parser for exclusion ranges and time-range baselines.

    Accepts ISO 8601 with ``Z`` or an offset (naive = UTC) and the form WhyLabs' documentation uses,
    ``2022-02-25T00:00:000Z`` (three-digit seconds field, read as 0 seconds + milliseconds).
    """
    m = _TS_RE.match(text.strip())
    if m is None:
        raise ValueError(f"not a timestamp: {text!r}")
    date = dt.date.fromisoformat(m["date"])
    h, mi = int(m["h"] or 0), int(m["mi"] or 0)
    s_txt = m["s"] or "0"
    micro = 0
    sec = int(s_txt)  # a three-digit field ("000" in WhyLabs' docs) is read as a number of seconds
    if sec >= 60:
        raise ValueError(f"seconds out of range in {text!r}")
    if m["f"]:
        micro = int(m["f"][:6].ljust(6, "0"))
    tz = dt.UTC
    if m["tz"] and m["tz"] != "Z":
        off = m["tz"].replace(":", "")
        sign = 1 if off[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
    out = dt.datetime(date.year, date.month, date.day, h, mi, sec, micro, tzinfo=tz)
    return out.astimezone(dt.UTC)


def _timestamp(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a timestamp string such as '2021-01-01T00:00:00.000Z'")
    parse_timestamp(v)
    return v


Timestamp = Annotated[str, PlainValidator(_timestamp)]

_CRON_FIELD = re.compile(r"^(\*|\d+)(?:[-/]\d+)?(?:,(\*|\d+)(?:[-/]\d+)?)*$|^\*/\d+$")


def _cron(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a cron expression string")
    if v.strip() in ("@annually", "@yearly", "@monthly", "@weekly", "@daily", "@hourly"):
        return v
    fields = v.split()
    if len(fields) not in (5, 6, 7) or not all(_CRON_FIELD.match(f) for f in fields):
        raise ValueError(f"not a cron expression: {v!r} (expected 5 fields such as '0 0 * * 1-5')")
    return v


CronExpr = Annotated[str, PlainValidator(_cron)]


# ---------------------------------------------------------------------------------------------- base
class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_default=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: aliases, only fields that were set, unknown fields preserved."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class Metadata(_Model):
    """WhyLabs-managed metadata (version, updatedTimestamp, author, ...); every field optional."""

    version: int | None = None
    schemaVersion: int | None = None
    updatedTimestamp: int | None = None
    author: str | None = None
    description: str | None = None


class TimeRange(_Model):
    """``{start, end}``: start inclusive, end exclusive (UTC)."""

    start: Timestamp
    end: Timestamp

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        return parse_timestamp(self.start), parse_timestamp(self.end)

    def contains(self, ts: dt.datetime) -> bool:
        lo, hi = self.bounds()
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        return lo <= ts < hi


# ---------------------------------------------------------------------------------------------- schedules
class FixedSchedule(_Model):
    type: Literal["fixed"]
    cadence: Literal["hourly", "daily", "weekly", "monthly"]
    exclusionRanges: list[TimeRange] | None = None


class CronSchedule(_Model):
    type: Literal["cron"]
    cron: CronExpr
    exclusionRanges: list[TimeRange] | None = None


class ImmediateSchedule(_Model):
    type: Literal["immediate"]
    exclusionRanges: list[TimeRange] | None = None


def _tag_of(v: Any) -> str | None:
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    return t if isinstance(t, str) else None


def _tagger(known: Iterable[str], fallback: str | None = None) -> Any:
    names = frozenset(known)

    def pick(v: Any) -> str | None:
        t = _tag_of(v)
        if t in names:
            return t
        return fallback

    return pick


AnalyzerSchedule = Annotated[
    Annotated[FixedSchedule, Tag("fixed")] | Annotated[CronSchedule, Tag("cron")],
    Discriminator(
        _tagger(["fixed", "cron"]),
        custom_error_type="invalid_schedule",
        custom_error_message="schedule.type must be 'fixed' or 'cron'",
    ),
]
MonitorSchedule = Annotated[
    Annotated[ImmediateSchedule, Tag("immediate")]
    | Annotated[FixedSchedule, Tag("fixed")]
    | Annotated[CronSchedule, Tag("cron")],
    Discriminator(
        _tagger(["immediate", "fixed", "cron"]),
        custom_error_type="invalid_schedule",
        custom_error_message="schedule.type must be 'immediate', 'fixed' or 'cron'",
    ),
]


# ---------------------------------------------------------------------------------------------- baselines
class ExclusionSchedule(_Model):
    type: Literal["cron"]
    cron: CronExpr


class TrailingWindowBaseline(_Model):
    """The ``size`` batches before the target (``offset`` batches back, default 1)."""

    type: Literal["TrailingWindow"]
    size: int = Field(ge=1)
    offset: int | None = Field(default=None, ge=0)
    exclusionRanges: list[TimeRange] | None = None
    exclusionSchedule: ExclusionSchedule | None = None
    inheritSegment: bool | None = None
    datasetId: str | None = None


class ReferenceBaseline(_Model):
    """A stored reference profile (``ref-…``)."""

    type: Literal["Reference"]
    profileId: str = Field(min_length=1)
    datasetId: str | None = None


class TimeRangeBaseline(_Model):
    type: Literal["TimeRange"]
    range: TimeRange
    inheritSegment: bool | None = None
    datasetId: str | None = None


class CurrentBatchBaseline(_Model):
    type: Literal["CurrentBatch"]
    offset: int | None = Field(default=None, ge=0)
    inheritSegment: bool | None = None
    datasetId: str | None = None


BASELINE_TYPES = ("TrailingWindow", "Reference", "TimeRange", "CurrentBatch")
Baseline = Annotated[
    Annotated[TrailingWindowBaseline, Tag("TrailingWindow")]
    | Annotated[ReferenceBaseline, Tag("Reference")]
    | Annotated[TimeRangeBaseline, Tag("TimeRange")]
    | Annotated[CurrentBatchBaseline, Tag("CurrentBatch")],
    Discriminator(
        _tagger(BASELINE_TYPES),
        custom_error_type="invalid_baseline",
        custom_error_message="baseline.type must be one of TrailingWindow, Reference, TimeRange, CurrentBatch",
    ),
]


# ---------------------------------------------------------------------------------------------- target matrix
class SegmentTag(_Model):
    key: str
    value: str


class Segment(_Model):
    """``{"tags": []}`` is the overall segment; a tag value ``"*"`` fans out over every value."""

    tags: list[SegmentTag] = Field(default_factory=list)


class ColumnMatrix(_Model):
    type: Literal["column"]
    include: StrOrList | None = None
    exclude: StrOrList | None = None
    segments: list[Segment] | None = None
    excludeSegments: list[Segment] | None = None


class DatasetMatrix(_Model):
    type: Literal["dataset"]
    segments: list[Segment] | None = None
    excludeSegments: list[Segment] | None = None


TargetMatrix = Annotated[
    Annotated[ColumnMatrix, Tag("column")] | Annotated[DatasetMatrix, Tag("dataset")],
    Discriminator(
        _tagger(["column", "dataset"]),
        custom_error_type="invalid_target_matrix",
        custom_error_message="targetMatrix.type must be 'column' or 'dataset'",
    ),
]


# ---------------------------------------------------------------------------------------------- configs
class _Config(_Model):
    version: int | None = None
    schemaVersion: int | None = None
    params: dict[str, str] | None = None


class FixedConfig(_Config):
    """Static bounds; anomaly when value < lower or value > upper (bounds themselves are fine)."""

    type: Literal["fixed"]
    metric: str
    upper: Number | None = None
    lower: Number | None = None
    nConsecutive: int | None = Field(default=None, ge=1)


class StddevConfig(_Config):
    """mean ± factor·stddev of the baseline values (defaults: factor 3, minBatchSize 3 as in the backend)."""

    type: Literal["stddev"]
    metric: str
    factor: Number | None = None
    minBatchSize: int | None = Field(default=None, ge=1)
    maxUpperThreshold: Number | None = None
    minLowerThreshold: Number | None = None
    thresholdType: Literal["upper", "lower"] | None = None
    limitType: Literal["and", "or", "conjunction", "disjunction"] | None = None
    baseline: Baseline


class DiffConfig(_Config):
    type: Literal["diff"]
    metric: str
    mode: Literal["pct", "abs"]
    threshold: Number
    thresholdType: Literal["upper", "lower"] | None = None
    baseline: Baseline

    @field_validator("threshold")
    @classmethod
    def _non_negative(cls, v: int | float) -> int | float:
        if v < 0:
            raise ValueError("threshold must be >= 0")
        return v


class DriftConfig(_Config):
    """Drift of the target column from the baseline; ``ks_test``'s value is a p-value (anomaly when it is
    below ``threshold``), every other algorithm's a distance (anomaly when above)."""

    type: Literal["drift"]
    metric: Literal["histogram", "frequent_items"]
    algorithm: Literal[
        "hellinger", "psi", "kl_divergence", "jensenshannon", "ks_test", "variation_distance"] | None = None
    threshold: Number | None = None
    minBatchSize: int | None = Field(default=None, ge=1)
    baseline: Baseline


class ExpectedValue(_Model):
    """One of ``{"str": …}``, ``{"int": …}``, ``{"float": …}``."""

    str_: str | None = Field(default=None, alias="str")
    int_: int | None = Field(default=None, alias="int")
    float_: Number | None = Field(default=None, alias="float")

    @property
    def value(self) -> str | int | float | None:
        for v in (self.float_, self.int_, self.str_):
            if v is not None:
                return v
        return None


class ComparisonConfig(_Config):
    """WhyLabs: ``expected <operator> target`` must hold (right-hand side is the target's metric)."""

    type: Literal["comparison"]
    metric: str
    operator: Literal["eq", "gt", "lt", "ge", "le"]
    expected: ExpectedValue | None = None
    baseline: Baseline | None = None


class ListComparisonConfig(_Config):
    type: Literal["list_comparison"]
    metric: str
    operator: Literal["in", "not_in"]
    expected: list[ExpectedValue] | None = None
    baseline: Baseline | None = None


class FrequentStringComparisonConfig(_Config):
    type: Literal["frequent_string_comparison"]
    metric: Literal["frequent_items"] | None = None
    operator: Literal["eq", "target_includes_all_baseline", "baseline_includes_all_target"]
    baseline: Baseline


class ColumnListConfig(_Config):
    type: Literal["column_list"]
    metric: Literal["column_list"] | None = None
    mode: Literal["ON_ADD_AND_REMOVE", "ON_ADD", "ON_REMOVE"] | None = None
    exclude: list[str] | None = None
    baseline: Baseline


class SeasonalConfig(_Config):
    """SARIMA forecast of the metric from a TrailingWindow baseline with a stddev fallback (WhyLabs
    ``SeasonalConfig``; defaults as its schema: algorithm arima, alpha 0.05, minBatchSize 30,
    stddevFactor 1). ``params`` may override the ARIMA orders ``p d q P D Q m`` and ``alpha``."""

    type: Literal["seasonal"]
    metric: str
    algorithm: Literal["arima"] | None = None
    alpha: Number | None = None
    minBatchSize: int | None = Field(default=None, ge=1)
    stddevTimeRanges: list[TimeRange] | None = None
    stddevMaxBatchSize: int | None = Field(default=None, ge=1)
    stddevFactor: Number | None = None
    maxUpperThreshold: Number | None = None
    minLowerThreshold: Number | None = None
    thresholdType: Literal["upper", "lower"] | None = None
    baseline: TrailingWindowBaseline | None = None

    @field_validator("alpha")
    @classmethod
    def _open_unit(cls, v: int | float | None) -> int | float | None:
        if v is not None and not 0 < v < 1:
            raise ValueError("alpha must be between 0 and 1 (exclusive)")
        return v

    @field_validator("params")
    @classmethod
    def _orders(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key in ("p", "d", "q", "P", "D", "Q", "m"):
            if v is not None and key in v and not (v[key].isdigit() and int(v[key]) <= 30):
                raise ValueError(f"params.{key} must be a whole number 0..30, got {v[key][:20]!r}")
        if v is not None and "alpha" in v:
            try:
                ok = 0 < float(v["alpha"]) < 1
            except ValueError:
                ok = False
            if not ok:
                raise ValueError("params.alpha must be a number between 0 and 1")
        return v


class MonotonicConfig(_Config):
    """Counts the steps in ``direction`` between the analyzer's ``targetSize`` sequential batches;
    anomaly when there are at least ``numBuckets`` (defaults as the schema: INCREASING, 1)."""

    type: Literal["monotonic"]
    metric: str
    direction: Literal["INCREASING", "DECREASING"] | None = None
    numBuckets: int | None = Field(default=None, ge=1)


class ConjunctionConfig(_Config):
    """Anomaly when every child analyzer (``analyzerIds``) flags the same target (AND)."""

    type: Literal["conjunction"]
    analyzerIds: list[str] = Field(min_length=1)


class DisjunctionConfig(_Config):
    """Anomaly when any child analyzer (``analyzerIds``) flags the same target (OR)."""

    type: Literal["disjunction"]
    analyzerIds: list[str] = Field(min_length=1)


class OtherConfig(_Config):
    """Any analyzer type Driftline does not evaluate (``experimental``, ...); kept verbatim, reported as
    not evaluated."""

    type: str | None = None
    metric: str | None = None
    baseline: Baseline | None = None


ANALYZER_TYPES = (
    "fixed",
    "stddev",
    "diff",
    "drift",
    "comparison",
    "list_comparison",
    "frequent_string_comparison",
    "column_list",
    "seasonal",
    "monotonic",
    "conjunction",
    "disjunction",
)
COMPOSITE_TYPES = ("conjunction", "disjunction")
SCHEMA_ANALYZER_TYPES = (*ANALYZER_TYPES, "experimental")
"""Every analyzer ``config.type`` of WhyLabs' monitor schema; all but ``experimental`` are evaluated."""

AnalyzerConfig = Annotated[
    Annotated[FixedConfig, Tag("fixed")]
    | Annotated[StddevConfig, Tag("stddev")]
    | Annotated[DiffConfig, Tag("diff")]
    | Annotated[DriftConfig, Tag("drift")]
    | Annotated[ComparisonConfig, Tag("comparison")]
    | Annotated[ListComparisonConfig, Tag("list_comparison")]
    | Annotated[FrequentStringComparisonConfig, Tag("frequent_string_comparison")]
    | Annotated[ColumnListConfig, Tag("column_list")]
    | Annotated[SeasonalConfig, Tag("seasonal")]
    | Annotated[MonotonicConfig, Tag("monotonic")]
    | Annotated[ConjunctionConfig, Tag("conjunction")]
    | Annotated[DisjunctionConfig, Tag("disjunction")]
    | Annotated[OtherConfig, Tag("other")],
    Discriminator(_tagger(ANALYZER_TYPES, fallback="other")),
]


# ---------------------------------------------------------------------------------------------- analyzer
class Analyzer(_Model):
    metadata: Metadata | None = None
    id: str = Field(pattern=ID_PATTERN, min_length=1, max_length=128)
    displayName: str | None = None
    tags: list[str] | None = None
    targetSize: int | None = Field(default=None, ge=1)
    schedule: AnalyzerSchedule | None = None
    disabled: bool | None = None
    disableTargetRollup: bool | None = None
    targetMatrix: TargetMatrix | None = None
    dataReadinessDuration: Duration | None = None
    batchCoolDownPeriod: Duration | None = None
    backfillGracePeriodDuration: Duration | None = None
    config: AnalyzerConfig | None = None

    @property
    def is_composite(self) -> bool:
        """A conjunction / disjunction: evaluated over its children's results, after them."""
        return isinstance(self.config, ConjunctionConfig | DisjunctionConfig)

    @property
    def is_runnable(self) -> bool:
        """True when Driftline can evaluate it (:func:`not_evaluated_reason` is None).

        (WhyLabs' documentation shows analyzers with elided parts, so they are accepted and stored.)
        """
        return not_evaluated_reason(self) is None


# ---------------------------------------------------------------------------------------------- monitor
class AnomalyFilter(_Model):
    includeColumns: list[str] | None = None
    excludeColumns: list[str] | None = None
    minWeight: Number | None = None
    maxWeight: Number | None = None
    minRankByWeight: int | None = None
    maxRankByWeight: int | None = None
    minTotalWeight: Number | None = None
    maxTotalWeight: Number | None = None
    minAlertCount: int | None = None
    maxAlertCount: int | None = None
    includeMetrics: list[str] | None = None
    excludeMetrics: list[str] | None = None


class EveryAnomalyMode(_Model):
    type: Literal["EVERY_ANOMALY"]
    filter: AnomalyFilter | None = None
    datasetTimestampOffset: Duration | None = None
    creationTimeOffset: Duration | None = None


class DigestMode(_Model):
    type: Literal["DIGEST"]
    filter: AnomalyFilter | None = None
    creationTimeOffset: Duration | None = None
    datasetTimestampOffset: Duration | None = None
    groupBy: list[str] | None = None


MonitorMode = Annotated[
    Annotated[EveryAnomalyMode, Tag("EVERY_ANOMALY")] | Annotated[DigestMode, Tag("DIGEST")],
    Discriminator(
        _tagger(["EVERY_ANOMALY", "DIGEST"]),
        custom_error_type="invalid_mode",
        custom_error_message="mode.type must be 'EVERY_ANOMALY' or 'DIGEST'",
    ),
]


class Action(_Model):
    """``global`` (an org-level action id such as ``slack``), ``email``, ``slack`` or ``webhook`` (URL)."""

    type: Literal["global", "email", "slack", "webhook"]
    target: str | None = None


class Monitor(_Model):
    metadata: Metadata | None = None
    id: str = Field(pattern=ID_PATTERN, min_length=1, max_length=128)
    displayName: str | None = None
    tags: list[str] | None = None
    analyzerIds: list[str] = Field(min_length=1)
    schedule: MonitorSchedule
    disabled: bool | None = None
    severity: int | None = None
    mode: MonitorMode
    actions: list[Action] | None = None

    @property
    def effective_severity(self) -> int:
        return 3 if self.severity is None else self.severity


# ---------------------------------------------------------------------------------------------- document
class MonitorDocument(_Model):
    id: str | None = None
    schemaVersion: int | None = None
    orgId: str | None = None
    datasetId: str | None = None
    granularity: Literal["hourly", "daily", "weekly", "monthly"] | None = None
    metadata: Metadata | None = None
    allowPartialTargetBatches: bool | None = None
    analyzers: list[Analyzer] = Field(default_factory=list)
    monitors: list[Monitor] = Field(default_factory=list)

    # ------------------------------------------------------------------ lookups
    def analyzer(self, analyzer_id: str) -> Analyzer:
        for a in self.analyzers:
            if a.id == analyzer_id:
                return a
        raise KeyError(analyzer_id)

    def monitor(self, monitor_id: str) -> Monitor:
        for m in self.monitors:
            if m.id == monitor_id:
                return m
        raise KeyError(monitor_id)

    # ------------------------------------------------------------------ copy-on-write edits
    def with_analyzer(self, analyzer: Analyzer) -> MonitorDocument:
        """New document with ``analyzer`` replacing the one with the same id (or appended)."""
        items = [analyzer if a.id == analyzer.id else a for a in self.analyzers]
        if not any(a.id == analyzer.id for a in self.analyzers):
            items.append(analyzer)
        return self.model_copy(update={"analyzers": items})

    def without_analyzer(self, analyzer_id: str) -> MonitorDocument:
        if not any(a.id == analyzer_id for a in self.analyzers):
            raise KeyError(analyzer_id)
        return self.model_copy(update={"analyzers": [a for a in self.analyzers if a.id != analyzer_id]})

    def with_monitor(self, monitor: Monitor) -> MonitorDocument:
        items = [monitor if m.id == monitor.id else m for m in self.monitors]
        if not any(m.id == monitor.id for m in self.monitors):
            items.append(monitor)
        return self.model_copy(update={"monitors": items})

    def without_monitor(self, monitor_id: str) -> MonitorDocument:
        if not any(m.id == monitor_id for m in self.monitors):
            raise KeyError(monitor_id)
        return self.model_copy(update={"monitors": [m for m in self.monitors if m.id != monitor_id]})

    # ------------------------------------------------------------------ consistency
    def reference_errors(self) -> list[dict[str, str]]:
        """Duplicate ids and monitors naming analyzers that do not exist (path + message each)."""
        out: list[dict[str, str]] = []
        seen: set[str] = set()
        for i, a in enumerate(self.analyzers):
            if a.id in seen:
                out.append({"path": f"analyzers.{i}.id", "message": f"duplicate analyzer id {a.id!r}"})
            seen.add(a.id)
        seen_m: set[str] = set()
        for i, m in enumerate(self.monitors):
            if m.id in seen_m:
                out.append({"path": f"monitors.{i}.id", "message": f"duplicate monitor id {m.id!r}"})
            seen_m.add(m.id)
            out.extend({"path": e["path"], "message": e["message"]}
                       for e in monitor_reference_errors(m, seen, f"monitors.{i}."))
        return out

    def check_references(self, allow_unknown_analyzers: bool = False) -> None:
        """Raise :class:`MonitorConfigError` when :meth:`reference_errors` finds anything (duplicate
        ids only, with ``allow_unknown_analyzers``)."""
        errors = [e for e in self.reference_errors()
                  if not (allow_unknown_analyzers and e["message"].startswith("unknown analyzer id"))]
        if errors:
            raise MonitorConfigError([{**e, "type": "reference"} for e in errors])

    def validation_errors(self, model: str | None = None) -> list[dict[str, str]]:
        """What makes the document unfit to store for ``model``: duplicate ids, monitors naming analyzers
        the document lacks, and a ``datasetId`` other than ``model``. The one check of every write,
        whole-document or single analyzer/monitor."""
        errors = [{**e, "type": "reference"} for e in self.reference_errors()]
        if model is not None and self.datasetId is not None and self.datasetId != model:
            errors.insert(0, {"path": "datasetId", "type": "dataset_mismatch",
                              "message": f"datasetId {self.datasetId[:128]!r} differs from the model {model!r} "
                                         f"it is stored for: omit it or set it to {model!r}"})
        return errors

    def validate_for(self, model: str | None = None) -> None:
        """Raise :class:`MonitorConfigError` listing :meth:`validation_errors`, if any."""
        errors = self.validation_errors(model)
        if errors:
            raise MonitorConfigError(errors)

    def evaluation_warnings(self) -> list[dict[str, str]]:
        """One ``{"path", "analyzerId", "type", "message"}`` per enabled analyzer Driftline will not
        evaluate (the PUT response returns them; the engine stores a ``NotEvaluated`` result for each),
        including composites naming analyzers the document lacks."""
        out: list[dict[str, str]] = []
        ids = {a.id for a in self.analyzers}
        for i, a in enumerate(self.analyzers):
            if a.disabled:
                continue
            reason = not_evaluated_reason(a, ids)
            if reason is not None:
                out.append({"path": f"analyzers.{i}", "analyzerId": a.id, "type": "not_evaluated", "message": reason})
        return out

    def monitors_for(self, analyzer_id: str) -> list[Monitor]:
        """Enabled monitors that listen to ``analyzer_id``."""
        return [m for m in self.monitors if not m.disabled and analyzer_id in m.analyzerIds]


def not_evaluated_reason(analyzer: Analyzer, analyzer_ids: Iterable[str] | None = None) -> str | None:
    """Why Driftline cannot evaluate ``analyzer`` (None: it can). ``analyzer_ids`` are the document's
    analyzer ids, checked against a composite's ``analyzerIds`` when given."""
    c = analyzer.config
    if c is None:
        return "the analyzer has no config"
    if isinstance(c, OtherConfig):
        kind = c.type if c.type else "(none)"
        why = ("experimental analyzers run an implementation private to WhyLabs ('implementation' names it)"
               if kind == "experimental" else f"it is not an analyzer type of WhyLabs' monitor schema "
                                               f"({', '.join(SCHEMA_ANALYZER_TYPES)})")
        return f"analyzer type {kind[:100]!r} is not evaluated by Driftline: {why}"
    if isinstance(c, ConjunctionConfig | DisjunctionConfig):
        if analyzer.id in c.analyzerIds:
            return f"{c.type} analyzer {analyzer.id!r} names itself in analyzerIds"
        missing = [x for x in c.analyzerIds if analyzer_ids is not None and x not in set(analyzer_ids)]
        if missing:
            return f"{c.type} analyzerIds name analyzers the document does not contain: {missing[:10]}"
        return None
    if analyzer.targetMatrix is None:
        return "the analyzer has no targetMatrix: nothing to target"
    if isinstance(c, SeasonalConfig) and c.baseline is None:
        return "seasonal analyzers need a TrailingWindow baseline (WhyLabs' schema requires one)"
    if isinstance(c, MonotonicConfig) and analyzer.targetSize is not None and analyzer.targetSize < 2:
        return "monotonic analyzers need targetSize >= 2 (the batches compared step by step)"
    return None


def monitor_reference_errors(monitor: Monitor, analyzer_ids: Iterable[str], prefix: str = "") -> list[dict[str, str]]:
    """``analyzerIds`` of ``monitor`` that are not among ``analyzer_ids`` (path under ``prefix``)."""
    known = set(analyzer_ids)
    return [{"path": f"{prefix}analyzerIds.{j}", "type": "reference", "message": f"unknown analyzer id {aid!r}"}
            for j, aid in enumerate(monitor.analyzerIds) if aid not in known]


# ---------------------------------------------------------------------------------------------- errors
_UNION_FIELDS: dict[str, frozenset[str]] = {
    "config": frozenset((*ANALYZER_TYPES, "other")),
    "baseline": frozenset(BASELINE_TYPES),
    "schedule": frozenset(("fixed", "cron", "immediate")),
    "targetMatrix": frozenset(("column", "dataset")),
    "mode": frozenset(("EVERY_ANOMALY", "DIGEST")),
}


def _clean_loc(loc: tuple[int | str, ...]) -> list[int | str]:
    out: list[int | str] = []
    for i, part in enumerate(loc):
        prev = loc[i - 1] if i else None
        if isinstance(part, str) and isinstance(prev, str) and part in _UNION_FIELDS.get(prev, ()):
            continue
        if isinstance(part, str) and part.startswith(("function-", "tagged-union[")):
            continue
        out.append(part)
    return out


class MonitorConfigError(ValueError):
    """Invalid monitor configuration; ``errors`` = ``[{"path", "message", "type"}]``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['path'] or '<root>'}: {e['message']}" for e in errors))


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic errors as ``{"path": "analyzers.0.config.threshold", "message", "type"}`` (deduplicated)."""
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for e in exc.errors(include_url=False):
        parts = [str(p) for p in _clean_loc(tuple(e["loc"]))]
        path = ".".join([prefix, *parts] if prefix else parts)
        msg = str(e["msg"]).removeprefix("Value error, ")
        if (path, msg) in seen:
            continue
        seen.add((path, msg))
        out.append({"path": path, "message": msg, "type": str(e["type"])})
    return out


def _parse(model: type[_Model], data: Any, prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MonitorConfigError(format_validation_error(exc, prefix)) from None


def parse_document(data: Any, check_references: bool = False) -> MonitorDocument:
    """Validate a whole monitor document; raises :class:`MonitorConfigError` naming paths."""
    doc: MonitorDocument = _parse(MonitorDocument, data, "")
    if check_references:
        doc.check_references()
    return doc


def parse_analyzer(data: Any, prefix: str = "") -> Analyzer:
    out: Analyzer = _parse(Analyzer, data, prefix)
    return out


def parse_monitor(data: Any, prefix: str = "") -> Monitor:
    out: Monitor = _parse(Monitor, data, prefix)
    return out
