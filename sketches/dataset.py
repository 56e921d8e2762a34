"""Dataset-level profile for one (model, segment, window).

Holds a :class:`~sketches.column.ColumnProfile` per flattened column (``in.*``, ``out.*``, ``gt.*``,
``tag.*``), the row count, a latency distribution fed by ``elapsed_ns``, validation failure counts
and model-performance accumulators from ground truth (``gt.X`` paired with ``out.X``).

Columns ``model``, ``timestamp``, ``event_id``, ``model_version`` (and anything without one of the
four prefixes) are metadata and are not profiled.

>>> import polars as pl
>>> p = DatasetProfile()
>>> p.track(pl.DataFrame({"in.x": [1.0, 2.0, 3.0], "out.y": [0.2, 0.9, 0.7], "gt.y": [False, True, True],
...                       "model": ["m", "m", "m"], "elapsed_ns": [1000, 2000, 3000]}))
>>> p.row_count, sorted(p.columns)
(3, ['gt.y', 'in.x', 'out.y'])
>>> p.performance_summary()["gt.y"]["accuracy"]
1.0
>>> q = DatasetProfile.from_bytes(p.merge(p).to_bytes())
>>> q.row_count, q.columns["in.x"].summary()["mean"]
(6, 2.0)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

import polars as pl
import pyarrow as pa

from sketches.column import ColumnMerger, ColumnProfile
from sketches.errors import ProfileFormatError
from sketches.performance import ClassificationMetrics, RegressionMetrics
from sketches.serialization import DATASET_MAGIC, field, pack, unpack

__all__ = ["LATENCY_COLUMN", "METADATA_COLUMNS", "PROFILED_PREFIXES", "DatasetProfile"]

PROFILED_PREFIXES: tuple[str, ...] = ("in.", "out.", "gt.", "tag.")
METADATA_COLUMNS: frozenset[str] = frozenset({"model", "timestamp", "event_id", "model_version"})
LATENCY_COLUMN = "elapsed_ns"
PARALLEL_MIN_ROWS = 50_000

Batch: TypeAlias = pl.DataFrame | pa.Table | pa.RecordBatch
Metric: TypeAlias = RegressionMetrics | ClassificationMetrics


def to_polars(batch: Batch) -> pl.DataFrame:
    """Convert a batch to a polars DataFrame and flatten struct columns to dotted names."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    df = batch if isinstance(batch, pl.DataFrame) else pl.from_arrow(batch)
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"expected a table-like batch, got {type(batch).__name__}")
    while any(isinstance(dt, pl.Struct) for dt in df.dtypes):
        exprs: list[pl.Expr] = []
        for name, dt in df.schema.items():
            if isinstance(dt, pl.Struct):
                exprs.extend(pl.col(name).struct.field(f.name).alias(f"{name}.{f.name}") for f in dt.fields)
            else:
                exprs.append(pl.col(name))
        df = df.select(exprs)
    return df


def _merge_performance(profiles: Sequence[DatasetProfile]) -> dict[str, Metric]:
    """Performance accumulators of every ``gt.X`` any of ``profiles`` has, merged (new objects)."""
    by_target: dict[str, list[Metric]] = {}
    for p in profiles:
        for target, metric in p.performance.items():
            by_target.setdefault(target, []).append(metric)
    out: dict[str, Metric] = {}
    for target, metrics in by_target.items():
        first = metrics[0]
        other = next((m for m in metrics if type(m) is not type(first)), None)
        if other is not None:
            raise ValueError(f"cannot merge performance of {target!r}: {first.kind} vs {other.kind}")
        merged = first.merge(type(first)())  # type: ignore[arg-type]  # a copy: operands stay unchanged
        for m in metrics[1:]:
            merged = merged.merge(m)  # type: ignore[arg-type]
        out[target] = merged
    return out


def _is_profiled(name: str) -> bool:
    return name.startswith(PROFILED_PREFIXES)


def _bool_labels(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr).then(pl.lit("True")).otherwise(pl.lit("False"))


def _as_bool(s: pl.Series) -> pl.Series:
    if s.dtype == pl.Boolean:
        return s
    if s.dtype.is_numeric():
        return s != 0
    return s.cast(pl.String).str.to_lowercase().is_in(["true", "1", "yes"])


