"""The `config` table: configuration documents of record by (kind, model, key), versioned, soft-deleted.

Every write gets a new, larger version (nanoseconds since the epoch), which is what lineage records
as the config version of a window; a delete writes a tombstone row (`deleted = 1`), and readers take
the newest row of a (kind, model, key) (`FINAL`). The kinds of document are named here, in
:class:`ConfigKind`, and nowhere else. Writers (API, CLI) call `ConfigRepository.put_*`; workers call
`ConfigRepository.snapshot()` every couple of seconds and swap in the new `ConfigSnapshot` when its
version moved, so changes reach a running stream within seconds and without restart. The typed
repositories of the other kinds (`stream.store.rules`, `stream.store.assays`, the review flags of
`stream.store.anomalies`) store through the public methods of :class:`ConfigRepository`.

>>> ConfigKind("assay") is ConfigKind.ASSAY, str(ConfigKind.MONITOR_CONFIG)
(True, 'monitor_config')
>>> ConfigDocument("flag", "house", "event-1", '{"reason":"odd"}', 1).body()
{'reason': 'odd'}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from stream.config.models import ConfigSnapshot, ModelConfig, ModelState
from stream.config.row_filters import filter_segment, metric_filters
from stream.config.validations import Validation, ValidationSet
from stream.store.client import Store, Where

__all__ = ["ConfigDocument", "ConfigKind", "ConfigRepository", "TypedConfigs"]

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)
_COLUMNS = ["kind", "model", "key", "body", "version", "deleted", "updated_at"]


class ConfigKind(StrEnum):
    """What a row of the `config` table holds (its `kind` column); the key column names the item."""

    MODEL = "model"  # a ModelConfig, key ""
    VALIDATION = "validation"  # {"expression"}, key = validation name
    MONITOR_CONFIG = "monitor_config"  # the WhyLabs monitor document, key ""
    METRIC = "metric"  # an Arthur custom metric, key = metric id
    ALERT_RULE = "alert_rule"  # an Arthur alert rule, key = rule id
    ASSAY = "assay"  # a Wallaroo assay, key = assay id
    FLAG = "flag"  # an mltrace review flag, key = event id
    NOTIFICATION_ACTION = "notification_action"  # a global notification action, model "", key = action id
    DETECTOR = "detector"  # a river change detector (stream.analysis.detectors.DetectorConfig), key = detector id
    ESTIMATOR = "estimator"  # a CBPE performance estimator (stream.analysis.cbpe.Estimator), key = score column


@dataclass(frozen=True)
class ConfigDocument:
    """The live row of one (kind, model, key): its JSON body (parsed on demand) and version."""

    kind: str
    model: str
    key: str
    body_json: str
    version: int

    def body(self) -> Any:
        return orjson.loads(self.body_json)


class ConfigRepository:
    """Reads and writes configuration documents in the store's `config` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- documents of any kind ----------------------------------------------------------------
    def put(self, kind: ConfigKind, model: str, key: str, body: Any, *, deleted: bool = False) -> int:
        """Write a new version of (kind, model, key); a `deleted` row is a tombstone. Returns the version."""
        version = time.time_ns()
        self.store.insert("config", [[str(kind), model, key, orjson.dumps(body).decode(), version, int(deleted),
                                      datetime.now(UTC)]], _COLUMNS)
        return version

    def documents(self, kind: ConfigKind | None = None, model: str | None = None,
                  key: str | None = None) -> list[ConfigDocument]:
        """Live documents, ordered by (kind, model, key); None selects every kind, model or key."""
        where = Where().add("deleted = 0").equals("kind", "kind", None if kind is None else str(kind))
        where.equals("model", "model", model).equals("key", "key", key)
        rows = self.store.query_rows(
            f"SELECT kind, model, key, body, version FROM {self.store.table('config')} FINAL "
            f"WHERE {where.sql()} ORDER BY kind, model, key", where.params)
        return [ConfigDocument(str(k), str(m), str(name), str(body), int(v)) for k, m, name, body, v in rows]

    def document(self, kind: ConfigKind, model: str, key: str) -> ConfigDocument | None:
        found = self.documents(kind, model, key)
        return found[0] if found else None

    def delete(self, kind: ConfigKind, model: str, key: str) -> bool:
        """Tombstone one live document; False when there is none."""
        if self.document(kind, model, key) is None:
            return False
        self.put(kind, model, key, None, deleted=True)
        return True

    def ever_written(self, kind: ConfigKind, model: str, key: str) -> bool:
        """Whether (kind, model, key) was ever written, deleted since or not."""
        rows = self.store.query_rows(
            f"SELECT count() FROM (SELECT 1 FROM {self.store.table('config')} WHERE kind = {{kind:String}} "
            "AND model = {model:String} AND key = {key:String} LIMIT 1)",
            {"kind": str(kind), "model": model, "key": key})
        return bool(rows and int(rows[0][0]) > 0)

    # -- models ------------------------------------------------------------------------------
    def put_model(self, model: ModelConfig) -> int:
        return self.put(ConfigKind.MODEL, model.name, "", model.model_dump())

    def get_model(self, name: str) -> ModelConfig | None:
        found = self.document(ConfigKind.MODEL, name, "")
        return None if found is None else ModelConfig.model_validate(found.body())

    def list_models(self, tag: str | None = None) -> list[ModelConfig]:
        """All models; `tag` filters by `key` or `key:value`."""
        models = [ModelConfig.model_validate(d.body()) for d in self.documents(ConfigKind.MODEL)]
        if tag is None:
            return models
        key, _, value = tag.partition(":")
        return [m for m in models if key in m.tags and (not value or m.tags[key] == value)]

    def delete_model(self, name: str) -> bool:
        """Tombstone the model and every document of it (validations, monitors, rules, assays, flags)."""
        if self.get_model(name) is None:
            return False
        for found in self.documents(model=name):
            self.put(ConfigKind(found.kind), name, found.key, None, deleted=True)
        return True

    # -- validations -------------------------------------------------------------------------
    def put_validation(self, model: str, validation: Validation) -> int:
        return self.put(ConfigKind.VALIDATION, model, validation.name, {"expression": validation.expression})

    def delete_validation(self, model: str, name: str) -> bool:
        return self.delete(ConfigKind.VALIDATION, model, name)

    def get_validations(self, model: str) -> ValidationSet:
        validations = ValidationSet()
        for found in self.documents(ConfigKind.VALIDATION, model):
            validations = validations.with_validation(Validation.create(found.key, found.body()["expression"]))
        return validations

    # -- snapshot for workers ------------------------------------------------------------------
    def current_version(self) -> int:
        """The newest version of any row, tombstones included (a delete moves it too)."""
        rows = self.store.query_rows(f"SELECT max(version) FROM {self.store.table('config')}")
        return int(rows[0][0] or 0)

    def snapshot(self) -> ConfigSnapshot:
        """Every model with its validations and the row filters of its Arthur metrics."""
        documents = self.documents()
        version = self.current_version()
        models: dict[str, ModelState] = {}
        for found in documents:
            if found.kind == ConfigKind.MODEL:
                models[found.model] = ModelState(model=ModelConfig.model_validate(found.body()),
                                                 validations=ValidationSet(), version=found.version)
        for found in documents:
            state = models.get(found.model)
            if found.kind == ConfigKind.VALIDATION and state is not None:
                state.validations = state.validations.with_validation(
                    Validation.create(found.key, found.body()["expression"]))
                state.version = max(state.version, found.version)
            if found.kind == ConfigKind.METRIC and state is not None:
                try:
                    filters = metric_filters(found.body().get("query") or {})
                except (ValidationError, ValueError, AttributeError) as exc:  # stored by an older version
                    log.warning("metric %s of model %s: filter ignored (%s)", found.key, found.model, exc)
                    continue
                if filters:
                    state.row_filters[filter_segment(filters)] = filters
        return ConfigSnapshot(version=version, models=models)


