"""CBPE performance estimators: their fitted configuration (the `config` table, kind `estimator`, key =
the score column) and the expected-confusion sums the worker writes per window (the
`performance_estimates` table; see migration 11 in stream/store/client.py for its key).

Readers add the rows of a window (partitions, re-opened states) and of a range or segment set: sums
merge by addition (:mod:`stream.analysis.cbpe`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from stream.analysis.cbpe import Estimator
from stream.store.client import Store, Where
from stream.store.config import ConfigKind, TypedConfigs

__all__ = ["ESTIMATE_COLUMNS", "EstimateRow", "EstimatorRepository", "window_estimates", "write_estimates"]

ESTIMATE_COLUMNS = ("model", "granularity", "segment", "window_start", "source_topic", "source_partition",
                    "since_offset", "column", "n", "tp", "fp", "fn", "tn", "version", "written_at")


@dataclass(frozen=True)
class EstimateRow:
    """The sums one window state holds for one score column."""

    model: str
    granularity: str
    segment: str
    window_start: int  # epoch ms
    partition: int
    since_offset: int
    column: str
    sums: tuple[float, float, float, float, float]  # n, TP, FP, FN, TN
    version: int  # the state's max offset


class EstimatorRepository(TypedConfigs[Estimator]):
    """Estimators of models, in the `config` table (key = score column)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, ConfigKind.ESTIMATOR, Estimator.model_validate, lambda e: e.column)


def write_estimates(store: Store, source_topic: str, rows: Sequence[EstimateRow]) -> int:
    now = datetime.now(UTC)
    return store.insert("performance_estimates", [
        [r.model, r.granularity, r.segment, datetime.fromtimestamp(r.window_start / 1000, UTC), source_topic,
         r.partition, r.since_offset, r.column, *r.sums, r.version, now] for r in rows], ESTIMATE_COLUMNS)


def window_estimates(store: Store, model: str, granularity: str, column: str, start_ms: int, end_ms: int,
                     segment: str | None = "") -> list[tuple[int, str, tuple[float, float, float, float, float]]]:
    """(window start ms, segment, [n, TP, FP, FN, TN] summed over partitions and states) per window in
    [start, end) — one segment, or every one for `segment=None` — ordered by window, then segment."""
    where = Where().equals("model", "model", model).equals("granularity", "granularity", granularity)
    where.equals("column", "column", column).equals("segment", "segment", segment)
    where.time_range("window_start", start_ms, end_ms)
    rows = store.query_rows(
        "SELECT toUnixTimestamp64Milli(window_start) AS ws, segment, sum(n), sum(tp), sum(fp), sum(fn), sum(tn) "
        f"FROM {store.table('performance_estimates')} FINAL WHERE {where.sql()} "
        "GROUP BY ws, segment ORDER BY ws, segment", where.params)
    return [(int(ws), str(seg), (float(n), float(tp), float(fp), float(fn), float(tn)))
            for ws, seg, n, tp, fp, fn, tn in rows]
