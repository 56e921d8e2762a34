"""Request and response bodies of the API (pydantic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream.config.models import Granularity


class ModelBody(BaseModel):
    """A model's settings without its name (PUT replaces all of them)."""

    model_config = ConfigDict(extra="forbid")

    granularity: Granularity = "hourly"
    segment_keys: list[str] = Field(default_factory=list, max_length=8)
    column_weights: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    allowed_lateness_seconds: int | None = Field(default=None, ge=0, le=90 * 86_400)
    idle_timeout_seconds: int = Field(default=300, ge=1, le=7 * 86_400)
    max_segments: int = Field(default=1000, ge=1, le=100_000)
    list_elements: list[str] = Field(default_factory=list)
    late_ground_truth: bool = Field(default=False, description="keep predictions so ground truth sent later by "
                                                               "event_id is joined to them (one store insert "
                                                               "per batch)")


class ModelCreate(ModelBody):
    name: str = Field(description="DNS-safe: ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ModelOut(ModelCreate):
    pass


class ModelPage(BaseModel):
    items: list[ModelOut]
    page: int
    page_size: int
    total: int


class Tags(BaseModel):
    tags: dict[str, str]


class ValidationOut(BaseModel):
    name: str
    expression: str


class Validations(BaseModel):
    model: str
    validations: dict[str, str]


class WindowOut(BaseModel):
    window_start: str
    segment: str
    row_count: int
    columns: dict[str, dict[str, Any]]


class PerformanceWindowOut(BaseModel):
    window_start: str
    segment: str
    row_count: int
    performance: dict[str, dict[str, Any]] = Field(
        description="per ground-truth column `gt.X` (paired with the output `out.X`): classification (accuracy, "
                    "precision, recall, f1, fpr, tpr, tnr, fnr, confusion counts…) or regression (mae, mse, rmse, "
                    "r2) metrics")


class PerformanceOut(BaseModel):
    model: str
    granularity: str
    start: str
    end: str
    rollup: bool
    windows: list[PerformanceWindowOut]


class ProfilesOut(BaseModel):
    model: str
    granularity: str
    start: str
    end: str
    rollup: bool
    windows: list[WindowOut]


class RangeOut(BaseModel):
    start: str | None = None
    end: str | None = None
    reference: str | None = None
    row_count: int


class ColumnDriftOut(BaseModel):
    distance: float | None = Field(description="null when the column has no values on one side (see `missing`)")
    discrete: bool
    missing: Literal["baseline", "target"] | None = Field(
        default=None, description="the side without values of the column (absent there, or only nulls)")


class DriftOut(BaseModel):
    model: str
    algorithm: str
    segment: str
    baseline: RangeOut
    target: RangeOut
    columns: dict[str, ColumnDriftOut]


class Accepted(BaseModel):
    accepted: int
    messages: int
    topic: str


class AnomalyOut(BaseModel):
    id: str
    event_time: str
    event_id: str
    model_version: str
    segment: str
    anomaly_count: int
    failed: list[str]
    event_values: Any
    source_topic: str
    source_partition: int
    source_offset: int
    config_version: int


class AnomalyPage(BaseModel):
    items: list[AnomalyOut]
    page: int
    page_size: int
    total: int


class CountOut(BaseModel):
    interval_start: str
    validation: str
    count: int


class CountsOut(BaseModel):
    model: str
    interval: str
    counts: list[CountOut]


class FieldError(BaseModel):
    """One field-level error (the same shape for request validation, monitor documents, metrics, ingest)."""

    loc: list[str] = Field(description="where the bad value is: first `body`, `query`, `path` or `header`, then "
                                       "the keys and 0-based indexes down to it (ingest: the event's index in the "
                                       "array, its 0-based line in NDJSON or its row in Arrow, then the field)",
                           examples=[["body", "analyzers", "0", "config", "threshold"]])
    path: str = Field(description="`loc` joined with '.'", examples=["body.analyzers.0.config.threshold"])
    msg: str = Field(description="what is wrong, for humans", examples=["Input should be a valid number"])
    type: str = Field(description="a short machine-readable code", examples=["float_parsing"])


class ErrorBody(BaseModel):
    """Every error the API answers (4xx and 5xx): `detail` is a text for errors about the request as a whole
    (401, 403, 404, 409, 413, 414, 415, 503, ...), and a list of field errors when particular values are wrong
    (422 from request validation, monitor documents, metrics and alert rules, ingest)."""

    detail: str | list[FieldError] = Field(examples=["unknown model 'house'", [
        {"loc": ["body", "granularity"], "path": "body.granularity", "msg": "Input should be 'hourly' or 'daily'",
         "type": "literal_error"}]])


ErrorOut = ErrorBody  # former name


Scalar = str | int | float | bool | None
Value = Annotated[Scalar | list[Scalar], Field(description="a scalar or a list of scalars (no objects)")]
Section = Annotated[dict[str, Value] | None, Field(description="column name → value")]


class Event(BaseModel):
    """One inference event as the ingest route accepts it (nested form). Documentation only: the route
    reads the raw body. Unknown top-level keys are taken as inputs (see `FlatEvent`)."""

    model_config = ConfigDict(extra="allow", title="Event")

    model: str | None = Field(default=None, description="the model; when given it must be the path's model",
                              pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    timestamp: int | float | str | None = Field(
        default=None, description="epoch milliseconds (0 ≤ t < year 10000) or ISO-8601 text (naive = the "
                                  "worker's local time, use `Z` or an offset); omitted: the Kafka record time")
    event_id: str | int | None = Field(default=None, description="the caller's id of the event (text, ≤ 256 "
                                                                 "characters kept)")
    model_version: str | int | None = Field(default=None, description="the model version that answered")
    elapsed_ns: int | float | None = Field(default=None, description="inference latency in nanoseconds (finite, "
                                                                     "within int64)")
    inputs: Section = None
    outputs: Section = None
    ground_truth: Section = None
    tags: Section = None


class FlatEvent(BaseModel):
    """One event as a flat record (pandas `to_dict(orient="records")`): keys `in.<x>`, `out.<y>`, `gt.<z>`,
    `tag.<t>`; keys without a prefix that are not event fields are inputs."""

    model_config = ConfigDict(extra="allow", title="FlatEvent",
                              json_schema_extra={"additionalProperties": {"anyOf": [
                                  {"type": ["string", "number", "integer", "boolean", "null"]},
                                  {"type": "array", "items": {"type": ["string", "number", "integer", "boolean",
                                                                       "null"]}}]}})

    model: str | None = Field(default=None, description="the model; when given it must be the path's model")
    timestamp: int | float | str | None = Field(default=None, description="as in `Event`")
    event_id: str | int | None = None
    model_version: str | int | None = None
    elapsed_ns: int | float | None = None


class AnalyzerWarning(BaseModel):
    """An analyzer that was stored but that Driftline will not evaluate (analyzer-results gets a
    ``NotEvaluated`` result for it instead of silence)."""

    path: str = Field(description="where in the document, e.g. `analyzers.3`")
    analyzerId: str
    type: Literal["not_evaluated"] = "not_evaluated"
    message: str = Field(description="why it is not evaluated")


class MonitorDocumentOut(BaseModel):
    """The monitor document (or analyzer) as stored, plus `warnings` when any analyzer will not be evaluated."""

    model_config = ConfigDict(extra="allow")
    warnings: list[AnalyzerWarning] | None = Field(
        default=None, description="present only when an enabled analyzer is not evaluated (e.g. `experimental`)")