class TypedConfigs(Generic[T]):
    """The documents of one kind as pydantic models of one type, each keyed by a field of its own
    (a detector's id, an estimator's score column): the typed repositories of `stream.store.detections`
    and `stream.store.estimates` are this with their kind, type and key."""

    def __init__(self, store: Store, kind: ConfigKind, parse: Callable[[Any], T], key_of: Callable[[T], str]) -> None:
        self.config = ConfigRepository(store)
        self.kind, self.parse, self.key_of = kind, parse, key_of

    def put(self, model: str, item: T) -> int:
        return self.config.put(self.kind, model, self.key_of(item), item.model_dump())

    def get(self, model: str, key: str) -> T | None:
        found = self.config.document(self.kind, model, key)
        return None if found is None else self.parse(found.body())

    def of_model(self, model: str) -> list[T]:
        return [self.parse(d.body()) for d in self.config.documents(self.kind, model)]

    def delete(self, model: str, key: str) -> bool:
        return self.config.delete(self.kind, model, key)

    def all(self) -> dict[str, list[T]]:
        """model → its items, for the worker; a stored body this version cannot read is skipped."""
        out: dict[str, list[T]] = {}
        for found in self.config.documents(self.kind):
            try:
                out.setdefault(found.model, []).append(self.parse(found.body()))
            except ValidationError as exc:
                log.warning("%s %s of model %s ignored: %s", self.kind, found.key, found.model, exc)
        return out
