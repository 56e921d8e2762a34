"""Resolve an analyzer's ``targetMatrix`` into concrete (segment, column) targets.

Columns: ``include`` / ``exclude`` entries are ``*`` (every column), exact (case-sensitive) column
names, or groups:

* ``group:input`` — ``in.*`` columns; ``group:output`` — ``out.*`` columns (Driftline's flattened
  names; a schema ``classifier`` of ``input``/``output`` overrides);
* ``group:bool|int|frac|str`` — inferred type bool / integral / fractional / string (schema
  ``dataType`` overrides);
* ``group:discrete|continuous`` — string and bool columns are discrete, fractional ones continuous,
  integral ones discrete when ``unique_est / non-null count < DISCRETE_UNIQUE_RATIO`` (schema
  ``discreteness`` overrides).

A column both included and excluded is excluded.  A missing ``include`` includes nothing.

Segments are ``{"tags": [{"key", "value"}]}`` objects: ``[]`` tags = the overall segment (also the
default when ``segments`` is absent); a value ``"*"`` fans out over every value of that key present
in the known segments; ``excludeSegments`` (same syntax) removes matches.  Segments are given as
``{key: value}`` mappings (or Driftline segment names ``"k=v&k2=v2"``), ``{}`` / ``""`` = overall.
A target segment with fewer keys than the stored segments is a roll-up:
:func:`segment_members` lists the stored segments to merge for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sketches import ColumnProfile, DatasetProfile
from sketches.segments import segment_name
from stream.analysis.monitor_config import Analyzer, ColumnMatrix, DatasetMatrix, Segment

__all__ = [
    "DISCRETE_UNIQUE_RATIO",
    "GROUPS",
    "ColumnInfo",
    "Target",
    "column_info",
    "match_segment",
    "parse_segment_name",
    "resolve_columns",
    "resolve_segments",
    "resolve_targets",
    "segment_members",
]

DISCRETE_UNIQUE_RATIO = 0.15
GROUPS = frozenset(
    (
        "group:continuous",
        "group:discrete",
        "group:input",
        "group:output",
        "group:bool",
        "group:int",
        "group:frac",
        "group:str",
    )
)
_TYPE_GROUPS = {"integral": "group:int", "fractional": "group:frac", "bool": "group:bool", "string": "group:str"}
_SCHEMA_TYPES = {
    "integral": "integral",
    "int": "integral",
    "fractional": "fractional",
    "frac": "fractional",
    "bool": "bool",
    "boolean": "bool",
    "string": "string",
    "str": "string",
}

SegmentKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ColumnInfo:
    """What target matrix groups need to know about one column."""

    name: str
    inferred_type: str = "unknown"
    discrete: bool = False
    classifier: str | None = None  # "input" | "output" | None

    @property
    def groups(self) -> frozenset[str]:
        g: set[str] = {"group:discrete" if self.discrete else "group:continuous"}
        if self.classifier == "input":
            g.add("group:input")
        elif self.classifier == "output":
            g.add("group:output")
        t = _TYPE_GROUPS.get(self.inferred_type)
        if t:
            g.add(t)
        return frozenset(g)


@dataclass(frozen=True, order=True)
class Target:
    """One analysis target: ``segment`` as sorted ``(key, value)`` pairs (``()`` = overall) and a
    ``column`` (``None`` for dataset-level analyzers)."""

    segment: SegmentKey
    column: str | None

    @property
    def segment_name(self) -> str:
        return segment_name(dict(self.segment))

    @property
    def segment_tags(self) -> list[dict[str, str]]:
        """WhyLabs-style tags (``[{"key", "value"}]``)."""
        return [{"key": k, "value": v} for k, v in self.segment]


def _is_discrete(summary: Mapping[str, Any]) -> bool:
    t = summary.get("inferred_type")
    if t in ("string", "bool"):
        return True
    if t == "integral":
        nonnull = (summary.get("count") or 0) - (summary.get("null_count") or 0)
        if nonnull <= 0:
            return False
        return float(summary.get("unique_est") or 0.0) / nonnull < DISCRETE_UNIQUE_RATIO
    return False


def column_info(
    name: str, column: ColumnProfile | Mapping[str, Any] | None, schema: Mapping[str, Any] | None = None
) -> ColumnInfo:
    """Groups of a column from its profile/summary, overridden by ``schema`` entries.

    ``schema`` is a WhyLabs-style entity-schema entry ``{"dataType", "discreteness", "classifier"}``.
    """
    summary: Mapping[str, Any] = {}
    if isinstance(column, ColumnProfile):
        summary = {
            "inferred_type": column.inferred_type,
            "count": column.count,
            "null_count": column.null_count,
            "unique_est": column.unique_est,
        }
    elif column is not None:
        summary = column
    inferred = str(summary.get("inferred_type") or "unknown")
    discrete = _is_discrete(summary)
    classifier = "input" if name.startswith("in.") else "output" if name.startswith("out.") else None
    if schema:
        dtype = schema.get("dataType")
        if isinstance(dtype, str) and dtype.lower() in _SCHEMA_TYPES:
            inferred = _SCHEMA_TYPES[dtype.lower()]
        disc = schema.get("discreteness")
        if isinstance(disc, str) and disc.lower() in ("discrete", "continuous"):
            discrete = disc.lower() == "discrete"
        cls = schema.get("classifier")
        if isinstance(cls, str) and cls.lower() in ("input", "output"):
            classifier = cls.lower()
    return ColumnInfo(name, inferred, discrete, classifier)


def _as_list(v: str | list[str] | None) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


def _matches(info: ColumnInfo, entries: Iterable[str]) -> bool:
    groups = info.groups
    return any(e == "*" or e == info.name or (e in GROUPS and e in groups) for e in entries)


def resolve_columns(
    matrix: ColumnMatrix,
    columns: Mapping[str, ColumnProfile | Mapping[str, Any] | None] | DatasetProfile,
    schema: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Column names selected by a column target matrix, sorted."""
    cols = columns.columns if isinstance(columns, DatasetProfile) else columns
    schema = schema or {}
    include, exclude = _as_list(matrix.include), _as_list(matrix.exclude)
    out = []
    for name in sorted(cols):
        info = column_info(name, cols[name], schema.get(name))
        if _matches(info, include) and not _matches(info, exclude):
            out.append(name)
    return out


