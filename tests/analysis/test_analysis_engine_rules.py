"""Arthur alert rules on minute profiles (real ClickHouse) and webhook delivery (real local HTTP server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest
from pydantic import ValidationError

from sketches import DatasetProfile
from stream.analysis.alerts import post_webhook
from stream.analysis.rule_config import AlertRule, Metric, MetricBody, default_metric_id, default_metrics
from stream.analysis.rules import compute_metric, evaluate_rules
from stream.config.row_filters import metric_filters
from stream.store.analysis import list_alerts
from stream.store.client import Store
from stream.store.rules import MonitoringRepository
from stream.worker.plan import Due
from stream.worker.sink import Sink
from stream.worker.windows import WindowKey, WindowState

MINUTE = 60_000
T0 = 1_763_805_600_000
MODEL = "r"


def _minute(store: Store, ws: int, mean: float, seed: int, model: str = MODEL) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(mean, 0.5, 50)
    p = DatasetProfile()
    p.track(pl.DataFrame({"in.x": x, "out.y": x * 2, "gt.y": x * 2 + rng.normal(0, 1.0, 50)}))
    state = WindowState(window_end=ws + MINUTE, profile=p, min_offset=seed, max_offset=seed)
    Sink(store, "events").write_windows([Due(WindowKey(0, model, "minute", ws, ""), state, True)])


def _metric(metric_id: str, body: dict[str, Any]) -> Metric:
    """A metric of the one schema (what the API stores), with `metric_id`."""
    return Metric(id=metric_id, **MetricBody.model_validate(body).model_dump())


def test_metric_validation() -> None:
    boston = MetricBody.model_validate({"name": "boston", "query": {"select": [{"function": "count"}], "filter": [
        {"property": "city", "comparator": "eq", "value": "Boston"}]}})
    assert metric_filters(boston.model_dump()["query"]) == [{"property": "city", "comparator": "eq", "value": "Boston"}]
    drift_b = MetricBody.model_validate({"name": "psi", "query": {
        "select": [{"function": "PSI", "parameters": {"property": "x", "reference": "r"}}],
        "filter": [{"property": "city", "comparator": "in", "value": ["B"]}]}})
    assert metric_filters(drift_b.model_dump()["query"]) == [{"property": "city", "comparator": "in", "value": ["B"]}]
    with pytest.raises(ValidationError, match=r"(?s)query\.filter\.0.*needs a list value"):
        MetricBody.model_validate({"name": "m", "query": {"select": [{"function": "count"}], "filter": [
            {"property": "city", "comparator": "in", "value": "B"}]}})
    with pytest.raises(ValidationError, match=r"query\.filter\.0\.comparator"):
        MetricBody.model_validate({"name": "psi", "query": {
            "select": [{"function": "PSI", "parameters": {"property": "x", "reference": "r"}}],
            "filter": [{"property": "x", "comparator": "like", "value": 1}]}})
    with pytest.raises(ValidationError, match=r"(?s)query\.select\.0\.function.*Input should be 'avg'"):
        MetricBody.model_validate({"name": "m", "query": {"select": [{"function": "median",
                                                                      "parameters": {"property": "x"}}]}})
    with pytest.raises(ValidationError, match=r"needs parameters\.property"):
        MetricBody.model_validate({"name": "m", "query": {"select": [{"function": "avg"}]}})
    with pytest.raises(ValidationError, match=r"needs parameters\.reference"):
        MetricBody.model_validate({"name": "psi", "query": {"select": [{"function": "PSI",
                                                                        "parameters": {"property": "x"}}]}})


def test_compute_metric_functions() -> None:
    p = DatasetProfile()
    p.track(pl.DataFrame({"in.x": [1.0, 2.0, None, 5.0], "out.y": [1.0, 2.0, 3.0, 4.0],
                          "gt.y": [1.0, 2.0, 3.0, 6.0]}))

    def m(fn: str, **params: object) -> float | None:
        return compute_metric(_metric(fn, {"name": fn, "query": {"select": [{"function": fn,
                                                                             "parameters": params}]}}), p)

    assert m("avg", property="x") == pytest.approx(8 / 3)
    assert m("sum", property="x") == pytest.approx(8.0)
    assert (m("min", property="x"), m("max", property="x")) == (1.0, 5.0)
    assert m("count", property="x") == 3.0 and m("count") == 4.0
    assert m("mae", ground_truth_property="y") == pytest.approx(0.5)
    assert m("rmse", ground_truth_property="y") == pytest.approx(1.0)
    ref = DatasetProfile()
    ref.track(pl.DataFrame({"in.x": [1.0, 2.0, 5.0]}))
    psi = _metric("h", {"name": "h", "query": {"select": [{"function": "HellingerDistance",
                                                           "parameters": {"property": "x", "reference": "ref"}}]}})
    assert compute_metric(psi, p, {"ref": ref}.get) == pytest.approx(0.0, abs=1e-9)
    # the default metrics the API lists are the ones rules evaluate
    types = {name: col.inferred_type for name, col in p.columns.items()}
    defaults = default_metrics("m", types)
    assert [(d.id, d.name) for d in defaults] == [(default_metric_id("m", fn, c), f"{fn}({c})")
                                                  for c in ("in.x", "out.y") for fn in ("avg", "count", "min", "max")]
    assert [compute_metric(d, p) for d in defaults[:4]] == [pytest.approx(8 / 3), 3.0, 1.0, 5.0]


@pytest.mark.integration
def test_rule_lookback_and_wait_time(store: Store) -> None:
    for i in range(20):
        _minute(store, T0 + i * MINUTE, 10.0 if i < 10 else 20.0, seed=i)
    repo = MonitoringRepository(store)
    metric = repo.put_metric(MODEL, _metric("avg-x", {"name": "avg x", "query": {"select": [
        {"function": "avg", "alias": "avg", "parameters": {"property": "x"}}], "filter": []}}))
    rule = repo.put_alert_rule(MODEL, AlertRule(id="high", metric_id=metric.id, bound="upper", threshold=15,
                                                severity="critical", lookback_period=5, subsequent_alert_wait_time=3))
    repo.put_alert_rule(MODEL, AlertRule(id="off", metric_id=metric.id, bound="lower", threshold=100,
                                         severity="warning", enabled=False))
    sent: list[dict[str, object]] = []

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        sent.append(orjson.loads(value))

    fired = []
    for i in range(8, 20):  # the 5-minute mean crosses 15 once 3 of its minutes are shifted (i = 12)
        out = asyncio.run(evaluate_rules(store, MODEL, T0 + i * MINUTE + 30_000, publish, "alerts"))
        fired += [i] * len(out)
    assert fired == [12, 15, 18]  # then silent for 3 minutes each time
    assert [a["severity"] for a in sent] == ["critical"] * 3 and sent[0]["rule"]["value"] > 15
    assert asyncio.run(evaluate_rules(store, MODEL, T0 + 18 * MINUTE + 50_000, publish, "alerts")) == []
    assert len(list_alerts(store, MODEL, source="rule")) == 3
    assert [r.enabled for r in repo.list_alert_rules(MODEL) if r.id == rule.id] == [True]


@pytest.mark.integration
def test_rules_on_api_default_metrics_and_filtered_metrics(store: Store) -> None:
    """Rules on the API's default metrics and on custom ones are evaluated. A metric with
    a row filter is computed from the minute profiles the worker keeps of the rows passing it: the
    filtered average crosses the threshold while the overall one does not."""
    from stream.config.models import ModelConfig
    from stream.events.decode import RawMessage
    from stream.settings import Settings
    from stream.store.config import ConfigRepository
    from stream.worker.step import StreamWorker

    model = "api"
    ConfigRepository(store).put_model(ModelConfig(name=model))
    repo = MonitoringRepository(store)
    city_b = [{"property": "city", "comparator": "eq", "value": "B"}]
    city_c = [{"property": "city", "comparator": "eq", "value": "C"}]
    metrics = {
        "r-default": default_metric_id(model, "avg", "in.x"),
        "r-avg-b": repo.put_metric(model, Metric.model_validate({"id": "avg-b", "name": "avg x in B", "query": {
            "select": [{"function": "avg", "parameters": {"property": "x"}}], "filter": city_b}})).id,
        "r-count-b": repo.put_metric(model, Metric.model_validate({"id": "count-b", "name": "B rows", "query": {
            "select": [{"function": "count"}], "filter": city_b}})).id,
        "r-count-c": repo.put_metric(model, Metric.model_validate({"id": "count-c", "name": "C rows", "query": {
            "select": [{"function": "count"}], "filter": city_c}})).id,
    }
    thresholds = {"r-default": 25, "r-avg-b": 25, "r-count-b": 9, "r-count-c": -1}
    for rid, metric_id in metrics.items():
        repo.put_alert_rule(model, AlertRule(id=rid, metric_id=metric_id, bound="upper", threshold=thresholds[rid],
                                             severity="warning", lookback_period=2, subsequent_alert_wait_time=60))

    async def publish(topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        pass

    worker = StreamWorker(Settings(topic_prefix="filtered-"), store, {}, publish)
    events = [RawMessage(orjson.dumps({"model": model, "timestamp": T0 + (o // 10) * MINUTE + o % 10,
                                       "inputs": {"x": 30 if o % 2 else 10, "city": "B" if o % 2 else "A"}}), 0, o, 0)
              for o in range(60)]  # minutes 0..5, ten events each, half of them in city B
    asyncio.run(worker.process(events))
    asyncio.run(worker.flush(now=1e12))
    out = asyncio.run(evaluate_rules(store, model, T0 + 5 * MINUTE, publish, "alerts"))
    values = {a.rule_id: a.body["rule"]["value"] for a in out}
    # overall avg 20 stays under 25; B's avg is 30; B has 5 rows a minute -> 10 in two minutes; no row
    # passes city = C, and a count over no rows is 0 (so "fewer than N" rules fire when rows stop)
    assert values == {"r-avg-b": 30.0, "r-count-b": 10.0, "r-count-c": 0.0}


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []
    calls = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls["n"] += 1
            body = self.rfile.read(int(self.headers["content-length"]))
            if calls["n"] <= 2:  # two failures, then success
                self.send_response(503)
                self.end_headers()
                return
            received.append(body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_webhook_retries_with_backoff(flaky_server: tuple[str, list[bytes]]) -> None:
    url, received = flaky_server
    assert asyncio.run(post_webhook(url, {"schema": "driftline.alert/v1", "alert_id": "x"}, backoff=0.05))
    assert [orjson.loads(b)["alert_id"] for b in received] == ["x"]
    assert not asyncio.run(post_webhook("http://127.0.0.1:9/none", {"a": 1}, attempts=2, backoff=0.01))


@pytest.mark.integration
def test_monitor_webhook_action(store: Store, flaky_server: tuple[str, list[bytes]]) -> None:
    from stream.analysis.alerts import WEBHOOK_BACKOFF, process_monitors
    from stream.analysis.analyzers import AnalyzerResult
    from stream.analysis.monitor_config import parse_document
    from stream.store.analysis import ResultRecord

    url, received = flaky_server
    doc = parse_document({"analyzers": [{"id": "a", "config": {"type": "fixed", "metric": "mean", "upper": 1}}],
                          "monitors": [{"id": "hook", "analyzerIds": ["a"], "schedule": {"type": "immediate"},
                                        "mode": {"type": "EVERY_ANOMALY"},
                                        "actions": [{"type": "webhook", "target": url}]}]})
    result = ResultRecord("w", "a", "fixed", "hourly", "", "in.x", T0,
                          AnalyzerResult("fixed", "mean", True, "2.0 above upper bound", value=2.0, upper=1.0))
    topic: list[bytes] = []

    async def publish(t: str, key: bytes | None, value: bytes, headers: dict[str, bytes]) -> None:
        topic.append(value)

    import stream.analysis.alerts as alerts_module

    alerts_module.WEBHOOK_BACKOFF = 0.05  # keep the test fast; two 503s are retried
    try:
        sent = asyncio.run(process_monitors(store, "w", doc, [result], publish, "alerts", now_ms=T0))
    finally:
        alerts_module.WEBHOOK_BACKOFF = WEBHOOK_BACKOFF
    assert len(sent) == 1 and len(topic) == 1
    assert [orjson.loads(b)["alert_id"] for b in received] == [sent[0].alert_id]
    assert orjson.loads(topic[0])["anomalies"][0]["upper"] == 1.0
