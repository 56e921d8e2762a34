"""Monitoring configuration: models and their validations (stored by `stream.store.config.ConfigRepository`).

A worker holds one `ConfigSnapshot` (every model with its compiled validations, at one config
version) and swaps in a new one when the stored version moved.

>>> m = ModelConfig(name="house-price", segment_keys=["in.city"])
>>> m.granularity, m.window_ms
('hourly', 3600000)
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stream.config.validations import ValidationSet

MODEL_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
Granularity = Literal["minute", "hourly", "daily", "weekly", "monthly"]
GRANULARITY_MS: dict[str, int] = {
    "minute": 60_000, "hourly": 3_600_000, "daily": 86_400_000, "weekly": 7 * 86_400_000,
    "monthly": 31 * 86_400_000,  # only used as the default allowed lateness; windows are calendar months
}
COLUMN_PREFIXES = ("in.", "out.", "gt.", "tag.")


class ModelConfig(BaseModel):
    """A monitored model: how its events are windowed and segmented."""

    model_config = ConfigDict(extra="forbid")

    name: str
    granularity: Granularity = "hourly"
    segment_keys: list[str] = Field(default_factory=list, max_length=8)
    column_weights: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    # Events later than this behind the model's watermark still merge into their window, counted as late.
    allowed_lateness_seconds: int | None = Field(default=None, ge=0, le=90 * 86_400)
    # A window also closes when no event arrived for this long (wall clock).
    idle_timeout_seconds: int = Field(default=300, ge=1, le=7 * 86_400)
    max_segments: int = Field(default=1000, ge=1, le=100_000)
    # Numeric list columns profiled element-wise as `<col>[]` besides their length.
    list_elements: list[str] = Field(default_factory=list)
    # Keep predictions (events with an event_id and an output) in the store so ground truth sent later
    # by event_id is joined to them (docs/online-analysis.md); off by default: one store insert per batch.
    late_ground_truth: bool = False

    @field_validator("name")
    @classmethod
    def _dns_safe(cls, v: str) -> str:
        if not MODEL_NAME.match(v):
            raise ValueError("model name must be DNS-safe: lowercase letters, digits and '-', 1-63 chars, "
                             "starting and ending with a letter or digit")
        return v

    @field_validator("segment_keys", "list_elements")
    @classmethod
    def _flattened(cls, v: list[str]) -> list[str]:
        for key in v:
            if not key.startswith(COLUMN_PREFIXES) or len(key) > 256:
                raise ValueError(f"{key!r} is not a flattened column name (in.*, out.*, gt.*, tag.*)")
        return v

    @property
    def window_ms(self) -> int:
        return GRANULARITY_MS[self.granularity]

    @property
    def lateness_ms(self) -> int:
        if self.allowed_lateness_seconds is None:
            return self.window_ms  # default: one window length
        return self.allowed_lateness_seconds * 1000


class ModelState(BaseModel):
    """What a worker needs of one model: its settings and compiled validations."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: ModelConfig
    validations: ValidationSet
    version: int
    # Row filters of the model's Arthur metrics, by the segment their minute profiles go to.
    row_filters: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class ConfigSnapshot(BaseModel):
    """All models at one config version."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    version: int = 0
    models: dict[str, ModelState] = Field(default_factory=dict)
