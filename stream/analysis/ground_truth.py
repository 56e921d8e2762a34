"""Late ground truth: labels sent after their prediction, joined on `event_id` (docs/online-analysis.md).

A ground-truth event names an earlier prediction and carries only its labels — `{"model", "event_id",
"ground_truth": {...}}`, no inputs or outputs. The worker splits such rows off a decoded batch
(:func:`split_labels`; they are not rows of any window), keeps every prediction that could be labelled
later in the store (:func:`prediction_rows`, stream/store/predictions.py) and joins labels on them
(:func:`join_labels`):

* a label whose id has no stored prediction, whose prediction is older than the horizon, or whose
  prediction another label already claimed (a duplicate) is dead-lettered with that reason;
* an accepted label claims its prediction (the exactly-once mark, written first) and its performance
  delta goes into a *late performance* row of the prediction's window, for every segment the prediction
  was profiled into: a `profiles` row of source topic ``<events topic>.ground-truth`` and the label's
  partition, holding a profile with performance only (no columns, no rows), which readers merge with the
  window's partition rows like any other. Its version is the highest label offset folded in, so a
  replayed batch (claims already written by this very label) folds nothing twice.

One worker owns a partition at a time, so the late row of (window, segment, label partition) has one
writer; it is read, merged and written again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from sketches import DatasetProfile
from sketches.segments import OVERALL_SEGMENT
from stream.config.models import ConfigSnapshot, ModelConfig
from stream.store import profiles
from stream.store.client import Store
from stream.store.predictions import find_predictions
from stream.worker.plan import Group, new_profile

__all__ = ["DAY_MS", "LabelOutcome", "LabelRejection", "join_labels", "late_topic", "prediction_rows",
           "split_labels"]

DAY_MS = 86_400_000
_POSITION = ("__partition", "__offset", "__index")


def late_topic(events_topic: str) -> str:
    """The `source_topic` of late performance rows (kept apart from the rows of window states).

    >>> late_topic("driftline-events")
    'driftline-events.ground-truth'
    """
    return f"{events_topic}.ground-truth"


def _values_present(frame: pl.DataFrame, prefixes: tuple[str, ...]) -> pl.Expr:
    cols = [c for c in frame.columns if c.startswith(prefixes)]
    return pl.any_horizontal(pl.col(c).is_not_null() for c in cols) if cols else pl.lit(False)


def split_labels(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(inference events, ground-truth events) of a decoded batch. A ground-truth event has an
    `event_id`, at least one ground-truth value and no input or output value.

    >>> df = pl.DataFrame({"event_id": ["a", "b", None], "in.x": [1.0, None, None], "gt.y": [True, True, True]})
    >>> events, labels = split_labels(df)
    >>> events.get_column("event_id").to_list(), labels.get_column("event_id").to_list()
    (['a', None], ['b'])
    """
    if frame.height == 0 or "event_id" not in frame.columns or not any(c.startswith("gt.") for c in frame.columns):
        return frame, frame.clear()
    is_label = (pl.col("event_id").is_not_null() & _values_present(frame, ("gt.",))
                & ~_values_present(frame, ("in.", "out.")))
    flags = frame.select(is_label.alias("label")).get_column("label")
    if not flags.any():
        return frame, frame.clear()
    return frame.filter(~flags), frame.filter(flags)


def prediction_rows(groups: Iterable[Group], snapshot: ConfigSnapshot) -> pl.DataFrame:
    """The predictions of a batch's window groups to keep for late labels: every event with an
    `event_id` and an output, with its window (of the model's granularity) and all its segments. An
    event that carried ground truth itself is stored already labelled (a later label is a duplicate),
    at its own source position. The overall group of a window has every event of it (with outputs);
    the other groups only add their segment's name to their events."""
    overall: list[pl.DataFrame] = []
    segmented: list[pl.DataFrame] = []
    for g in groups:
        state = snapshot.models.get(g.key.model)
        if state is None or not state.model.late_ground_truth:
            continue
        granularity = state.model.granularity
        outs = [c for c in g.rows.columns if c.startswith("out.")]
        if g.key.granularity != granularity or not outs or "event_id" not in g.rows.columns:
            continue
        rows = g.rows.filter(pl.col("event_id").is_not_null() & _values_present(g.rows, ("out.",)))
        if rows.height == 0:
            continue
        model = pl.lit(g.key.model, pl.String).alias("model")
        if g.key.segment != OVERALL_SEGMENT:
            segmented.append(rows.select(model, "event_id", pl.lit(g.key.segment, pl.String).alias("segment")))
            continue
        gts = [c for c in g.rows.columns if c.startswith("gt.")]
        labelled = pl.any_horizontal(pl.col(c).is_not_null() for c in gts) if gts else pl.lit(False)
        overall.append(rows.select(
            model, pl.col("event_id"), pl.col("timestamp").alias("event_time"),
            pl.lit(granularity, pl.String).alias("granularity"),
            pl.lit(g.key.window_start, pl.Int64).alias("window_start"),
            pl.lit(g.window_end, pl.Int64).alias("window_end"),
            pl.struct(outs).struct.json_encode().alias("outputs"), labelled.cast(pl.UInt8).alias("labelled"),
            *(pl.when(labelled).then(pl.col(c)).otherwise(0).alias(n)
              for c, n in zip(_POSITION, ("label_partition", "label_offset", "label_index"), strict=True))))
    if not overall:
        return pl.DataFrame()
    # An id twice in a batch: the store keeps the last row written (ReplacingMergeTree, equal versions).
    rows = pl.concat(overall, how="vertical_relaxed")
    if not segmented:
        return rows.with_columns(pl.concat_list(pl.lit(OVERALL_SEGMENT, pl.String)).alias("segments"))
    segments = pl.concat(segmented).group_by("model", "event_id").agg(pl.col("segment").unique().alias("more"))
    return rows.join(segments, on=["model", "event_id"], how="left").with_columns(
        pl.concat_list(pl.lit(OVERALL_SEGMENT, pl.String), pl.col("more").fill_null([])).alias("segments")
    ).drop("more")


