"""DatasetProfile: columns, latency, performance, validation, serialization, segments, vectorization."""

from __future__ import annotations

import sys
import zlib
from types import FrameType
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from sketches import DatasetProfile, ProfileFormatError
from sketches.segments import OTHER_SEGMENT, segment_name, split_by_segments
from sketches.serialization import DATASET_MAGIC, pack, unpack


def _batch() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": ["m"] * 4,
            "timestamp": [1, 2, 3, 4],
            "event_id": ["a", "b", "c", "d"],
            "model_version": ["v1"] * 4,
            "elapsed_ns": [100, 200, 300, 400],
            "in.x": [1.0, 2.0, None, 4.0],
            "in.city": ["Boston", "NYC", "Boston", None],
            "out.dense_1": [[0.1, 0.2], [0.3], [], None],
            "out.price": [10.0, 20.0, 30.0, 40.0],
            "gt.price": [11.0, 18.0, 30.0, 44.0],
            "tag.region": ["us", "us", "eu", "us"],
            "extra": [1, 2, 3, 4],
        }
    )


def test_columns_and_metadata() -> None:
    p = DatasetProfile(list_elements={"out.dense_1"})
    p.track(_batch())
    assert p.row_count == 4
    assert set(p.columns) == {
        "in.x",
        "in.city",
        "out.dense_1",
        "out.dense_1[]",
        "out.price",
        "gt.price",
        "tag.region",
    }
    elems = p.columns["out.dense_1[]"].summary()
    assert elems["count"] == 3 and elems["mean"] == pytest.approx(0.2)
    lens = p.columns["out.dense_1"].summary()
    assert lens["type_other"] == 3 and lens["mean"] == pytest.approx(1.0)
    lat = p.latency_summary()
    assert lat["count"] == 4 and lat["mean"] == 250.0 and lat["max"] == 400.0


def test_arrow_inputs_and_struct_flattening() -> None:
    t = pa.table({"in": pa.array([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]), "out.y": [0.5, 0.7]})
    p = DatasetProfile()
    p.track(t)
    p.track(t.to_batches()[0])
    assert set(p.columns) == {"in.a", "in.b", "out.y"}
    assert p.columns["in.a"].summary()["count"] == 4


def test_regression_performance() -> None:
    p = DatasetProfile()
    p.track(_batch())
    s = p.performance_summary()["gt.price"]
    y = np.array([11.0, 18.0, 30.0, 44.0])
    yhat = np.array([10.0, 20.0, 30.0, 40.0])
    err = yhat - y
    assert s["kind"] == "regression" and s["count"] == 4
    assert s["mae"] == pytest.approx(np.abs(err).mean())
    assert s["mse"] == pytest.approx((err**2).mean())
    assert s["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert s["r2"] == pytest.approx(1 - (err**2).sum() / ((y - y.mean()) ** 2).sum())


def test_binary_classification_with_threshold_and_merge() -> None:
    gt = [True, True, False, False, True, False]
    score = [0.9, 0.4, 0.6, 0.1, 0.5, None]
    p = DatasetProfile(score_threshold=0.5)
    p.track(pl.DataFrame({"gt.label": gt, "out.label": score}))
    s = p.performance_summary()["gt.label"]
    # pairs: TP(0.9), FN(0.4), FP(0.6), TN(0.1), TP(0.5); last row skipped (null)
    assert (s["tp"], s["fn"], s["fp"], s["tn"]) == (2, 1, 1, 1)
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["fpr"] == pytest.approx(1 / 2) and s["tnr"] == pytest.approx(1 / 2)
    assert s["fnr"] == pytest.approx(1 / 3) and s["tpr"] == pytest.approx(2 / 3)
    assert s["confusion_matrix"] == [[1, 1], [1, 2]]  # labels ["False", "True"]
    m = DatasetProfile.from_bytes(p.merge(p).to_bytes()).performance_summary()["gt.label"]
    assert m["tp"] == 4 and m["accuracy"] == pytest.approx(3 / 5)


def test_int_labels_with_score_and_multiclass() -> None:
    p = DatasetProfile()
    p.track(
        pl.DataFrame({"gt.a": [1, 0, 1], "out.a": [0.7, 0.2, 0.3], "gt.c": ["x", "y", "z"], "out.c": ["x", "y", "y"]})
    )
    s = p.performance_summary()
    assert s["gt.a"]["tp"] == 1 and s["gt.a"]["fn"] == 1 and s["gt.a"]["tn"] == 1
    assert s["gt.c"]["accuracy"] == pytest.approx(2 / 3) and s["gt.c"]["labels"] == ["x", "y", "z"]
    q = DatasetProfile(performance={"gt.v": "classification"})
    q.track(pl.DataFrame({"gt.v": [1.0, 0.0], "out.v": [0.9, 0.8]}))
    assert q.performance_summary()["gt.v"]["kind"] == "classification"


def test_validation_failures_merge() -> None:
    a, b = DatasetProfile(), DatasetProfile()
    a.add_validation_failures({"x_range": 3, "y_null": 1}, failed_events=3)
    b.add_validation_failures({"x_range": 2})
    m = DatasetProfile.from_bytes(a.merge(b).to_bytes())
    assert m.validation_summary() == {"failures": {"x_range": 5, "y_null": 1}, "failed_events": 5}


def test_merge_all_and_operands_unchanged() -> None:
    parts = []
    for i in range(3):
        p = DatasetProfile()
        p.track(pl.DataFrame({"in.x": [float(i), float(i + 1)]}))
        parts.append(p)
    before = parts[0].summary()
    m = DatasetProfile.merge_all(parts)
    assert parts[0].summary() == before
    assert m.row_count == 6 and m.columns["in.x"].summary()["mean"] == pytest.approx(1.5)
    assert DatasetProfile.merge_all([]).row_count == 0


def test_roundtrip_full_profile() -> None:
    p = DatasetProfile(list_elements={"out.dense_1"}, performance={"gt.price": "regression"})
    p.track(_batch())
    p.add_validation_failures({"v": 1}, 1)
    q = DatasetProfile.from_bytes(p.to_bytes())
    assert q.summary() == p.summary()
    assert q.list_elements == p.list_elements and q.performance_config == p.performance_config


def test_corrupt_inputs_raise_clear_errors() -> None:
    data = DatasetProfile().to_bytes()
    with pytest.raises(ProfileFormatError, match="magic"):
        DatasetProfile.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ProfileFormatError, match="version"):
        DatasetProfile.from_bytes(data[:4] + b"\x63\x00" + data[6:])
    with pytest.raises(ProfileFormatError, match=r"CRC|truncated"):
        DatasetProfile.from_bytes(data[:-3])
    with pytest.raises(ProfileFormatError):
        DatasetProfile.from_bytes(b"")
    # well-framed container with valid CRC but garbage header/blobs inside
    with pytest.raises(ProfileFormatError, match="missing field"):
        DatasetProfile.from_bytes(pack(DATASET_MAGIC, {"row_count": 1}, []))
    p = DatasetProfile()
    p.track(_batch())
    header, blobs = unpack(p.to_bytes(), DATASET_MAGIC)
    with pytest.raises(ProfileFormatError, match="sketch"):
        DatasetProfile.from_bytes(pack(DATASET_MAGIC, header, [b"\x05garbage"] * len(blobs)))
    with pytest.raises(ProfileFormatError, match="blobs"):
        DatasetProfile.from_bytes(pack(DATASET_MAGIC, header, blobs[:-1]))
    bad = dict(header, columns=[["in.x", {"kll_k": "x"}]])
    with pytest.raises(ProfileFormatError):
        DatasetProfile.from_bytes(pack(DATASET_MAGIC, bad, blobs[:6]))
    body = bytearray(data[:-4])
    body[8] ^= 0xFF  # header length field, CRC recomputed
    forged = bytes(body) + (zlib.crc32(bytes(body)) & 0xFFFFFFFF).to_bytes(4, "little")
    with pytest.raises(ProfileFormatError):
        DatasetProfile.from_bytes(forged)
    assert issubclass(ProfileFormatError, ValueError)


