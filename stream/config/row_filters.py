"""Row filters of Arthur metrics — ``[{property, comparator, value}, …]``, all must hold — as polars
expressions, and the minute-profile segment that holds the rows passing them.

Profiles hold aggregates, so a filtered metric cannot be computed from stored profiles after the
fact. The worker therefore keeps, for every distinct filter among a model's metrics, minute profiles
of just the rows that pass it, stored under the segment :func:`filter_segment`; alert rules on a
filtered metric read those. A filter applies from the moment workers load it (within seconds of its
metric being created); minutes before that have no filtered profile.

Semantics (SQL-like): a property resolves to the first of ``name``, ``in.name``, ``out.name``,
``gt.name``, ``tag.name`` present in the batch; a missing property or a null value matches no
comparison (``eq``/``ne`` with the value ``null`` ask for missing / present values); a value of the
other kind is converted to the column's (``"5"`` for a number column is 5, ``5`` for a text column
is ``"5"``); ``in``/``notin`` take a list.

>>> import polars as pl
>>> rows = pl.DataFrame({"in.city": ["Boston", "Austin", "Boston", None], "in.x": [1, 5, 3, 4]})
>>> city_and_x = [{"property": "city", "comparator": "eq", "value": "Boston"},
...               {"property": "x", "comparator": "gte", "value": "2"}]
>>> rows.filter(row_filter_expr(city_and_x, rows.schema)).get_column("in.x").to_list()
[3]
>>> rows.filter(row_filter_expr([{"property": "city", "comparator": "notin", "value": ["Austin"]}],
...                             rows.schema)).height
2
>>> filter_segment(city_and_x) == filter_segment(list(reversed(city_and_x)))
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stream.events.schema import VALUE_PREFIXES

__all__ = ["FILTER_SEGMENT_PREFIX", "PROPERTY_PREFIXES", "Comparator", "RowFilter", "Scalar", "filter_segment",
           "is_filter_segment", "metric_filters", "row_filter_expr"]

FILTER_SEGMENT_PREFIX = "__filter__="
# A property is a column name as it is, else with the first section prefix that makes it one.
PROPERTY_PREFIXES = ("", *VALUE_PREFIXES)
Comparator = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "notin"]
Scalar = str | bool | int | float | None
MAX_LIST_VALUES = 10_000


class RowFilter(BaseModel):
    """One condition of an Arthur metric filter: `{property, comparator, value}`."""

    model_config = ConfigDict(extra="forbid")

    property: Annotated[str, Field(min_length=1, max_length=256)]
    comparator: Comparator
    value: Scalar | list[Scalar]

    @model_validator(mode="after")
    def _value_shape(self) -> RowFilter:
        if self.comparator in ("in", "notin"):
            if not isinstance(self.value, list):
                raise ValueError(f"comparator {self.comparator!r} needs a list value")
            if len(self.value) > MAX_LIST_VALUES:
                raise ValueError(f"value: at most {MAX_LIST_VALUES} items")
        elif isinstance(self.value, list):
            raise ValueError(f"comparator {self.comparator!r} needs a single value, not a list")
        values = self.value if isinstance(self.value, list) else [self.value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError("value must be finite")
        return self


def _canonical(filters: Sequence[Mapping[str, Any] | RowFilter]) -> list[dict[str, Any]]:
    items = [f.model_dump() if isinstance(f, RowFilter) else RowFilter.model_validate(f).model_dump()
             for f in filters]
    return sorted(items, key=lambda f: orjson.dumps(f, option=orjson.OPT_SORT_KEYS))


def filter_segment(filters: Sequence[Mapping[str, Any] | RowFilter]) -> str:
    """The segment of the minute profiles of rows passing `filters` (same conditions, same segment)."""
    digest = hashlib.sha1(orjson.dumps(_canonical(filters), option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{FILTER_SEGMENT_PREFIX}{digest[:16]}"


def is_filter_segment(segment: str) -> bool:
    return segment.startswith(FILTER_SEGMENT_PREFIX)


def metric_filters(query: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The row filter of a metric query: ``filter`` of an inference query, ``target.filter`` of a
    data drift query (empty when unfiltered)."""
    raw = query.get("filter") if "select" in query else (query.get("target") or {}).get("filter")
    return _canonical(raw or [])


def _convert(value: Any, dtype: pl.DataType) -> Any:
    """`value` as the kind of `dtype` (None when it cannot be: then nothing matches)."""
    if dtype == pl.Boolean:
        return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1")
    if dtype.is_numeric():
        if isinstance(value, int | float):
            return value
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if dtype == pl.String:
        return value if isinstance(value, str) else str(value)
    return value


def _condition(f: RowFilter, schema: Mapping[str, pl.DataType]) -> pl.Expr:
    column = next((p + f.property for p in PROPERTY_PREFIXES if p + f.property in schema), None)
    if column is None:
        return pl.lit(False)
    dtype = schema[column]
    col = pl.col(column)
    if f.comparator in ("in", "notin"):
        listed = f.value if isinstance(f.value, list) else [f.value]
        values = [v for v in (_convert(v, dtype) for v in listed if v is not None) if v is not None]
        member = col.is_in(pl.Series(values, dtype=dtype, strict=False)) if values else pl.lit(False)
        return (member if f.comparator == "in" else ~member) & col.is_not_null()
    if f.value is None and f.comparator in ("eq", "ne"):  # `eq null` asks for missing values
        return col.is_null() if f.comparator == "eq" else col.is_not_null()
    value = _convert(f.value, dtype) if f.value is not None else None
    if value is None:
        return pl.lit(False)
    literal = pl.lit(value)
    return {"eq": col == literal, "ne": col != literal, "lt": col < literal, "lte": col <= literal,
            "gt": col > literal, "gte": col >= literal}[f.comparator]


def row_filter_expr(filters: Sequence[Mapping[str, Any] | RowFilter], schema: Mapping[str, pl.DataType]) -> pl.Expr:
    """A boolean expression over a batch with `schema`: true where every condition holds (nulls: false)."""
    expr = pl.lit(True)
    for f in filters:
        expr = expr & _condition(f if isinstance(f, RowFilter) else RowFilter.model_validate(f), schema)
    return expr.fill_null(False)