def parse_segment_name(name: str) -> dict[str, str]:
    """Inverse of :func:`sketches.segments.segment_name` (``""`` → ``{}``)."""
    if not name:
        return {}
    out: dict[str, str] = {}
    for part in name.split("&"):
        k, sep, v = part.partition("=")
        if not sep:
            raise ValueError(f"bad segment name {name!r}")
        out[k] = v
    return out


def _key(seg: Mapping[str, str] | str) -> SegmentKey:
    d = parse_segment_name(seg) if isinstance(seg, str) else seg
    return tuple(sorted((str(k), str(v)) for k, v in d.items()))


def match_segment(spec: Segment, segment: Mapping[str, str] | str) -> bool:
    """True when ``segment`` has exactly the spec's keys with equal values (``*`` matches any)."""
    seg = dict(_key(segment))
    tags = {t.key: t.value for t in spec.tags}
    if set(tags) != set(seg):
        return False
    return all(v == "*" or seg[k] == v for k, v in tags.items())


def resolve_segments(
    segments: Sequence[Segment] | None,
    exclude: Sequence[Segment] | None,
    known: Iterable[Mapping[str, str] | str],
) -> list[SegmentKey]:
    """Target segments of a matrix, sorted; ``segments=None`` → the overall segment only.

    A spec without ``*`` is a target even when no profile exists for it yet (missingDatapoint needs
    that); a spec with ``*`` expands to the value combinations present in ``known`` (projected onto
    the spec's keys, so ``{"key": "country", "value": "*"}`` over segments keyed by country and city
    gives one target per country).
    """
    known_keys = [_key(k) for k in known]
    specs = list(segments) if segments is not None else [Segment(tags=[])]
    out: set[SegmentKey] = set()
    for spec in specs:
        tags = {t.key: t.value for t in spec.tags}
        if not any(v == "*" for v in tags.values()):
            out.add(tuple(sorted(tags.items())))
            continue
        for k in known_keys:
            d = dict(k)
            if not set(tags) <= set(d):
                continue
            if all(v == "*" or d[key] == v for key, v in tags.items()):
                out.add(tuple(sorted((key, d[key]) for key in tags)))
    excl = list(exclude or [])
    return sorted(s for s in out if not any(match_segment(e, dict(s)) for e in excl))


def segment_members(
    target: SegmentKey | Mapping[str, str] | str, known: Iterable[Mapping[str, str] | str]
) -> list[str]:
    """Names of the stored segments whose tags include every tag of ``target`` (its roll-up set).

    The overall segment's members are just ``[""]`` (it is tracked separately).
    """
    t = dict(target) if isinstance(target, tuple) else dict(_key(target))
    if not t:
        return [""]
    out = []
    for k in known:
        d = dict(_key(k))
        if all(d.get(key) == v for key, v in t.items()):
            out.append(segment_name(d))
    return sorted(set(out))


def resolve_targets(
    analyzer: Analyzer | ColumnMatrix | DatasetMatrix,
    columns: Mapping[str, ColumnProfile | Mapping[str, Any] | None] | DatasetProfile,
    known_segments: Iterable[Mapping[str, str] | str] = (),
    schema: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Target]:
    """Every (segment, column) target of an analyzer; dataset-level matrices give ``column=None``.

    ``columns`` are the columns seen for the model (e.g. the overall profile's); an analyzer without a
    targetMatrix has no targets.
    """
    matrix = analyzer.targetMatrix if isinstance(analyzer, Analyzer) else analyzer
    if matrix is None:
        return []
    segs = resolve_segments(matrix.segments, matrix.excludeSegments, list(known_segments))
    if isinstance(matrix, DatasetMatrix):
        return [Target(s, None) for s in segs]
    names = resolve_columns(matrix, columns, schema)
    return [Target(s, c) for s in segs for c in names]
