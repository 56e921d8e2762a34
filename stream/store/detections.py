"""Change detectors: their configuration (the `config` table, kind `detector`) and their detections
(the `detections` table, one row per change found, keyed by the source position of the event it was
found at — a replayed batch finds the same change and replaces the row).

The API writes configurations through :class:`DetectorRepository`; the worker reads all of them when
its config snapshot moves (:meth:`DetectorRepository.all_configs`) and writes detections
(:func:`write_detections`); the API lists them (:func:`list_detections`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from stream.analysis.detectors import Detection, DetectorConfig
from stream.store.client import Store, Where
from stream.store.config import ConfigKind, ConfigRepository

__all__ = ["DETECTION_COLUMNS", "DetectorRepository", "list_detections", "write_detections"]

log = logging.getLogger(__name__)
DETECTION_COLUMNS = ("model", "detector_id", "detector", "series", "segment", "event_time", "source_topic",
                     "source_partition", "source_offset", "source_index", "value", "statistics", "alert_id",
                     "alerted", "detected_at")


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


class DetectorRepository:
    """Detector configurations of models, in the `config` table."""

    def __init__(self, store: Store) -> None:
        self.config = ConfigRepository(store)

    def put(self, model: str, detector: DetectorConfig) -> int:
        return self.config.put(ConfigKind.DETECTOR, model, detector.id, detector.model_dump())

    def get(self, model: str, detector_id: str) -> DetectorConfig | None:
        found = self.config.document(ConfigKind.DETECTOR, model, detector_id)
        return None if found is None else DetectorConfig.model_validate(found.body(), context={"stored": True})

    def of_model(self, model: str) -> list[DetectorConfig]:
        return [DetectorConfig.model_validate(d.body(), context={"stored": True})
                for d in self.config.documents(ConfigKind.DETECTOR, model)]

    def delete(self, model: str, detector_id: str) -> bool:
        return self.config.delete(ConfigKind.DETECTOR, model, detector_id)

    def all_configs(self) -> dict[str, list[DetectorConfig]]:
        """model → its detectors, for the worker; a stored body this version cannot read is skipped."""
        out: dict[str, list[DetectorConfig]] = {}
        for found in self.config.documents(ConfigKind.DETECTOR):
            try:
                detector = DetectorConfig.model_validate(found.body(), context={"stored": True})
                out.setdefault(found.model, []).append(detector)
            except ValidationError as exc:
                log.warning("detector %s of model %s ignored: %s", found.key, found.model, exc)
        return out


def write_detections(store: Store, source_topic: str, detections: Sequence[Detection]) -> int:
    rows = [[d.model, d.detector_id, d.detector, d.series, d.segment, _ms(d.event_time), source_topic, d.partition,
             d.offset, d.index, d.value, orjson.dumps(d.statistics).decode(), d.alert_id, int(d.alerted),
             _ms(d.detected_at)] for d in detections]
    return store.insert("detections", rows, DETECTION_COLUMNS)


def list_detections(store: Store, model: str, detector_id: str | None = None, start_ms: int | None = None,
                    end_ms: int | None = None, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Detections of `model` (optionally one detector, event time in [start, end)), newest first, with
    the total number matching; times as epoch ms (`event_time_ms`, `detected_at_ms`)."""
    where = Where().equals("model", "model", model).equals("detector_id", "detector_id", detector_id)
    where.time_range("event_time", start_ms, end_ms)
    table = store.table("detections")
    total = store.query_rows(f"SELECT count() FROM {table} FINAL WHERE {where.sql()}", where.params)
    rows = store.query_dicts(
        f"SELECT model, detector_id, detector, series, segment, toUnixTimestamp64Milli(event_time) AS event_time_ms, "
        f"source_topic, source_partition, source_offset, source_index, value, statistics, alert_id, alerted, "
        f"toUnixTimestamp64Milli(detected_at) AS detected_at_ms FROM {table} FINAL WHERE {where.sql()} "
        "ORDER BY event_time_ms DESC, source_partition, source_offset DESC, source_index DESC "
        "LIMIT {limit:UInt32} OFFSET {offset:UInt32}", {**where.params, "limit": limit, "offset": offset})
    for row in rows:
        row["statistics"] = orjson.loads(row["statistics"])
        row["alerted"] = bool(row["alerted"])
    return rows, int(total[0][0]) if total else 0