def test_segments() -> None:
    assert segment_name({}) == ""
    assert segment_name({"tag.region": "us", "in.city": "Boston"}) == "in.city=Boston&tag.region=us"
    df = _batch()
    parts = split_by_segments(df, ["in.city", "tag.region"])
    assert {k: v.height for k, v in parts.items()} == {
        "in.city=Boston&tag.region=us": 1,
        "in.city=NYC&tag.region=us": 1,
        "in.city=Boston&tag.region=eu": 1,
    }
    capped = split_by_segments(df, ["in.city"], max_segments=2, known={"in.city=NYC"})
    assert {k: v.height for k, v in capped.items()} == {"in.city=Boston": 2, "in.city=NYC": 1}
    capped = split_by_segments(df, ["in.city"], max_segments=1, known={"in.city=NYC"})
    assert {k: v.height for k, v in capped.items()} == {"in.city=NYC": 1, OTHER_SEGMENT: 2}
    assert split_by_segments(df, []) == {} and split_by_segments(df, ["in.missing"]) == {}


def test_tracking_does_not_loop_per_value() -> None:
    n = 200_000
    rng = np.random.default_rng(3)
    cols: dict[str, Any] = {f"in.n{i}": rng.normal(size=n) for i in range(4)}
    cols["in.i"] = rng.integers(0, 10**9, n)
    cats = np.array([f"c{j}" for j in range(300)])
    cols["in.s"] = cats[rng.integers(0, 300, n)]
    cols["in.u"] = np.array([f"u{j}" for j in range(n)])  # all-unique strings
    cols["out.l"] = [[1.0, 2.0]] * n
    cols["elapsed_ns"] = rng.integers(0, 10**6, n)
    df = pl.DataFrame(cols)
    calls = 0

    def prof(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    p = DatasetProfile(list_elements={"out.l"}, max_workers=1)  # setprofile is per thread
    sys.setprofile(prof)
    try:
        p.track(df)
    finally:
        sys.setprofile(None)
    assert p.row_count == n
    assert calls < 20_000, calls  # Python-level calls are per column, not per value
    threaded = DatasetProfile(list_elements={"out.l"}, max_workers=2)
    threaded.track(df)
    assert _exact_counts(threaded) == _exact_counts(p)


def _exact_counts(p: DatasetProfile) -> dict[str, Any]:
    return {n: (c.count, c.null_count, c.min, c.max, c.kll.n) for n, c in p.columns.items()}