@dataclass(frozen=True)
class LabelRejection:
    """A ground-truth event that is not applied, at its source position, with why."""

    partition: int
    offset: int
    index: int
    model: str
    reason: str
    detail: str


@dataclass
class LabelOutcome:
    """What joining a batch's labels decided: claims to write first, then late performance rows."""

    claims: pl.DataFrame = field(default_factory=pl.DataFrame)
    windows: list[profiles.StoredWindow] = field(default_factory=list)
    rejections: list[LabelRejection] = field(default_factory=list)
    applied: int = 0


_OFF = ("model {model!r} does not keep its predictions for ground truth sent later: turn it on with "
        "`late_ground_truth: true` (PATCH /v1/models/{model})")


def join_labels(store: Store, events_topic: str, labels: pl.DataFrame, snapshot: ConfigSnapshot,
                horizon_days: float) -> LabelOutcome:
    """Join ground-truth events on the stored predictions (reads only; the caller writes the outcome:
    `claims` through `write_predictions`, then `windows` through `profiles.write_windows`)."""
    outcome = LabelOutcome()
    if labels.height == 0:
        return outcome
    claims: list[pl.DataFrame] = []
    for (model_name,), rows in labels.sort(*_POSITION).partition_by("model", as_dict=True,
                                                                      maintain_order=True).items():
        name = str(model_name)
        state = snapshot.models.get(name)
        model = state.model if state else ModelConfig(name=name)
        if not model.late_ground_truth:
            detail = _OFF.format(model=name)
            outcome.rejections += [LabelRejection(part, off, idx, name, "late-ground-truth-off", detail)
                                   for part, off, idx in rows.select(*_POSITION).iter_rows()]
            continue
        gts = [c for c in rows.columns if c.startswith("gt.") and rows.get_column(c).null_count() < rows.height]
        found = find_predictions(store, name, rows.get_column("event_id").unique().to_list())
        stored = pl.DataFrame(
            [(p.event_id, p.event_time_ms, p.granularity, p.window_start_ms, p.window_end_ms, list(p.segments),
              p.outputs, p.labelled, *p.label_position) for p in found.values()],
            schema={"event_id": pl.String, "event_time": pl.Int64, "granularity": pl.String,
                    "window_start": pl.Int64, "window_end": pl.Int64, "segments": pl.List(pl.String),
                    "outputs": pl.String, "labelled": pl.Boolean, "lp": pl.Int64, "lo": pl.Int64, "li": pl.Int64},
            orient="row")
        joined = rows.select("event_id", "timestamp", *_POSITION, *gts).join(
            stored, on="event_id", how="left").sort(*_POSITION)  # the first copy of a label in the batch wins
        own = ((pl.col("lp") == pl.col("__partition")) & (pl.col("lo") == pl.col("__offset"))
               & (pl.col("li") == pl.col("__index")))
        horizon_ms = int(horizon_days * DAY_MS)
        joined = joined.with_columns(_paired(joined, gts))
        joined = joined.with_columns(
            pl.when(pl.col("event_time").is_null()).then(pl.lit("unknown-event-id"))
            .when(pl.col("timestamp") - pl.col("event_time") > horizon_ms).then(pl.lit("past-horizon"))
            .when(~pl.col("event_id").is_first_distinct()).then(pl.lit("duplicate-ground-truth"))
            .when(pl.col("labelled") & ~own).then(pl.lit("duplicate-ground-truth"))
            .when(~pl.col("__paired")).then(pl.lit("no-matching-output"))
            .otherwise(None).alias("reason"))
        details = {"unknown-event-id": "no stored prediction of this model has event_id {id!r} (never seen, "
                                       "or expired by the predictions retention)",
                   "past-horizon": f"the prediction {{id!r}} is older than the ground-truth horizon "
                                   f"({horizon_days:g} days)",
                   "duplicate-ground-truth": "ground truth for event_id {id!r} was applied already",
                   "no-matching-output": "the prediction {id!r} has no output `out.X` beside any of the label's "
                                         "`gt.X` values"}
        for part, off, idx, event_id, reason in joined.filter(pl.col("reason").is_not_null()).select(
                *_POSITION, "event_id", "reason").iter_rows():
            outcome.rejections.append(LabelRejection(part, off, idx, name, reason, details[reason].format(id=event_id)))
        accepted = joined.filter(pl.col("reason").is_null())
        if accepted.height == 0:
            continue
        claims.append(accepted.select(
            pl.lit(name, pl.String).alias("model"), "event_id", "event_time", "granularity", "window_start",
            "window_end", "segments", "outputs", pl.lit(1, pl.UInt8).alias("labelled"),
            pl.col("__partition").alias("label_partition"), pl.col("__offset").alias("label_offset"),
            pl.col("__index").alias("label_index")))
        outcome.applied += accepted.height
        outcome.windows += _late_windows(store, events_topic, model, accepted, gts)
    if claims:
        outcome.claims = pl.concat(claims, how="vertical_relaxed")
    return outcome


