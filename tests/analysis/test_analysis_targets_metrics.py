"""Target matrix resolution and metric extraction."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from pydantic import TypeAdapter

from sketches import DatasetProfile
from stream.analysis.monitor_config import Segment, TargetMatrix, parse_analyzer
from stream.analysis.target_matrix import (
    Target,
    column_info,
    parse_segment_name,
    resolve_columns,
    resolve_segments,
    resolve_targets,
    segment_members,
)
from stream.analysis.whylabs_metrics import (
    UnknownMetricError,
    canonical_metric,
    column_metric,
    dataset_metric,
    is_dataset_metric,
    metric_value,
)

MATRIX = TypeAdapter(TargetMatrix)


@pytest.fixture(scope="module")
def profile() -> DatasetProfile:
    n = 200
    p = DatasetProfile(performance={"gt.label": "classification"})
    p.track(
        pl.DataFrame(
            {
                "in.price": [float(i) * 1.5 for i in range(n)],
                "in.qty": [i % 5 for i in range(n)],  # integral, 5 distinct → discrete
                "in.id": list(range(n)),  # integral, all distinct → continuous
                "in.city": ["a", "b", None, "c"] * (n // 4),
                "in.flag": [True, False] * (n // 2),
                "out.score": [i / n for i in range(n)],
                "out.label": ["yes", "no"] * (n // 2),
                "gt.label": ["yes", "yes", "no", "no"] * (n // 4),
                "tag.x": [1.0] * n,
            }
        )
    )
    return p


def cols(matrix: dict[str, Any], p: DatasetProfile, schema: dict[str, Any] | None = None) -> list[str]:
    m = MATRIX.validate_python({"type": "column", **matrix})
    return resolve_columns(m, p, schema)  # type: ignore[arg-type]


def test_groups(profile: DatasetProfile) -> None:
    assert cols({"include": ["group:continuous"]}, profile) == ["in.id", "in.price", "out.score", "tag.x"]
    assert cols({"include": ["group:discrete"]}, profile) == ["gt.label", "in.city", "in.flag", "in.qty", "out.label"]
    assert cols({"include": ["group:input"]}, profile) == ["in.city", "in.flag", "in.id", "in.price", "in.qty"]
    assert cols({"include": ["group:output"]}, profile) == ["out.label", "out.score"]
    assert cols({"include": ["group:bool"]}, profile) == ["in.flag"]
    assert cols({"include": ["group:int"]}, profile) == ["in.id", "in.qty"]
    assert cols({"include": ["group:frac"]}, profile) == ["in.price", "out.score", "tag.x"]
    assert cols({"include": ["group:str"]}, profile) == ["gt.label", "in.city", "out.label"]


def test_wildcard_names_and_exclusions(profile: DatasetProfile) -> None:
    assert len(cols({"include": ["*"]}, profile)) == len(profile.columns)
    assert cols({"include": ["*"], "exclude": ["group:input", "group:output"]}, profile) == ["gt.label", "tag.x"]
    # seed: include discrete + a named column, exclude outputs and a named column; excluded wins
    got = cols({"include": ["group:discrete", "in.price"], "exclude": ["group:output", "in.qty"]}, profile)
    assert got == ["gt.label", "in.city", "in.flag", "in.price"]
    assert cols({"include": ["in.price"], "exclude": ["in.price"]}, profile) == []
    assert cols({"include": ["IN.PRICE"]}, profile) == []  # case-sensitive
    assert cols({"include": "group:bool"}, profile) == ["in.flag"]  # single string as in the docs
    assert cols({}, profile) == []  # nothing included


def test_schema_overrides(profile: DatasetProfile) -> None:
    schema = {
        "in.id": {"discreteness": "discrete"},
        "in.qty": {"discreteness": "continuous", "dataType": "fractional"},
        "tag.x": {"classifier": "output"},
    }
    assert "in.id" in cols({"include": ["group:discrete"]}, profile, schema)
    assert "in.qty" in cols({"include": ["group:continuous"]}, profile, schema)
    assert "in.qty" in cols({"include": ["group:frac"]}, profile, schema)
    assert "tag.x" in cols({"include": ["group:output"]}, profile, schema)
    info = column_info("in.x", {"inferred_type": "integral", "count": 100, "null_count": 0, "unique_est": 14.0})
    assert info.discrete and "group:int" in info.groups and "group:input" in info.groups
    assert not column_info("in.x", {"inferred_type": "integral", "count": 100, "unique_est": 15.0}).discrete
    assert column_info("c", None).groups == frozenset({"group:continuous"})


KNOWN = [
    {"in.city": "Boston", "tag.region": "us"},
    {"in.city": "Austin", "tag.region": "us"},
    {"in.city": "Paris", "tag.region": "eu"},
]


def seg(*tags: tuple[str, str]) -> Segment:
    return Segment.model_validate({"tags": [{"key": k, "value": v} for k, v in tags]})


def test_segments() -> None:
    overall: tuple[tuple[str, str], ...] = ()
    assert resolve_segments(None, None, KNOWN) == [overall]
    assert resolve_segments([seg()], None, KNOWN) == [overall]
    # wildcard over one key of two: one target per region
    assert resolve_segments([seg(("tag.region", "*"))], None, KNOWN) == [
        (("tag.region", "eu"),),
        (("tag.region", "us"),),
    ]
    both = resolve_segments([seg(("in.city", "*"), ("tag.region", "us"))], None, KNOWN)
    assert both == [(("in.city", "Austin"), ("tag.region", "us")), (("in.city", "Boston"), ("tag.region", "us"))]
    # exact spec is a target even without data (missingDatapoint)
    assert resolve_segments([seg(("in.city", "Rome"), ("tag.region", "eu"))], None, KNOWN) == [
        (("in.city", "Rome"), ("tag.region", "eu"))
    ]
    # exclusions (with * too); overall + specific, minus excluded
    got = resolve_segments(
        [seg(), seg(("in.city", "*"), ("tag.region", "*"))],
        [seg(("in.city", "Paris"), ("tag.region", "*"))],
        KNOWN,
    )
    assert got == [
        overall,
        (("in.city", "Austin"), ("tag.region", "us")),
        (("in.city", "Boston"), ("tag.region", "us")),
    ]
    # driftline segment names work as known segments
    names = ["in.city=Boston&tag.region=us", "in.city=Paris&tag.region=eu"]
    assert resolve_segments([seg(("tag.region", "*"))], [seg(("tag.region", "eu"))], names) == [(("tag.region", "us"),)]
    assert segment_members((("tag.region", "us"),), KNOWN) == [
        "in.city=Austin&tag.region=us",
        "in.city=Boston&tag.region=us",
    ]
    assert segment_members((), KNOWN) == [""]
    assert parse_segment_name("a=1&b=x=y") == {"a": "1", "b": "x=y"}
    assert parse_segment_name("") == {}


def test_resolve_targets_column_and_dataset(profile: DatasetProfile) -> None:
    a = parse_analyzer(
        {
            "id": "drift-city",
            "config": {"type": "drift", "metric": "frequent_items", "baseline": {"type": "TrailingWindow", "size": 7}},
            "targetMatrix": {
                "type": "column",
                "include": ["group:discrete"],
                "exclude": ["group:output"],
                "segments": [{"tags": []}, {"tags": [{"key": "tag.region", "value": "*"}]}],
                "excludeSegments": [{"tags": [{"key": "tag.region", "value": "eu"}]}],
            },
        }
    )
    targets = resolve_targets(a, profile, KNOWN)
    assert len(targets) == 2 * 4
    assert Target((("tag.region", "us"),), "in.city") in targets
    assert targets[0] == Target((), "gt.label") and targets[0].segment_name == ""
    assert Target((("tag.region", "us"),), "x").segment_tags == [{"key": "tag.region", "value": "us"}]
    d = parse_analyzer(
        {
            "id": "missing-datapoint-analyzer",
            "targetMatrix": {"type": "dataset", "segments": [{"tags": [{"key": "tag.region", "value": "*"}]}]},
            "config": {"metric": "missingDatapoint", "type": "fixed", "upper": 0},
        }
    )
    assert resolve_targets(d, profile, KNOWN) == [
        Target((("tag.region", "eu"),), None),
        Target((("tag.region", "us"),), None),
    ]
    assert (
        resolve_targets(parse_analyzer({"id": "no-matrix", "config": {"type": "fixed", "metric": "min"}}), profile)
        == []
    )


# ---------------------------------------------------------------------------------------------- metrics
def test_column_metrics(profile: DatasetProfile) -> None:
    s = profile.columns["in.city"].summary()
    assert column_metric("count", s) == 200
    assert column_metric("count_null", s) == 50
    assert column_metric("count_null_ratio", s) == 0.25
    assert column_metric("count_string", s) == 150 and column_metric("count_string_ratio", s) == 0.75
    assert column_metric("unique_est", s) == pytest.approx(3.0)
    assert column_metric("unique_est_ratio", s) == pytest.approx(3.0 / 200)  # divided by total count
    assert column_metric("inferred_data_type", s) == "STRING"
    assert column_metric("mean", s) is None and column_metric("median", s) is None
    price = profile.columns["in.price"]
    assert column_metric("min", price) == 0.0 and column_metric("max", price) == 298.5
    assert column_metric("mean", price) == pytest.approx(149.25)
    assert column_metric("variance", price) == pytest.approx(column_metric("stddev", price) ** 2)  # type: ignore[operator]
    q = price.summary()["quantiles"]
    assert column_metric("quantile_5", price) == q["0.05"] and column_metric("quantile_p95", price) == q["0.95"]
    assert column_metric("quantile_90", price) == q["0.9"] and column_metric("median", price) == q["0.5"]
    assert column_metric("count_bool", profile.columns["in.flag"]) == 200
    assert column_metric("count_integral_ratio", profile.columns["in.qty"]) == 1.0
    assert column_metric("count_fractional", profile.columns["in.qty"]) == 0
    assert column_metric("inferred_data_type", profile.columns["in.flag"]) == "BOOLEAN"
    assert column_metric("count_null_ratio", {"count": 0, "null_count": 0}) is None


def test_dataset_metrics(profile: DatasetProfile) -> None:
    perf = profile.performance_summary()["gt.label"]
    assert dataset_metric("classification.accuracy", profile) == perf["accuracy"] == 0.5
    assert dataset_metric("classification_f1", profile) == perf["f1"]
    assert dataset_metric("classification.fpr", profile.performance_summary()) == perf["fpr"]
    assert dataset_metric("regression.rmse", profile) is None
    assert dataset_metric("classification.recall", profile, output="gt.other") is None
    reg = {"gt.y": {"kind": "regression", "mae": 1.0, "mse": 4.0, "rmse": 2.0}}
    assert dataset_metric("regression.mse", reg) == 4.0 and dataset_metric("REGRESSION.MAE", reg) == 1.0
    assert metric_value("classification.precision", profile=profile) == perf["precision"]


def test_metric_value_entry_point(profile: DatasetProfile) -> None:
    assert metric_value("count_null", profile=profile, column_name="in.city") == 50
    assert metric_value("count", profile=profile, column_name="nope") is None
    assert metric_value("missingDatapoint", profile=profile) == 0.0
    assert metric_value("missingDatapoint", profile=None) == 1.0
    assert metric_value("missingDatapoint", has_data=False) == 1.0
    now = dt.datetime(2024, 1, 2, 0, 0, 1, 900000, tzinfo=dt.UTC)
    last = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert metric_value("secondsSinceLastUpload", now=now, last_upload=last) == 86401.0  # whole seconds
    assert metric_value("secondsSinceLastUpload", now=now, last_upload=None) is None
    with pytest.raises(ValueError):
        metric_value("secondsSinceLastUpload")
    with pytest.raises(UnknownMetricError):
        metric_value("histogram", profile=profile, column_name="in.price")
    with pytest.raises(UnknownMetricError):
        canonical_metric("bogus")
    assert (
        canonical_metric("quantile_p99") == "quantile_99"
        and canonical_metric("Classification_F1") == "classification.f1"
    )
    assert is_dataset_metric("missingDatapoint") and not is_dataset_metric("mean")
    with pytest.raises(UnknownMetricError):
        column_metric("classification.f1", {})
    with pytest.raises(UnknownMetricError):
        dataset_metric("mean", {})
