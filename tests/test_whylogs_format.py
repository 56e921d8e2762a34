"""The whylogs v1 codec (stream/events/whylogs.py) and its protobuf wire layer, without whylogs.

Files written by real whylogs are covered end to end in tests/e2e/test_whylogs.py; here a Driftline
profile goes through encode → decode and every field must come back, and malformed input of every kind
must give WhylogsFormatError (a 422 at the upload route), never another exception.
"""

from __future__ import annotations

import contextlib
import io
import zipfile

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sketches import DatasetProfile
from stream.events import whylogs_wire as wire
from stream.events.whylogs import (
    WhylogsFormatError,
    decode_profile,
    decode_upload,
    driftline_column,
    encode_profile,
    kll_from_whylogs,
    kll_to_whylogs,
)
from stream.store.keys import key_id_of

T0 = 1_764_000_000_000


def _profile() -> DatasetProfile:
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 2.0, 3000)
    x[::100] = np.nan
    p = DatasetProfile()
    p.track(pl.DataFrame({
        "in.x": x, "in.n": rng.integers(-50, 50, 3000), "in.city": rng.choice(["a", "b", "c"], 3000),
        "in.flag": rng.integers(0, 2, 3000).astype(bool), "out.score": rng.uniform(0, 1, 3000),
    }).with_columns(pl.when(pl.col("in.n") > 40).then(None).otherwise(pl.col("in.n")).alias("in.n")))
    return p


def test_encode_then_decode_keeps_every_field() -> None:
    p = _profile()
    back = decode_profile(encode_profile(p, T0))
    assert back.dataset_timestamp_ms == T0 and back.segment == "" and back.profile.row_count == p.row_count
    assert sorted(back.profile.columns) == sorted(p.columns)
    for name, col in p.columns.items():
        ours, theirs = col.summary(), back.profile.columns[name].summary()
        for field in ("count", "null_count", "nan_count", "inf_count", "types", "mean", "stddev", "min", "max",
                      "quantiles", "unique_est", "frequent_items", "inferred_type", "histogram"):
            assert theirs[field] == ours[field], (name, field)


def test_segment_tags_name_the_segment_and_round_trip() -> None:
    blob = encode_profile(_profile(), T0, {"in.city": "a", "tag.region": "us"})
    back = decode_profile(blob)
    assert back.segment == "in.city=a&tag.region=us"
    assert back.tags == {"whylogs.tag.in.city": "a", "whylogs.tag.tag.region": "us"}


def test_column_names_follow_the_documented_rule() -> None:
    assert [driftline_column(n) for n in ("age", "output_score", "in.age", "gt.label", "tag.x")] == [
        "in.age", "out.output_score", "in.age", "gt.label", "tag.x"]
    assert driftline_column("prediction", outputs={"prediction"}) == "out.prediction"


def test_zip_uploads_hold_several_profiles() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.bin", encode_profile(_profile(), T0, {"city": "a"}))
        z.writestr("b.bin", encode_profile(_profile(), T0 + 1, {"city": "b"}))
    decoded = decode_upload(buf.getvalue())
    assert [(d.segment, d.dataset_timestamp_ms) for d in decoded] == [("in.city=a", T0), ("in.city=b", T0 + 1)]


def test_kll_layout_conversion_is_an_inverse_pair() -> None:
    blob = _profile().columns["in.x"].kll.serialize()
    old = kll_to_whylogs(blob)
    assert old[0] == 6 and len(old) == len(blob) + 4 and kll_from_whylogs(old) == blob


@pytest.mark.parametrize(("data", "message"), [
    (b"", "no 'WHY1' header"),
    (b"\x0a\x05hello", "whylogs v0 profiles"),
    (b"WHY1", "truncated varint"),
    (b"WHY1\x00\x7f", "exceeds the data"),
    (b"WHY1\x00" + wire.delimited(wire.field_bytes(2, wire.field_bytes(1, "x") + wire.field_bytes(
        2, wire.field_packed(1, [10_000])))), "truncated varint"),
    (b"PK\x03\x04junk", "corrupt zip"),
    (b"WHY1\x00" + wire.delimited(wire.field_bytes(1, wire.field_varint(5, 2**62))), "past the year 9999"),
])
def test_malformed_files_are_rejected_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(WhylogsFormatError, match=message):
        decode_upload(data)


def test_a_corrupt_sketch_names_its_column() -> None:
    profile = _profile()
    blob = bytearray(encode_profile(profile, T0))
    at = blob.index(profile.columns["in.city"].hll.serialize_compact())
    blob[at + 2] = 99  # the sketch family byte
    with pytest.raises(WhylogsFormatError, match=r"in\.city"):
        decode_profile(bytes(blob))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_truncated_or_flipped_files_never_raise_anything_else(data: st.DataObject) -> None:
    blob = bytearray(encode_profile(_profile(), T0, {"city": "a"}))
    cut = data.draw(st.integers(0, len(blob)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(0, 255)), max_size=3))
    for i, b in flips:
        blob[i] = b
    with contextlib.suppress(WhylogsFormatError):  # anything else fails the test
        decode_profile(bytes(blob[:cut]))


def test_wire_values_round_trip() -> None:
    for v in (0, 1, 127, 128, 300, 2**63 - 1, -1, -(2**63)):
        (f,) = wire.read_fields(wire.field_varint(3, v))
        assert wire.as_signed(f.value) == v
    (f,) = wire.read_fields(wire.field_double(1, -2.5))
    assert wire.as_double(f.value) == -2.5
    with pytest.raises(wire.WireError):
        wire.read_fields(b"\xff" * 11)
    with pytest.raises(wire.WireError, match="wire type 3"):
        wire.read_fields(b"\x0b")


def test_keys_have_the_shape_whylogs_checks() -> None:
    assert key_id_of("AbCdE12345." + "s" * 43) == "AbCdE12345"
    assert key_id_of("AbCdE12345." + "s" * 43 + ":org-xyz") == "AbCdE12345"
    assert key_id_of("dl_0123456789ab_" + "s" * 43) == "0123456789ab"  # keys of the earlier shape
    assert key_id_of("AbCdE1234." + "s" * 43) is None and key_id_of("AbCdE12345:" + "s" * 43) is None