def _paired(joined: pl.DataFrame, gts: Sequence[str]) -> pl.Expr:
    """`__paired`: the label has a value `gt.X` whose prediction holds an output `out.X` (else it would
    change no metric)."""
    matched = joined.filter(pl.col("outputs").is_not_null())
    if matched.height == 0:
        return pl.lit(False).alias("__paired")
    dtype = matched.get_column("outputs").str.json_decode(infer_schema_length=None).dtype
    fields = {f.name for f in dtype.fields} if isinstance(dtype, pl.Struct) else set()
    decoded = pl.col("outputs").str.json_decode(dtype)
    pairs = [pl.col(g).is_not_null() & decoded.struct.field(f"out.{g[3:]}").is_not_null()
             for g in gts if f"out.{g[3:]}" in fields]
    return (pl.any_horizontal(pairs).fill_null(False) if pairs else pl.lit(False)).alias("__paired")


def _late_windows(store: Store, events_topic: str, model: ModelConfig, accepted: pl.DataFrame,
                  gts: Sequence[str]) -> list[profiles.StoredWindow]:
    """The late performance rows of one model's accepted labels, merged onto the stored ones of the same
    (window, segment, label partition); labels at or below a stored row's offset are in it already."""
    outputs = accepted.get_column("outputs").str.json_decode(infer_schema_length=None)
    pairs = pl.concat([accepted.drop("outputs"), outputs.struct.unnest()], how="horizontal")
    pairs = pairs.explode("segments").rename({"segments": "segment"}).with_columns(
        pl.col("segment").fill_null(OVERALL_SEGMENT))
    value_cols = [*gts, *(c for c in outputs.struct.fields if c.startswith("out."))]
    out: list[profiles.StoredWindow] = []
    for (granularity, partition), rows in pairs.partition_by("granularity", "__partition", as_dict=True,
                                                             maintain_order=True).items():
        before = {(w.segment, w.window_start_ms): w for w in profiles.stored_windows(
            store, late_topic(events_topic), model.name, str(granularity), int(partition),
            rows.get_column("window_start").unique().to_list(), rows.get_column("segment").unique().to_list())}
        for (segment, window_start), group in rows.partition_by("segment", "window_start", as_dict=True,
                                                                maintain_order=True).items():
            prior = before.get((str(segment), int(window_start)))
            if prior is not None:
                group = group.filter(pl.col("__offset") > prior.max_offset)
            if group.height == 0:
                continue
            delta = _performance_profile(model, group.select(value_cols))
            merged = delta if prior is None else DatasetProfile.merge_many([prior.profile, delta])
            offsets = group.get_column("__offset")
            first, last = int(offsets.min()), int(offsets.max())  # type: ignore[arg-type]
            out.append(profiles.StoredWindow(
                model.name, str(granularity), str(segment), int(window_start), int(group.get_column("window_end")[0]),
                int(partition), merged, first if prior is None else prior.min_offset, last, 0, [], 0))
    return out


def _performance_profile(model: ModelConfig, pairs: pl.DataFrame) -> DatasetProfile:
    """A profile holding only the performance of `pairs` (`gt.X` beside `out.X`), tracked exactly like a
    window's own events (same problem-type inference and score threshold); its column sketches and row
    count are dropped: the labelled events were counted in their window already."""
    profile = new_profile(model)
    profile.track(pairs)
    profile.columns.clear()
    profile.row_count = 0
    return profile
