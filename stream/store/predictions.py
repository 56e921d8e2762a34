"""The `predictions` table: what a late ground-truth event needs to find the prediction it labels.

One row per (model, event_id) of an event that carried an `event_id` and outputs: its event time, the
window and segments it was profiled into and its outputs (JSON of the `out.*` values). A ground-truth
event sent later (docs/online-analysis.md "Late ground truth") is joined on it. The row is also the
exactly-once marker: labelling it writes the row again with `labelled = 1` and the source position of
the label (`version` 1 beats the prediction's 0, so a replayed prediction never clears the mark), and a
second label for the same id finds the mark held by another position. Rows expire by the retention TTL
(`Retention.predictions`, counted from when the row was written).

Migration 12 in stream/store/client.py creates the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from stream.store.client import Store

__all__ = ["PREDICTION_COLUMNS", "Prediction", "find_predictions", "write_predictions"]

PREDICTION_COLUMNS = ("model", "event_id", "event_time", "granularity", "window_start", "window_end", "segments",
                      "outputs", "labelled", "label_partition", "label_offset", "label_index", "version",
                      "written_at")
_FRAME_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String(), "event_id": pl.String(), "event_time": pl.Int64(), "granularity": pl.String(),
    "window_start": pl.Int64(), "window_end": pl.Int64(), "segments": pl.List(pl.String()),
    "outputs": pl.String(), "labelled": pl.UInt8(), "label_partition": pl.UInt32(), "label_offset": pl.Int64(),
    "label_index": pl.UInt32(),
}


@dataclass(frozen=True)
class Prediction:
    """One stored prediction, with the position of the label that claimed it (if any)."""

    model: str
    event_id: str
    event_time_ms: int
    granularity: str
    window_start_ms: int
    window_end_ms: int
    segments: tuple[str, ...]
    outputs: str  # JSON object of the prediction's `out.*` values
    labelled: bool
    label_position: tuple[int, int, int]  # (partition, offset, index) of the label that claimed it

    def claimed_by_other(self, position: tuple[int, int, int]) -> bool:
        """True when another label (not the one at `position`, e.g. a replay of it) already claimed it."""
        return self.labelled and self.label_position != position


def write_predictions(store: Store, rows: pl.DataFrame) -> int:
    """Write prediction rows (columns of `_FRAME_SCHEMA`; times in epoch ms). Labelled rows get version 1
    so they replace the unlabelled one and a replayed prediction (version 0) never replaces them."""
    if rows.height == 0:
        return 0
    times = ("event_time", "window_start", "window_end")
    frame = rows.select(
        *(pl.col(c).cast(t) for c, t in _FRAME_SCHEMA.items() if c not in times),
        *(pl.from_epoch(pl.col(c), time_unit="ms").dt.replace_time_zone("UTC") for c in times),
        pl.col("labelled").cast(pl.UInt64).alias("version"),
        pl.lit(datetime.now(UTC)).dt.cast_time_unit("ms").alias("written_at"))
    return store.insert_arrow("predictions", frame.select(PREDICTION_COLUMNS).to_arrow(
        compat_level=pl.CompatLevel.oldest()))


def find_predictions(store: Store, model: str, event_ids: Sequence[str]) -> dict[str, Prediction]:
    """The stored predictions of `model` among `event_ids`, by event id (ids not stored are absent)."""
    if not event_ids:
        return {}
    rows = store.query_rows(
        "SELECT event_id, toUnixTimestamp64Milli(event_time), granularity, toUnixTimestamp64Milli(window_start), "
        "toUnixTimestamp64Milli(window_end), segments, outputs, labelled, label_partition, label_offset, label_index "
        f"FROM {store.table('predictions')} FINAL "
        "WHERE model = {model:String} AND event_id IN {ids:Array(String)}",
        {"model": model, "ids": sorted(set(event_ids))})
    return {str(r[0]): Prediction(model, str(r[0]), int(r[1]), str(r[2]), int(r[3]), int(r[4]), tuple(r[5]),
                                  str(r[6]), bool(r[7]), (int(r[8]), int(r[9]), int(r[10])))
            for r in rows}
