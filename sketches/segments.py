"""Segment naming and splitting of a batch by segment keys.

A segment is identified by its key/value pairs.  :func:`segment_name` gives the canonical name:
``""`` for the overall segment, else ``key=value`` pairs sorted by key and joined with ``&``.

:func:`split_by_segments` does **not** return the overall segment: the caller tracks the whole batch
into the overall profile separately.

>>> segment_name({"tag.region": "us", "in.city": "Boston"})
'in.city=Boston&tag.region=us'
>>> segment_name({})
''
>>> import polars as pl
>>> df = pl.DataFrame({"in.city": ["a", "b", "a", "c"], "in.x": [1, 2, 3, 4]})
>>> {k: v.height for k, v in split_by_segments(df, ["in.city"], max_segments=2).items()}
{'in.city=a': 2, 'in.city=b': 1, '__other__': 1}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

__all__ = ["OTHER_SEGMENT", "OVERALL_SEGMENT", "format_value", "segment_name", "split_by_segments"]

OVERALL_SEGMENT = ""
OTHER_SEGMENT = "__other__"


def format_value(value: Any) -> str:
    """Canonical text of a segment value (bools as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def segment_name(mapping: Mapping[str, Any]) -> str:
    """Canonical segment name; ``""`` for the overall segment."""
    return "&".join(f"{k}={format_value(mapping[k])}" for k in sorted(mapping))


def split_by_segments(
    batch: pl.DataFrame,
    keys: Iterable[str],
    max_segments: int = 1000,
    known: set[str] | frozenset[str] = frozenset(),
) -> dict[str, pl.DataFrame]:
    """Split ``batch`` into per-segment frames with one group-by.

    * Rows whose value for any key is null (or whose batch lacks a key column) belong to no segment.
    * Segments already in ``known`` are always kept; new segments are admitted in order of first
      appearance while ``len(known) + admitted < max_segments``; rows of the rest are concatenated
      into :data:`OTHER_SEGMENT`.  ``known`` is not modified: add the returned names yourself.
    * The overall segment is not included.
    """
    keys = sorted(set(keys))
    if not keys or batch.height == 0 or any(k not in batch.columns for k in keys):
        return {}
    df = batch.drop_nulls(subset=keys)
    if df.height == 0:
        return {}
    parts = df.partition_by(keys, as_dict=True, maintain_order=True)
    out: dict[str, pl.DataFrame] = {}
    overflow: list[pl.DataFrame] = []
    budget = max_segments - len(known)
    for values, frame in parts.items():
        name = segment_name(dict(zip(keys, values, strict=True)))
        if name in known:
            out[name] = frame
        elif budget > 0:
            out[name] = frame
            budget -= 1
        else:
            overflow.append(frame)
    if overflow:
        out[OTHER_SEGMENT] = pl.concat(overflow, how="vertical")
    return out
