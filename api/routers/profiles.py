"""`/v1/models/{model}/profiles` (per window or rolled up) and `/drift` between two ranges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from api.deps import existing_model, get_store
from api.params import column_list, iso, segment_filter, time_range
from api.schemas import (
    ColumnDriftOut,
    DriftOut,
    PerformanceOut,
    PerformanceWindowOut,
    ProfilesOut,
    RangeOut,
    WindowOut,
)
from sketches import DatasetProfile
from sketches.drift import column_drift
from stream.config.models import GRANULARITY_MS, Granularity, ModelConfig
from stream.store import profiles
from stream.store.client import Store
from stream.store.references import ReferenceStore

router = APIRouter(prefix="/v1/models/{model}", tags=["profiles"])

DEFAULT_SPAN_MS = 7 * 86_400_000
Algorithm = Literal["hellinger", "psi", "kl_divergence", "jensenshannon"]
TimeParam = Query(max_length=64, description="ISO-8601 (UTC when no offset) or epoch milliseconds")


@dataclass(frozen=True)
class WindowQuery:
    """The windows a profiles or performance request asks for: range, segment, granularity, rollup."""

    model: str
    granularity: str
    start_ms: int
    end_ms: int
    segment: str | None
    rollup: bool

    def windows(self, store: Store) -> list[profiles.WindowProfile]:
        """Stored windows of the range, or one merged profile per segment with `rollup`."""
        if not self.rollup:
            return profiles.profile_windows(store, self.model, self.granularity, self.start_ms, self.end_ms,
                                            self.segment)
        merged = profiles.rollup(store, self.model, self.granularity, self.start_ms, self.end_ms, self.segment)
        return [profiles.WindowProfile(name, self.start_ms, rows, profile=profile)
                for name, (rows, profile) in sorted(merged.items())]


def window_query(
    config: Annotated[ModelConfig, Depends(existing_model)],
    start: Annotated[str | None, TimeParam] = None,
    end: Annotated[str | None, TimeParam] = None,
    segment: Annotated[str | None, Query(max_length=4096, description="omitted: overall; `*`: all; "
                                         "else a canonical segment like `in.city=Boston`")] = None,
    rollup: bool = False,
    granularity: Annotated[Granularity | None, Query(description="default: the model's")] = None,
) -> WindowQuery:
    start_ms, end_ms = time_range(start, end, DEFAULT_SPAN_MS)
    return WindowQuery(config.name, granularity or config.granularity, start_ms, end_ms, segment_filter(segment),
                       rollup)


@router.get("/profiles", response_model=ProfilesOut, summary="Profiles per window, or merged over the range")
def get_profiles(
    query: Annotated[WindowQuery, Depends(window_query)],
    store: Annotated[Store, Depends(get_store)],
    columns: Annotated[str | None, Query(max_length=65536, description="comma-separated column names")] = None,
) -> ProfilesOut:
    cols = column_list(columns)
    windows = [WindowOut(window_start=iso(wp.window_start_ms), segment=wp.segment, row_count=wp.row_count,
                         columns=wp.column_summaries(cols)) for wp in query.windows(store)]
    return ProfilesOut(model=query.model, granularity=query.granularity, start=iso(query.start_ms),
                       end=iso(query.end_ms), rollup=query.rollup, windows=windows)


@router.get("/performance", response_model=PerformanceOut,
            summary="Performance metrics (outputs against ground truth) per window, or merged over the range")
def performance(
    query: Annotated[WindowQuery, Depends(window_query)],
    store: Annotated[Store, Depends(get_store)],
) -> PerformanceOut:
    windows = [PerformanceWindowOut(window_start=iso(wp.window_start_ms), segment=wp.segment,
                                    row_count=wp.row_count, performance=wp.performance_summary())
               for wp in query.windows(store)]
    return PerformanceOut(model=query.model, granularity=query.granularity, start=iso(query.start_ms),
                          end=iso(query.end_ms), rollup=query.rollup, windows=windows)


def _merged(store: Store, model: str, gran: str, start_ms: int, end_ms: int, segment: str) -> DatasetProfile:
    merged = profiles.rollup(store, model, gran, start_ms, end_ms, segment)
    return merged[segment][1] if segment in merged else DatasetProfile()


@router.get("/drift", response_model=DriftOut, summary="Per-column drift of a target range against a baseline",
            description="A column with values on one side only has `distance` null and `missing` naming the side "
                        "without them (`baseline` or `target`), instead of a maximal distance.")
def drift(
    config: Annotated[ModelConfig, Depends(existing_model)],
    store: Annotated[Store, Depends(get_store)],
    target_start: Annotated[str, TimeParam],
    target_end: Annotated[str, TimeParam],
    baseline_start: Annotated[str | None, TimeParam] = None,
    baseline_end: Annotated[str | None, TimeParam] = None,
    reference: Annotated[str | None, Query(max_length=200, description="a reference profile id `ref-…`")] = None,
    algorithm: Algorithm = "hellinger",
    segment: Annotated[str, Query(max_length=4096, description="canonical segment; default overall")] = "",
    columns: Annotated[str | None, Query(max_length=65536)] = None,
    granularity: Granularity | None = None,
) -> DriftOut:
    gran = granularity or config.granularity
    t_start, t_end = time_range(target_start, target_end, GRANULARITY_MS[gran], "target_")
    target = _merged(store, config.name, gran, t_start, t_end, segment)
    if reference is not None:
        if baseline_start is not None or baseline_end is not None:
            raise HTTPException(422, "give either reference or baseline_start/baseline_end, not both")
        ref_profile = ReferenceStore(store).get_profile(config.name, reference)
        if ref_profile is None:
            raise HTTPException(404, f"unknown reference profile {reference[:100]!r}")
        baseline = ref_profile
        baseline_out = RangeOut(reference=reference, row_count=baseline.row_count)
    else:
        if baseline_start is None or baseline_end is None:
            raise HTTPException(422, "baseline_start and baseline_end (or reference) are required")
        b_start, b_end = time_range(baseline_start, baseline_end, GRANULARITY_MS[gran], "baseline_")
        baseline = _merged(store, config.name, gran, b_start, b_end, segment)
        baseline_out = RangeOut(start=iso(b_start), end=iso(b_end), row_count=baseline.row_count)
    names = column_list(columns) or sorted(set(baseline.columns) | set(target.columns))
    out: dict[str, ColumnDriftOut] = {}
    for name in names:
        b, t = baseline.columns.get(name), target.columns.get(name)
        if b is None and t is None:
            continue
        d = column_drift(algorithm, b, t)
        out[name] = ColumnDriftOut(distance=d.distance, discrete=d.discrete, missing=d.missing)
    return DriftOut(model=config.name, algorithm=algorithm, segment=segment,
                    baseline=baseline_out,
                    target=RangeOut(start=iso(t_start), end=iso(t_end), row_count=target.row_count),
                    columns=out)


