"""whylogs v1 profile files ⇄ Driftline profiles (:class:`sketches.DatasetProfile`), without whylogs.

The v1 file format (what ``DatasetProfileView.write`` and the WhyLabs writer produce)::

    b"WHY1"
    delimited DatasetSegmentHeader   has_segments (1: bool), segments (4: Segment{tags (1: SegmentTag
                                     {key 1, value 2})}), offsets (5)
    delimited DatasetProfileHeader   properties (1: DatasetProperties{creation_timestamp 4,
                                     dataset_timestamp 5 (epoch ms), tags 6, metadata 7}),
                                     column_offsets (2: map name → ChunkOffsets{offsets 1}),
                                     length 4, indexed_metric_paths (5: map index → "counts/n" …)
    chunks                           per column at its offsets (relative to the end of the header):
                                     delimited ChunkHeader{type 1 (2 = COLUMN), length 3}, then
                                     ChunkMessage{metric_components (1: map index → MetricComponent)}

``MetricComponentMessage``: type_id 1, and one of n (2: int64), d (3: double), frequent_items /
hll / kll (4 / 5 / 6: message{sketch 1: bytes}). "Delimited" = a varint length, then the message.
The sketches inside are Apache DataSketches' own serializations (KLL doubles, HLL, frequent
strings), which the ``datasketches`` package reads and writes directly.

Metric paths → Driftline column profile: ``counts/n`` count; ``counts/null`` (whylogs counts NaN as
null too) minus ``counts/nan`` → null_count; ``counts/nan``, ``counts/inf``; ``types/integral``,
``fractional``, ``boolean`` → bool, ``string``, ``object`` + ``tensor`` → other;
``distribution/kll`` the KLL sketch (its n, min and max), ``distribution/mean`` and ``/m2`` the
moments; ``ints/min`` / ``ints/max`` exact integer bounds; ``cardinality/hll``;
``frequent_items/frequent_strings``. The row count is the largest ``counts/n`` of the columns.

Column names (:func:`driftline_column`): a name already starting with ``in.``, ``out.``, ``gt.`` or
``tag.`` is kept (so exported Driftline profiles round-trip); a name the model marks as an output,
or starting with ``output_`` (the WhyLabs convention), becomes ``out.<name>``; any other name
``in.<name>``. Segment tags (``whylogs.tag.<column>``) name segments by the same rule.

>>> driftline_column("age"), driftline_column("output_score"), driftline_column("pred", {"pred"})
('in.age', 'out.output_score', 'out.pred')
>>> whylogs_segment_name({"whylogs.tag.city": "Boston", "whylogs.tag.region": "us"})
'in.city=Boston&in.region=us'
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field

import datasketches as ds

from sketches import ColumnProfile, DatasetProfile
from sketches.moments import Moments
from sketches.segments import segment_name
from stream.events.whylogs_wire import (
    Field,
    WireError,
    as_double,
    as_signed,
    delimited,
    field_bytes,
    field_double,
    field_packed,
    field_varint,
    packed_varints,
    read_delimited,
    read_fields,
)

__all__ = [
    "MAGIC", "MAX_TIMESTAMP_MS", "TAG_PREFIX", "WhylogsFormatError", "WhylogsProfile", "decode_profile",
    "decode_upload", "driftline_column", "encode_profile", "kll_from_whylogs", "kll_to_whylogs",
    "whylogs_segment_name",
]

MAGIC = b"WHY1"
TAG_PREFIX = "whylogs.tag."
DRIFTLINE_PREFIXES = ("in.", "out.", "gt.", "tag.")
OUTPUT_PREFIX = "output_"
COLUMN_CHUNK = 2
MAX_ZIP_MEMBERS = 10_000
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time a window can hold


class WhylogsFormatError(ValueError):
    """The bytes are not a whylogs v1 profile this reader understands (the message says why)."""


@dataclass
class WhylogsProfile:
    """One decoded profile: its dataset timestamp, segment (Driftline name) and profile."""

    dataset_timestamp_ms: int
    segment: str
    profile: DatasetProfile
    tags: dict[str, str] = field(default_factory=dict)  # the raw whylogs segment tags


def driftline_column(name: str, outputs: Collection[str] = ()) -> str:
    """The Driftline column name of a whylogs column (see the module docstring for the rule)."""
    if name.startswith(DRIFTLINE_PREFIXES):
        return name
    if name in outputs or name.startswith(OUTPUT_PREFIX):
        return f"out.{name}"
    return f"in.{name}"


def whylogs_segment_name(tags: dict[str, str], outputs: Collection[str] = ()) -> str:
    """Canonical Driftline segment name of whylogs segment tags (``whylogs.tag.`` prefixes dropped)."""
    return segment_name({driftline_column(k.removeprefix(TAG_PREFIX), outputs): v for k, v in tags.items()})


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------


@dataclass
class _Component:
    n: int | None = None
    d: float | None = None
    sketch: bytes | None = None


def _component(buf: bytes) -> _Component:
    c = _Component()
    for f in read_fields(buf):
        if f.number == 2:
            c.n = as_signed(f.value)
        elif f.number == 3:
            c.d = as_double(f.value)
        elif f.number in (4, 5, 6) and isinstance(f.value, bytes):
            c.sketch = next((s.value for s in read_fields(f.value) if s.number == 1 and isinstance(s.value, bytes)),
                            b"")
    return c


# whylogs 1.x bundles DataSketches C++ 3.x, whose KLL doubles layout has a 6-int (24-byte) preamble
# where 4.x and later have 5 ints (20 bytes) and no padding; the rest of the layout is the same.
_KLL_FAMILY, _KLL_OLD_PREAMBLE, _KLL_PREAMBLE, _KLL_PREAMBLE_BYTES = 15, 6, 5, 20


def kll_from_whylogs(blob: bytes) -> bytes:
    """A KLL doubles sketch serialized by whylogs, in the layout ``datasketches`` reads.

    >>> kll_from_whylogs(bytes([6, 1, 15, 0]) + bytes(16) + bytes(4) + b"rest")[:1], len(kll_from_whylogs(bytes(28)))
    (b'\\x05', 28)
    """
    if len(blob) >= 24 and blob[0] == _KLL_OLD_PREAMBLE and blob[2] == _KLL_FAMILY:
        return bytes([_KLL_PREAMBLE]) + blob[1:_KLL_PREAMBLE_BYTES] + blob[24:]
    return blob


def kll_to_whylogs(blob: bytes) -> bytes:
    """The inverse of :func:`kll_from_whylogs`: a ``datasketches`` KLL blob in whylogs' layout."""
    if len(blob) >= _KLL_PREAMBLE_BYTES and blob[0] == _KLL_PREAMBLE and blob[2] == _KLL_FAMILY:
        return bytes([_KLL_OLD_PREAMBLE]) + blob[1:_KLL_PREAMBLE_BYTES] + bytes(4) + blob[_KLL_PREAMBLE_BYTES:]
    return blob


