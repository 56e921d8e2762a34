"""Monitoring configuration: models and their validations, stored in ClickHouse (store of record).

Writers (API, CLI) call `ConfigRepository.put_*`; workers call `ConfigRepository.snapshot()` every
couple of seconds and swap in the new `ConfigSnapshot` when its version moved, so changes reach a
running stream within seconds and without restart. Every write gets a new, larger version
(nanoseconds since the epoch), which is what lineage records as the config version of a window.

>>> m = ModelConfig(name="house-price", segment_keys=["in.city"])
>>> m.granularity, m.window_ms
('hourly', 3600000)
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stream.config.row_filters import filter_segment, metric_filters
from stream.config.validations import Validation, ValidationSet
from stream.store.client import Store

log = logging.getLogger(__name__)
# Config kind of Arthur custom metrics (written by stream.store.rules; their filters are read here).
METRIC_KIND = "metric"

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


def _version() -> int:
    return time.time_ns()


class ConfigRepository:
    """Reads and writes configuration documents in the store's `config` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _put(self, kind: str, model: str, key: str, body: Any, deleted: bool = False) -> int:
        version = _version()
        self.store.insert(
            "config", [[kind, model, key, orjson.dumps(body).decode(), version, int(deleted), datetime.now(UTC)]],
            ["kind", "model", "key", "body", "version", "deleted", "updated_at"],
        )
        return version

    def _rows(self, kind: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        where, params = ["deleted = 0"], {}
        if kind is not None:
            where.append("kind = {kind:String}")
            params["kind"] = kind
        if model is not None:
            where.append("model = {model:String}")
            params["model"] = model
        return self.store.query_dicts(
            f"SELECT kind, model, key, body, version FROM {self.store.table('config')} FINAL "
            f"WHERE {' AND '.join(where)} ORDER BY kind, model, key", params)

    # -- models ------------------------------------------------------------------------------
    def put_model(self, model: ModelConfig) -> int:
        return self._put("model", model.name, "", model.model_dump())

    def get_model(self, name: str) -> ModelConfig | None:
        rows = self._rows("model", name)
        return ModelConfig.model_validate(orjson.loads(rows[0]["body"])) if rows else None

    def list_models(self, tag: str | None = None) -> list[ModelConfig]:
        """All models; `tag` filters by `key` or `key:value`."""
        models = [ModelConfig.model_validate(orjson.loads(r["body"])) for r in self._rows("model")]
        if tag is None:
            return models
        key, _, value = tag.partition(":")
        return [m for m in models if key in m.tags and (not value or m.tags[key] == value)]

    def delete_model(self, name: str) -> bool:
        if self.get_model(name) is None:
            return False
        for row in self._rows(model=name):
            self._put(row["kind"], name, row["key"], None, deleted=True)
        return True

    # -- validations -------------------------------------------------------------------------
    def put_validation(self, model: str, validation: Validation) -> int:
        return self._put("validation", model, validation.name, {"expression": validation.expression})

    def delete_validation(self, model: str, name: str) -> bool:
        return self._delete("validation", model, name)

    def _delete(self, kind: str, model: str, key: str) -> bool:
        """Tombstone one stored document; False when there is none."""
        if not self._rows_for(kind, model, key):
            return False
        self._put(kind, model, key, None, deleted=True)
        return True

    def _rows_for(self, kind: str, model: str, key: str) -> list[dict[str, Any]]:
        return [r for r in self._rows(kind, model) if r["key"] == key]

    def get_validations(self, model: str) -> ValidationSet:
        validations = ValidationSet()
        for row in self._rows("validation", model):
            validations = validations.with_validation(
                Validation.create(row["key"], orjson.loads(row["body"])["expression"]))
        return validations

    # -- snapshot for workers ------------------------------------------------------------------
    def current_version(self) -> int:
        rows = self.store.query_rows(f"SELECT max(version) FROM {self.store.table('config')}")
        return int(rows[0][0] or 0)

    def snapshot(self) -> ConfigSnapshot:
        rows = self._rows()
        version = self.current_version()
        models: dict[str, ModelState] = {}
        for row in rows:
            if row["kind"] == "model":
                models[row["model"]] = ModelState(
                    model=ModelConfig.model_validate(orjson.loads(row["body"])),
                    validations=ValidationSet(), version=row["version"])
        for row in rows:
            state = models.get(row["model"])
            if row["kind"] == "validation" and state is not None:
                state.validations = state.validations.with_validation(
                    Validation.create(row["key"], orjson.loads(row["body"])["expression"]))
                state.version = max(state.version, row["version"])
            if row["kind"] == METRIC_KIND and state is not None:
                try:
                    filters = metric_filters(orjson.loads(row["body"]).get("query") or {})
                except (ValidationError, ValueError, AttributeError) as exc:  # stored by an older version
                    log.warning("metric %s of model %s: filter ignored (%s)", row["key"], row["model"], exc)
                    continue
                if filters:
                    state.row_filters[filter_segment(filters)] = filters
        return ConfigSnapshot(version=version, models=models)