class DatasetProfile:
    """Mergeable profile of a batch stream.

    Args:
        kll_k, hll_lg_k, fi_lg_max_k: sketch sizes for every column (whylogs-like defaults).
        list_elements: list columns whose (numeric) elements are also profiled as ``<col>[]``.
        performance: ``{"gt.price": "regression" | "classification"}`` to force the problem type;
            otherwise float target + float output → regression, anything else → classification.
        score_threshold: numeric scores ``>=`` this predict the positive class (binary).
        max_workers: threads used to profile columns of large batches in parallel (polars/numpy
            release the GIL); default ``min(4, cpu_count)``; 1 = sequential.  Not serialized.
    """

    def __init__(
        self,
        kll_k: int = 200,
        hll_lg_k: int = 12,
        fi_lg_max_k: int = 7,
        list_elements: Iterable[str] = (),
        performance: Mapping[str, str] | None = None,
        score_threshold: float = 0.5,
        max_workers: int | None = None,
    ) -> None:
        self.max_workers = max_workers if max_workers is not None else min(4, os.cpu_count() or 1)
        self.kll_k = kll_k
        self.hll_lg_k = hll_lg_k
        self.fi_lg_max_k = fi_lg_max_k
        self.list_elements: frozenset[str] = frozenset(list_elements)
        self.performance_config: dict[str, str] = dict(performance or {})
        for k, v in self.performance_config.items():
            if v not in ("regression", "classification"):
                raise ValueError(f"performance[{k!r}] must be 'regression' or 'classification', got {v!r}")
        self.score_threshold = float(score_threshold)
        self.row_count = 0
        self.columns: dict[str, ColumnProfile] = {}
        self.latency = self._new_column()
        self.validation_failures: dict[str, int] = {}
        self.failed_events = 0
        self.performance: dict[str, Metric] = {}

    def _new_column(self) -> ColumnProfile:
        return ColumnProfile(self.kll_k, self.hll_lg_k, self.fi_lg_max_k)

    def _column(self, name: str) -> ColumnProfile:
        col = self.columns.get(name)
        if col is None:
            col = self.columns[name] = self._new_column()
        return col

    # ------------------------------------------------------------------ tracking
    def track(self, batch: Batch) -> None:
        """Profile a pyarrow Table/RecordBatch or polars DataFrame (vectorized per column)."""
        df = to_polars(batch)
        self.row_count += df.height
        jobs: list[tuple[ColumnProfile, pl.Series]] = []
        for name in df.columns:
            s = df.get_column(name)
            if _is_profiled(name):
                jobs.append((self._column(name), s))
                if name in self.list_elements and isinstance(s.dtype, pl.List | pl.Array):
                    jobs.append((self._column(f"{name}[]"), self._elements(s)))
            elif name == LATENCY_COLUMN:
                jobs.append((self.latency, s))
        if self.max_workers > 1 and len(jobs) > 1 and df.height >= PARALLEL_MIN_ROWS:
            with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
                list(pool.map(lambda job: job[0].track(job[1]), jobs))
        else:
            for col, s in jobs:
                col.track(s)
        for name in df.columns:
            if name.startswith("gt.") and f"out.{name[3:]}" in df.columns:
                self._track_performance(name, df.get_column(name), df.get_column(f"out.{name[3:]}"))

    update = track

    @staticmethod
    def _elements(s: pl.Series) -> pl.Series:
        if isinstance(s.dtype, pl.Array):
            s = s.cast(pl.List(s.dtype.inner))
        s = s.drop_nulls()
        return s.filter(s.list.len() > 0).explode()

    def _track_performance(self, name: str, gt: pl.Series, out: pl.Series) -> None:
        mask = gt.is_not_null() & out.is_not_null()
        if gt.dtype.is_float():
            mask &= gt.is_finite()
        if out.dtype.is_float():
            mask &= out.is_finite()
        gt, out = gt.filter(mask), out.filter(mask)
        metric = self.performance.get(name)
        kind = self.performance_config.get(name) or (metric.kind if metric else None)
        if kind is None:
            kind = "regression" if gt.dtype.is_float() and out.dtype.is_float() else "classification"
        if kind == "regression":
            if not (gt.dtype.is_numeric() and out.dtype.is_numeric()):
                return
            reg = metric if isinstance(metric, RegressionMetrics) else RegressionMetrics()
            if gt.len():
                reg.track(gt.cast(pl.Float64).to_numpy(), out.cast(pl.Float64).to_numpy())
            self.performance[name] = reg
            return
        cls = metric if isinstance(metric, ClassificationMetrics) else ClassificationMetrics()
        self.performance[name] = cls
        if gt.len() == 0:
            return
        if out.dtype.is_float():
            actual, pred = _as_bool(gt), out >= self.score_threshold
        elif out.dtype == pl.Boolean or gt.dtype == pl.Boolean:
            actual, pred = _as_bool(gt), _as_bool(out)
        else:
            actual, pred = gt.cast(pl.String), out.cast(pl.String)
        frame = pl.DataFrame({"a": actual, "p": pred})
        if actual.dtype == pl.Boolean:
            frame = frame.select(_bool_labels(pl.col("a")).alias("a"), _bool_labels(pl.col("p")).alias("p"))
        counts = frame.group_by("a", "p").len()
        cls.track_pairs(
            {
                (a, p): n
                for a, p, n in zip(counts["a"].to_list(), counts["p"].to_list(), counts["len"].to_list(), strict=True)
            }
        )

    def add_validation_failures(self, failures: Mapping[str, int], failed_events: int | None = None) -> None:
        """Add per-validation failure counts; ``failed_events`` = events failing at least one.

        When ``failed_events`` is omitted, the largest single count is used (a lower bound).
        """
        for k, v in failures.items():
            if v:
                self.validation_failures[k] = self.validation_failures.get(k, 0) + int(v)
        self.failed_events += int(failed_events if failed_events is not None else max(failures.values(), default=0))

    # ------------------------------------------------------------------ merging
    def merge(self, other: DatasetProfile) -> DatasetProfile:
        """New profile combining both operands (associative, commutative; operands unchanged)."""
        return DatasetProfile.merge_many((self, other))

    @classmethod
    def merge_all(cls, profiles: Iterable[DatasetProfile]) -> DatasetProfile:
        """Merge any number of profiles; an empty iterable gives an empty profile."""
        return cls.merge_many(list(profiles))

    @classmethod
    def merge_many(cls, profiles: Sequence[DatasetProfile]) -> DatasetProfile:
        """One new profile combining every one of ``profiles`` (operands unchanged; none → empty).

        Each column is merged by one :class:`~sketches.column.ColumnMerger` over all the operands
        that have it, which is what makes merging hundreds of windows fast. Sketch sizes, score
        threshold and worker count are the first operand's; list-element columns are the union, and
        a performance problem type set by several operands is the first one's. Every attribute is
        combined here: the names are in ``_MERGED_FIELDS``, checked against ``__init__`` at import,
        so a field added later cannot be left out of merges silently.

        >>> import polars as pl
        >>> a, b = DatasetProfile(), DatasetProfile()
        >>> a.track(pl.DataFrame({"in.x": [1.0, 2.0]})); b.track(pl.DataFrame({"in.x": [3.0], "in.y": ["u"]}))
        >>> m = DatasetProfile.merge_many([a, b, b])
        >>> m.row_count, sorted(m.columns), m.columns["in.x"].count
        (4, ['in.x', 'in.y'], 4)
        """
        if not profiles:
            return cls()
        first = profiles[0]
        out = cls(first.kll_k, first.hll_lg_k, first.fi_lg_max_k,
                  frozenset().union(*(p.list_elements for p in profiles)),
                  {k: v for p in reversed(profiles) for k, v in p.performance_config.items()},
                  first.score_threshold, first.max_workers)
        hll_lg_k: dict[str, int] = {}  # per column, the largest HLL of the operands (the union's size)
        for p in profiles:
            for name, col in p.columns.items():
                hll_lg_k[name] = max(hll_lg_k.get(name, 0), col.hll_lg_k)
        columns: dict[str, ColumnMerger] = {}
        # Profile by profile, not column by column: a profile's columns sit together in memory
        # (decoded together), which makes merging 720 windows a fifth faster.
        for p in profiles:
            out.row_count += p.row_count
            for name, col in p.columns.items():
                merger = columns.get(name)
                if merger is None:
                    merger = columns[name] = ColumnMerger(col, hll_lg_k[name])
                merger.add(col)
            for k, v in p.validation_failures.items():
                out.validation_failures[k] = out.validation_failures.get(k, 0) + v
            out.failed_events += p.failed_events
        out.columns = {name: columns[name].result() for name in sorted(columns)}
        out.latency = ColumnProfile.merge_many([p.latency for p in profiles])
        out.performance = _merge_performance(profiles)
        return out

    # ------------------------------------------------------------------ getters
    def performance_summary(self) -> dict[str, dict[str, Any]]:
        """Per ``gt.X``: regression (mae, mse, rmse, r2) or classification (accuracy … confusion matrix)."""
        return {k: m.summary() for k, m in sorted(self.performance.items())}

    def latency_summary(self) -> dict[str, Any]:
        """Latency distribution (nanoseconds) from ``elapsed_ns``."""
        s = self.latency.summary()
        return {k: s[k] for k in ("count", "mean", "stddev", "min", "max", "median", "quantiles")}

    def validation_summary(self) -> dict[str, Any]:
        return {
            "failures": dict(sorted(self.validation_failures.items())),
            "failed_events": self.failed_events,
        }

    def summary(self) -> dict[str, Any]:
        """Whole profile as plain Python values."""
        return {
            "row_count": self.row_count,
            "columns": {k: c.summary() for k, c in sorted(self.columns.items())},
            "latency": self.latency_summary(),
            "validation": self.validation_summary(),
            "performance": self.performance_summary(),
        }

    # ------------------------------------------------------------------ serialization
    def to_bytes(self) -> bytes:
        """Serialize to the versioned binary format (magic ``DLPF``)."""
        names = sorted(self.columns)
        blobs: list[bytes] = []
        for n in names:
            blobs.extend(self.columns[n]._blobs())
        blobs.extend(self.latency._blobs())
        header = {
            "params": {
                "kll_k": self.kll_k,
                "hll_lg_k": self.hll_lg_k,
                "fi_lg_max_k": self.fi_lg_max_k,
                "list_elements": sorted(self.list_elements),
                "performance": self.performance_config,
                "score_threshold": self.score_threshold,
            },
            "row_count": self.row_count,
            "columns": [[n, self.columns[n]._header()] for n in names],
            "latency": self.latency._header(),
            "validation": self.validation_failures,
            "failed_events": self.failed_events,
            "performance": {k: m.to_dict() for k, m in self.performance.items()},
        }
        return pack(DATASET_MAGIC, header, blobs)

    @classmethod
    def from_bytes(cls, data: bytes) -> DatasetProfile:
        """Inverse of :meth:`to_bytes`; corrupt/foreign/truncated input → :class:`ProfileFormatError`."""
        h, blobs = unpack(data, DATASET_MAGIC)
        what = "dataset profile"
        try:
            params = field(h, "params", dict, what)
            p = cls(
                field(params, "kll_k", int, what),
                field(params, "hll_lg_k", int, what),
                field(params, "fi_lg_max_k", int, what),
                field(params, "list_elements", list, what),
                field(params, "performance", dict, what),
                field(params, "score_threshold", (int, float), what),
            )
            p.row_count = field(h, "row_count", int, what)
            cols = field(h, "columns", list, what)
            if len(blobs) != 3 * (len(cols) + 1):
                raise ProfileFormatError(f"corrupt {what}: {len(blobs)} blobs for {len(cols)} columns")
            for i, entry in enumerate(cols):
                if not (
                    isinstance(entry, list)
                    and len(entry) == 2
                    and isinstance(entry[0], str)
                    and isinstance(entry[1], dict)
                ):
                    raise ProfileFormatError(f"corrupt {what}: bad column entry {i}")
                p.columns[entry[0]] = ColumnProfile._from_parts(entry[1], blobs[3 * i : 3 * i + 3])
            p.latency = ColumnProfile._from_parts(field(h, "latency", dict, what), blobs[-3:])
            val = field(h, "validation", dict, what)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in val.values()):
                raise ProfileFormatError(f"corrupt {what}: bad validation counts")
            p.validation_failures = dict(val)
            p.failed_events = field(h, "failed_events", int, what)
            for k, d in field(h, "performance", dict, what).items():
                kind = d.get("kind") if isinstance(d, dict) else None
                if kind == "regression":
                    p.performance[k] = RegressionMetrics.from_dict(d)
                elif kind == "classification":
                    p.performance[k] = ClassificationMetrics.from_dict(d)
                else:
                    raise ProfileFormatError(f"corrupt {what}: bad performance entry {k!r}")
        except ProfileFormatError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise ProfileFormatError(f"corrupt {what}: {e}") from None
        return p

    def __repr__(self) -> str:
        return f"DatasetProfile(rows={self.row_count}, columns={len(self.columns)})"


# The attributes `DatasetProfile.merge_many` combines.
_MERGED_FIELDS = frozenset({
    "max_workers", "kll_k", "hll_lg_k", "fi_lg_max_k", "list_elements", "performance_config", "score_threshold",
    "row_count", "columns", "latency", "validation_failures", "failed_events", "performance",
})
_UNMERGED = set(vars(DatasetProfile())) ^ _MERGED_FIELDS
if _UNMERGED:  # a field added to the profile must be merged (and serialized) too
    raise TypeError(f"DatasetProfile.merge_many does not combine {sorted(_UNMERGED)}")