def _sketch(factory: type, blob: bytes | None, name: str, column: str) -> object | None:
    if not blob:
        return None
    if name == "KLL":
        blob = kll_from_whylogs(blob)
    try:
        return factory.deserialize(blob)  # type: ignore[attr-defined]
    except Exception as e:  # datasketches raises RuntimeError/ValueError variants
        raise WhylogsFormatError(f"column {column!r}: corrupt {name} sketch: {e}") from None


def _count(components: dict[str, _Component], path: str) -> int:
    c = components.get(path)
    return max(0, int(c.n)) if c is not None and c.n is not None else 0


def _column(name: str, components: dict[str, _Component]) -> ColumnProfile:
    """A Driftline column profile from the metric components of one whylogs column."""
    kll = _sketch(ds.kll_doubles_sketch, components.get("distribution/kll", _Component()).sketch, "KLL", name)
    hll = _sketch(ds.hll_sketch, components.get("cardinality/hll", _Component()).sketch, "HLL", name)
    fi = _sketch(ds.frequent_strings_sketch, components.get("frequent_items/frequent_strings", _Component()).sketch,
                 "frequent items", name)
    assert kll is None or isinstance(kll, ds.kll_doubles_sketch)
    assert hll is None or isinstance(hll, ds.hll_sketch)
    assert fi is None or isinstance(fi, ds.frequent_strings_sketch)
    fi_lg = 7 if fi is None else max(3, round(math.log2(3.5 / fi.epsilon)))
    col = ColumnProfile(kll.k if kll is not None else 200, hll.lg_config_k if hll is not None else 12, fi_lg)
    col.count = _count(components, "counts/n")
    col.nan_count = _count(components, "counts/nan")
    col.inf_count = _count(components, "counts/inf")
    col.null_count = max(0, _count(components, "counts/null") - col.nan_count)
    col.type_counts = {
        "integral": _count(components, "types/integral"), "fractional": _count(components, "types/fractional"),
        "bool": _count(components, "types/boolean"), "string": _count(components, "types/string"),
        "other": _count(components, "types/object") + _count(components, "types/tensor"),
    }
    if kll is not None:
        col.kll = kll
    if hll is not None:
        col.hll = hll
    if fi is not None:
        col.fi = fi
    if not col.kll.is_empty():
        mean = components.get("distribution/mean", _Component()).d
        m2 = components.get("distribution/m2", _Component()).d
        if mean is not None and m2 is not None and math.isfinite(mean) and math.isfinite(m2):
            col.moments = Moments(int(col.kll.n), mean, m2)
        lo_kll, hi_kll = float(col.kll.get_min_value()), float(col.kll.get_max_value())
        if math.isfinite(lo_kll) and math.isfinite(hi_kll):  # whylogs sketches ±inf too; then no bounds
            col.min, col.max = lo_kll, hi_kll
    lo, hi = components.get("ints/min"), components.get("ints/max")
    if lo is not None and hi is not None and lo.n is not None and hi.n is not None and col.type_counts["integral"]:
        col.min, col.max = float(lo.n), float(hi.n)
    return col


