"""WhyLabs monitor documents: every JSON example of seed 001 accepted and round-tripped; errors name paths."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from stream.analysis.monitor_config import (
    Analyzer,
    AnalyzerConfig,
    ColumnMatrix,
    DiffConfig,
    DigestMode,
    DriftConfig,
    FixedConfig,
    Monitor,
    MonitorConfigError,
    MonitorDocument,
    MonotonicConfig,
    SeasonalConfig,
    StddevConfig,
    TargetMatrix,
    TimeRange,
    parse_analyzer,
    parse_document,
    parse_duration,
    parse_monitor,
    parse_timestamp,
)

EXAMPLES = json.loads((Path(__file__).parent / "seed001_examples.json").read_text())["examples"]
CONFIG = TypeAdapter(AnalyzerConfig)
MATRIX = TypeAdapter(TargetMatrix)


def _dump(model: Any) -> Any:
    return (
        model.to_json()
        if hasattr(model, "to_json")
        else model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    )


def _roundtrip(kind: str, data: dict[str, Any]) -> Any:
    if kind == "document":
        return parse_document(data).to_json()
    if kind == "analyzer":
        return parse_analyzer(data).to_json()
    if kind == "monitor":
        return parse_monitor(data).to_json()
    if kind == "config":
        return {"config": _dump(CONFIG.validate_python(data["config"]))}
    if kind == "targetMatrix":
        return {"targetMatrix": _dump(MATRIX.validate_python(data["targetMatrix"]))}
    if kind == "config_fragment":
        full = {"type": "seasonal", "metric": "median", **data}
        out = _dump(CONFIG.validate_python(full))
        return {k: v for k, v in out.items() if k not in ("type", "metric")}
    raise AssertionError(kind)


def test_fixture_covers_every_json_example_of_the_seed() -> None:
    assert len(EXAMPLES) == 54
    kinds = {e["kind"] for e in EXAMPLES}
    assert kinds == {"document", "analyzer", "monitor", "config", "targetMatrix", "config_fragment"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"line{e['seed_line']}-{e['kind']}" for e in EXAMPLES])
def test_seed_example_accepted_and_round_trips(example: dict[str, Any]) -> None:
    data = copy.deepcopy(example["json"])
    out = _roundtrip(example["kind"], data)
    assert out == example["json"]
    # equal JSON text modulo key order, too (ints stay ints, floats stay floats)
    assert json.dumps(out, sort_keys=True) == json.dumps(example["json"], sort_keys=True)


def test_seed_examples_assembled_into_one_document_round_trip() -> None:
    analyzers = [e["json"] for e in EXAMPLES if e["kind"] == "analyzer" and "id" in e["json"]]
    # ids repeat across independent examples in the docs: keep the first of each
    seen: dict[str, Any] = {}
    for a in analyzers:
        seen.setdefault(a["id"], a)
    monitors = {e["json"]["id"]: e["json"] for e in EXAMPLES if e["kind"] == "monitor"}
    doc = {
        "id": "351bf3cb-705a-4cb8-a727-1839e5052a1a",
        "schemaVersion": 1,
        "orgId": "org-0",
        "datasetId": "model-2130",
        "granularity": "daily",
        "metadata": {"version": 3, "schemaVersion": 1, "updatedTimestamp": 1700000000000, "author": "system"},
        "allowPartialTargetBatches": True,
        "analyzers": list(seen.values()),
        "monitors": list(monitors.values()),
        "entitySchema": {"columns": {"a": {"discreteness": "discrete"}}},
    }
    parsed = parse_document(copy.deepcopy(doc))
    assert parsed.to_json() == doc
    assert isinstance(parsed.analyzer("my_median_analyzer").config, StddevConfig)
    sarima = parse_document(next(e["json"] for e in EXAMPLES if e["seed_line"] == 948)).analyzer("sarima-analyzer")
    assert isinstance(sarima.config, SeasonalConfig) and sarima.is_runnable
    assert sarima.config.stddevFactor == 3 and sarima.config.baseline is not None and sarima.config.baseline.size == 90
    problems = parsed.reference_errors()
    # the docs' monitors point at analyzers such as "drift_analyzer" that no example defines
    assert {"path": "monitors.1.analyzerIds.0", "message": "unknown analyzer id 'drift_analyzer'"} in problems


def test_models_typed_as_expected() -> None:
    by_line = {e["seed_line"]: e["json"] for e in EXAMPLES}
    pair = parse_document(by_line[82])
    a = pair.analyzers[0]
    assert isinstance(a.config, DriftConfig) and a.config.algorithm == "hellinger" and a.config.threshold == 0.7
    assert isinstance(a.targetMatrix, ColumnMatrix) and a.targetMatrix.include == ["group:discrete"]
    assert isinstance(pair.monitors[0].mode, DigestMode)
    assert pair.monitors[0].effective_severity == 3
    cons = parse_analyzer(by_line[1694])
    assert isinstance(cons.config, FixedConfig) and cons.config.nConsecutive == 2 and cons.is_runnable
    tr = parse_analyzer(by_line[1267])
    assert getattr(tr.config, "baseline", None) is not None
    mono = parse_analyzer(by_line[1123])
    assert isinstance(mono.config, MonotonicConfig) and mono.config.direction == "DECREASING"
    assert mono.targetSize == 2 and mono.is_runnable


def _doc() -> dict[str, Any]:
    return {
        "orgId": "org-0",
        "datasetId": "model-0",
        "granularity": "daily",
        "analyzers": [
            {
                "id": "diff-analyzer",
                "targetMatrix": {"type": "dataset", "segments": []},
                "config": {
                    "metric": "classification.accuracy",
                    "type": "diff",
                    "mode": "pct",
                    "threshold": 2,
                    "baseline": {"type": "TrailingWindow", "size": 7},
                },
            }
        ],
        "monitors": [
            {
                "id": "m-1",
                "analyzerIds": ["diff-analyzer"],
                "schedule": {"type": "immediate"},
                "mode": {"type": "EVERY_ANOMALY"},
                "actions": [{"type": "webhook", "target": "http://example.invalid/hook"}],
            }
        ],
    }


def _errors(doc: dict[str, Any]) -> list[dict[str, str]]:
    with pytest.raises(MonitorConfigError) as ei:
        parse_document(doc)
    return ei.value.errors


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["analyzers"][0]["config"].__setitem__("threshold", "two"), "analyzers.0.config.threshold"),
        (lambda d: d["analyzers"][0]["config"].__setitem__("threshold", -1), "analyzers.0.config.threshold"),
        (lambda d: d["analyzers"][0]["config"].__setitem__("threshold", True), "analyzers.0.config.threshold"),
        (lambda d: d["analyzers"][0]["config"].__setitem__("mode", "ratio"), "analyzers.0.config.mode"),
        (lambda d: d["analyzers"][0]["config"].pop("mode"), "analyzers.0.config.mode"),
        (lambda d: d["analyzers"][0]["config"]["baseline"].__setitem__("size", 0), "analyzers.0.config.baseline.size"),
        (
            lambda d: d["analyzers"][0]["config"]["baseline"].__setitem__("type", "Yesterday"),
            "analyzers.0.config.baseline",
        ),
        (lambda d: d["analyzers"][0]["targetMatrix"].__setitem__("type", "row"), "analyzers.0.targetMatrix"),
        (
            lambda d: d["analyzers"][0].__setitem__("dataReadinessDuration", "1 day"),
            "analyzers.0.dataReadinessDuration",
        ),
        (
            lambda d: d["analyzers"][0].__setitem__("schedule", {"type": "cron", "cron": "every day"}),
            "analyzers.0.schedule.cron",
        ),
        (
            lambda d: d["analyzers"][0].__setitem__("schedule", {"type": "fixed", "cadence": "yearly"}),
            "analyzers.0.schedule.cadence",
        ),
        (lambda d: d["analyzers"][0].__setitem__("id", "bad id!"), "analyzers.0.id"),
        (lambda d: d["monitors"][0]["mode"].__setitem__("type", "SOMETIMES"), "monitors.0.mode"),
        (lambda d: d["monitors"][0]["actions"][0].__setitem__("type", "pigeon"), "monitors.0.actions.0.type"),
        (lambda d: d["monitors"][0].__setitem__("analyzerIds", []), "monitors.0.analyzerIds"),
        (
            lambda d: d["monitors"][0].__setitem__("mode", {"type": "DIGEST", "filter": {"minWeight": "x"}}),
            "monitors.0.mode.filter.minWeight",
        ),
        (
            lambda d: d["monitors"][0]["schedule"].__setitem__(
                "exclusionRanges", [{"start": "2021-13-45", "end": "2021-12-26T00:00:00.000Z"}]
            ),
            "monitors.0.schedule.exclusionRanges.0.start",
        ),
        (lambda d: d.__setitem__("granularity", "secondly"), "granularity"),
        (lambda d: d["analyzers"][0]["config"].update(type="drift", metric="mean"), "analyzers.0.config.metric"),
        (lambda d: d["analyzers"][0]["config"].update(type="stddev", factor=[1]), "analyzers.0.config.factor"),
    ],
)
def test_invalid_documents_name_the_path(mutate: Any, path: str) -> None:
    doc = _doc()
    mutate(doc)
    errors = _errors(doc)
    assert path in [e["path"] for e in errors], errors


def test_error_message_is_readable() -> None:
    doc = _doc()
    doc["analyzers"][0]["config"]["threshold"] = "two"
    with pytest.raises(MonitorConfigError, match=r"analyzers\.0\.config\.threshold: must be a number"):
        parse_document(doc)


def test_unknown_fields_preserved_everywhere() -> None:
    doc = _doc()
    doc["futureTopLevel"] = {"x": [1, 2]}
    doc["analyzers"][0]["whatever"] = 1
    doc["analyzers"][0]["config"]["params"] = {"enableAnomalyCharts": "true"}
    doc["analyzers"][0]["config"]["baseline"]["newBaselineField"] = "y"
    doc["monitors"][0]["mode"]["groupBy"] = ["byColumn"]
    doc["monitors"][0]["actions"][0]["headers"] = {"X": "1"}
    assert parse_document(copy.deepcopy(doc)).to_json() == doc


def test_crud_helpers_are_copy_on_write() -> None:
    doc = parse_document(_doc())
    a = parse_analyzer(
        {
            "id": "fixed-1",
            "config": {"type": "fixed", "metric": "min", "lower": 0},
            "targetMatrix": {"type": "column", "include": ["*"]},
        }
    )
    d2 = doc.with_analyzer(a)
    assert [x.id for x in d2.analyzers] == ["diff-analyzer", "fixed-1"]
    assert [x.id for x in doc.analyzers] == ["diff-analyzer"]
    assert d2.to_json()["analyzers"][1] == a.to_json()
    changed = parse_analyzer({**a.to_json(), "disabled": True})
    d3 = d2.with_analyzer(changed)
    assert [x.id for x in d3.analyzers] == ["diff-analyzer", "fixed-1"] and d3.analyzer("fixed-1").disabled
    d4 = d3.without_analyzer("diff-analyzer")
    assert d4.reference_errors() == [
        {"path": "monitors.0.analyzerIds.0", "message": "unknown analyzer id 'diff-analyzer'"}
    ]
    with pytest.raises(MonitorConfigError, match="unknown analyzer id"):
        d4.check_references()
    with pytest.raises(KeyError):
        d4.analyzer("diff-analyzer")
    with pytest.raises(KeyError):
        d4.without_analyzer("nope")
    m = parse_monitor(
        {"id": "m-2", "analyzerIds": ["fixed-1"], "schedule": {"type": "immediate"}, "mode": {"type": "DIGEST"}}
    )
    d5 = d3.with_monitor(m)
    assert d5.monitor("m-2") is m and d5.monitors_for("fixed-1") == [m]
    assert [x.id for x in d5.without_monitor("m-1").monitors] == ["m-2"]
    d5.check_references()
    dup = _doc()
    dup["analyzers"].append(copy.deepcopy(dup["analyzers"][0]))
    assert parse_document(dup).reference_errors()[0]["path"] == "analyzers.1.id"
    with pytest.raises(MonitorConfigError):
        parse_document(dup, check_references=True)


def test_models_accept_instances_and_defaults_not_emitted() -> None:
    cfg = DiffConfig.model_validate(
        {
            "type": "diff",
            "metric": "mean",
            "mode": "abs",
            "threshold": 1.5,
            "baseline": {"type": "Reference", "profileId": "ref-1"},
        }
    )
    a = Analyzer(id="x-1", config=cfg)
    assert a.to_json() == {"id": "x-1", "config": cfg.to_json()}
    assert Monitor.model_validate(
        {"id": "m", "analyzerIds": ["x-1"], "schedule": {"type": "immediate"}, "mode": {"type": "EVERY_ANOMALY"}}
    ).to_json()["mode"] == {"type": "EVERY_ANOMALY"}
    assert MonitorDocument().to_json() == {}


def test_durations_and_timestamps() -> None:
    assert parse_duration("P1D") == dt.timedelta(days=1)
    assert parse_duration("P1DT12H") == dt.timedelta(days=1, hours=12)
    assert parse_duration("PT18H") == dt.timedelta(hours=18)
    assert parse_duration("P365D") == dt.timedelta(days=365)
    assert parse_duration("PT1.5S") == dt.timedelta(seconds=1.5)
    for bad in ("P", "PT", "1D", "P1H", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)
    utc = dt.UTC
    assert parse_timestamp("2021-01-01T00:00:00.000Z") == dt.datetime(2021, 1, 1, tzinfo=utc)
    assert parse_timestamp("2022-02-25T00:00:000Z") == dt.datetime(2022, 2, 25, tzinfo=utc)  # as in WhyLabs docs
    assert parse_timestamp("2023-11-21T00:00:00+01:00") == dt.datetime(2023, 11, 20, 23, tzinfo=utc)
    assert parse_timestamp("2021-12-25") == dt.datetime(2021, 12, 25, tzinfo=utc)
    r = TimeRange(start="2021-12-25T00:00:00.000Z", end="2021-12-26T00:00:00.000Z")
    assert r.contains(dt.datetime(2021, 12, 25, 23, 59, tzinfo=utc))
    assert not r.contains(dt.datetime(2021, 12, 26, tzinfo=utc))  # end exclusive
    assert r.contains(dt.datetime(2021, 12, 25))  # naive = UTC


def test_include_may_be_a_single_string_as_in_the_docs() -> None:
    m = MATRIX.validate_python({"type": "column", "include": "group:continuous"})
    assert isinstance(m, ColumnMatrix) and m.include == "group:continuous"
    with pytest.raises(Exception, match="string or a list of strings"):
        MATRIX.validate_python({"type": "column", "include": [1]})
