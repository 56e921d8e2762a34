"""Change detectors: their configuration (the `config` table, kind `detector`) and their detections
(the `detections` table, one row per change found, keyed by the source position of the event it was
found at — a replayed batch finds the same change and replaces the row).

The API writes configurations through :class:`DetectorRepository`; the worker reads all of them when
its config snapshot moves (:meth:`DetectorRepository.all`) and writes detections
(:func:`write_detections`); the API lists them (:func:`list_detections`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.analysis.detectors import Detection, DetectorConfig
from stream.store.client import Store, Where
from stream.store.config import ConfigKind, TypedConfigs

__all__ = ["DETECTION_COLUMNS", "DetectorRepository", "list_detections", "write_detections"]

DETECTION_COLUMNS = ("model", "detector_id", "detector", "series", "segment", "event_time", "source_topic",
                     "source_partition", "source_offset", "source_index", "value", "statistics", "alert_id",
                     "alerted", "detected_at")


def _ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


class DetectorRepository(TypedConfigs[DetectorConfig]):
    """Detector configurations of models, in the `config` table (key = detector id)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, ConfigKind.DETECTOR,
                         lambda body: DetectorConfig.model_validate(body, context={"stored": True}), lambda d: d.id)


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