def decode_profile(data: bytes, outputs: Collection[str] = ()) -> WhylogsProfile:
    """Decode one whylogs v1 profile file (single segment or not) into a Driftline profile.

    ``outputs`` are whylogs column names the model marks as outputs. Raises
    :class:`WhylogsFormatError` for anything that is not a well-formed v1 profile."""
    if data[:4] != MAGIC:
        raise WhylogsFormatError(
            "not a whylogs v1 profile (no 'WHY1' header); whylogs v0 profiles (written for model performance "
            "metrics or with use_v0=True) are not supported")
    try:
        segment_header, pos = read_delimited(data, 4)
        profile_header, pos = read_delimited(data, pos)
        tags: dict[str, str] = {}
        seg_fields = read_fields(segment_header)
        if any(f.number == 1 and f.value for f in seg_fields):
            first = next((f.value for f in seg_fields if f.number == 4 and isinstance(f.value, bytes)), b"")
            for t in read_fields(first):
                if t.number == 1 and isinstance(t.value, bytes):
                    pair = {e.number: e.value for e in read_fields(t.value) if isinstance(e.value, bytes)}
                    tags[pair.get(1, b"").decode()] = pair.get(2, b"").decode()
        header = read_fields(profile_header)
        properties = next((f.value for f in header if f.number == 1 and isinstance(f.value, bytes)), b"")
        timestamp = next((int(f.value) for f in read_fields(properties) if f.number == 5 and isinstance(f.value, int)),
                         0)
        if timestamp > MAX_TIMESTAMP_MS:
            raise WhylogsFormatError(f"dataset timestamp {timestamp} is past the year 9999")
        paths = {int(k): v for k, v in _uint_string_map(header, 5).items()}
        columns: dict[str, ColumnProfile] = {}
        for f in header:
            if f.number != 2 or not isinstance(f.value, bytes):
                continue
            entry = read_fields(f.value)
            name = next((e.value.decode() for e in entry if e.number == 1 and isinstance(e.value, bytes)), "")
            offsets_msg = next((e.value for e in entry if e.number == 2 and isinstance(e.value, bytes)), b"")
            offsets = [v for o in read_fields(offsets_msg) if o.number == 1 for v in packed_varints(o)]
            components: dict[str, _Component] = {}
            for offset in offsets:
                chunk_header, at = read_delimited(data, pos + offset)
                chunk = {h.number: h.value for h in read_fields(chunk_header)}
                if chunk.get(1, 0) != COLUMN_CHUNK:
                    raise WhylogsFormatError(f"column {name!r}: chunk is not a column chunk")
                length = chunk.get(3, 0)
                if not isinstance(length, int) or at + length > len(data):
                    raise WhylogsFormatError(f"column {name!r}: chunk exceeds the file")
                for m in read_fields(data[at:at + length]):
                    if m.number != 1 or not isinstance(m.value, bytes):
                        continue
                    index, value = 0, b""
                    for e in read_fields(m.value):
                        if e.number == 1 and isinstance(e.value, int):
                            index = e.value
                        elif e.number == 2 and isinstance(e.value, bytes):
                            value = e.value
                    if index not in paths:
                        raise WhylogsFormatError(f"column {name!r}: metric index {index} missing from the header")
                    components[paths[index]] = _component(value)
            columns[driftline_column(name, outputs)] = _column(name, components)
    except WireError as e:
        raise WhylogsFormatError(f"corrupt whylogs profile: {e}") from None
    except UnicodeDecodeError:
        raise WhylogsFormatError("corrupt whylogs profile: a name is not UTF-8") from None
    profile = DatasetProfile()
    profile.columns = dict(sorted(columns.items()))
    profile.row_count = max((c.count for c in columns.values()), default=0)
    return WhylogsProfile(int(timestamp), whylogs_segment_name(tags, outputs), profile, tags)


