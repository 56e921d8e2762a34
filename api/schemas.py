"""Request and response bodies of the API (pydantic)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from stream.config import Granularity


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


class ColumnDrift(BaseModel):
    distance: float
    discrete: bool


class DriftOut(BaseModel):
    model: str
    algorithm: str
    segment: str
    baseline: RangeOut
    target: RangeOut
    columns: dict[str, ColumnDrift]


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


class ErrorOut(BaseModel):
    detail: Any
