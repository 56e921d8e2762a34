"""Store rows → response models, shared by routers."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from api.params import iso
from api.schemas import AnomalyOut


def anomaly_id(row: dict[str, Any]) -> str:
    raw = orjson.dumps([row["source_topic"], int(row["source_partition"]), int(row["source_offset"]),
                        row["event_id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def anomaly_out(row: dict[str, Any]) -> AnomalyOut:
    try:
        values = orjson.loads(row["event_values"]) if row["event_values"] else None
    except orjson.JSONDecodeError:
        values = row["event_values"]
    return AnomalyOut(
        id=anomaly_id(row), event_time=iso(int(row["event_time_ms"])),
        event_id=row["event_id"], model_version=row["model_version"], segment=row["segment"],
        anomaly_count=int(row["anomaly_count"]), failed=list(row["failed"]), event_values=values,
        source_topic=row["source_topic"], source_partition=int(row["source_partition"]),
        source_offset=int(row["source_offset"]), config_version=int(row["config_version"]))