def _uint_string_map(fields: list[Field], number: int) -> dict[int, str]:
    """A proto ``map<uint32, string>`` field."""
    out: dict[int, str] = {}
    for f in fields:
        if f.number == number and isinstance(f.value, bytes):
            key, value = 0, ""
            for e in read_fields(f.value):
                if e.number == 1 and isinstance(e.value, int):
                    key = e.value
                elif e.number == 2 and isinstance(e.value, bytes):
                    value = e.value.decode()
            out[key] = value
    return out


def decode_upload(data: bytes, outputs: Collection[str] = ()) -> list[WhylogsProfile]:
    """The profiles of an upload body: one v1 profile file, or a zip of them (``zip=True`` writers)."""
    if not data.startswith(b"PK\x03\x04"):
        return [decode_profile(data, outputs)]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > MAX_ZIP_MEMBERS:
                raise WhylogsFormatError(f"zip upload has {len(members)} files (at most {MAX_ZIP_MEMBERS})")
            if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
                raise WhylogsFormatError("zip upload unpacks to more than 512 MiB")
            return [decode_profile(archive.read(m), outputs) for m in members]
    except zipfile.BadZipFile as e:
        raise WhylogsFormatError(f"corrupt zip upload: {e}") from None


# ------------------------------------------------------------------------------------------------
# encoding
# ------------------------------------------------------------------------------------------------


def _n(type_id: int, n: int) -> bytes:
    return (field_varint(1, type_id) if type_id else b"") + field_varint(2, n)


def _components(col: ColumnProfile) -> dict[str, bytes]:
    """The whylogs metric components (serialized MetricComponentMessage) of a Driftline column."""
    tc = col.type_counts
    true_count = int(col.fi.get_estimate("True")) if col.inferred_type == "bool" else 0
    out = {
        "counts/n": _n(0, col.count),
        "counts/null": _n(0, col.null_count + col.nan_count),
        "counts/nan": _n(0, col.nan_count),
        "counts/inf": _n(0, col.inf_count),
        "counts/true": _n(0, true_count),
        "types/integral": _n(0, tc["integral"]),
        "types/fractional": _n(0, tc["fractional"]),
        "types/boolean": _n(0, tc["bool"]),
        "types/string": _n(0, tc["string"]),
        "types/object": _n(0, tc["other"]),
        "types/tensor": _n(0, 0),
        "distribution/kll": field_bytes(6, field_bytes(1, kll_to_whylogs(col.kll.serialize()))),
        "distribution/mean": field_double(3, col.moments.mean if col.moments.count else 0.0),
        "distribution/m2": field_double(3, col.moments.m2 if col.moments.count else 0.0),
        "cardinality/hll": field_bytes(5, field_bytes(1, col.hll.serialize_compact())),
    }
    if not (col.fi.is_empty() and col.inferred_type == "fractional"):  # whylogs keeps none for floats
        out["frequent_items/frequent_strings"] = field_bytes(4, field_bytes(1, col.fi.serialize()))
    if col.inferred_type == "integral" and col.min is not None and col.max is not None:
        out["ints/min"] = _n(1, int(col.min))
        out["ints/max"] = _n(2, int(col.max))
    return out


def _map_entry(number: int, key: bytes, value: bytes) -> bytes:
    return field_bytes(number, key + value)


def encode_profile(profile: DatasetProfile, dataset_timestamp_ms: int, tags: dict[str, str] | None = None,
                   creation_timestamp_ms: int | None = None) -> bytes:
    """A whylogs v1 profile file of ``profile`` that ``why.read`` reads (column names as in Driftline).

    ``tags`` (whylogs segment tag key → value, keys without the ``whylogs.tag.`` prefix) make it a
    segmented profile file."""
    per_column = {name: _components(col) for name, col in sorted(profile.columns.items())}
    paths = sorted({p for comps in per_column.values() for p in comps})
    index = {p: i for i, p in enumerate(paths)}
    chunks = bytearray()
    offsets: dict[str, int] = {}
    for name, comps in per_column.items():
        offsets[name] = len(chunks)
        message = b"".join(_map_entry(1, field_varint(1, index[p]), field_bytes(2, comps[p])) for p in sorted(comps))
        chunks += delimited(field_varint(1, COLUMN_CHUNK) + field_varint(3, len(message))) + message
    seg_tags = {f"{TAG_PREFIX}{k}": v for k, v in sorted((tags or {}).items())}
    created = dataset_timestamp_ms if creation_timestamp_ms is None else creation_timestamp_ms
    properties = (field_varint(4, created) + field_varint(5, dataset_timestamp_ms)
                  + b"".join(_map_entry(6, field_bytes(1, k), field_bytes(2, v)) for k, v in seg_tags.items())
                  + _map_entry(7, field_bytes(1, "driftline.export"), field_bytes(2, "1")))
    header = (field_bytes(1, properties)
              + b"".join(_map_entry(2, field_bytes(1, n), field_bytes(2, field_packed(1, [o])))
                         for n, o in offsets.items())
              + field_varint(4, len(chunks))
              + b"".join(_map_entry(5, field_varint(1, i), field_bytes(2, p)) for p, i in index.items()))
    if seg_tags:
        segment = b"".join(field_bytes(1, field_bytes(1, k) + field_bytes(2, v)) for k, v in seg_tags.items())
        segment_header = field_varint(1, 1) + field_bytes(4, segment) + _map_entry(5, field_varint(1, 0),
                                                                                   field_varint(2, 0))
    else:
        segment_header = b""
    return MAGIC + delimited(segment_header) + delimited(header) + bytes(chunks)
