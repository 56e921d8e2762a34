"""The API's contract on the running product, as a new user met it: rejected Kafka messages are listed
as dead letters (reason, model, the input itself, its source offset); HTTP ingest rejects a bad event
with 422 naming it and writes nothing of that request; the request limits answer 413 / 414 / 422 (never
a 500) and the server keeps answering, on the same connection; monitor documents, metrics, flags,
drift and assays answer as documented; every status observed is declared in the served OpenAPI."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import polars as pl
import pytest
from aiokafka import AIOKafkaProducer

from sketches import ColumnProfile
from sketches.drift import column_distance
from tests.e2e.conftest import HOUR, MINUTE, Stack, now_hour
from tests.integration.helpers import eventually, raw_get

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
FIELD_KEYS = {"loc", "path", "msg", "type"}
EVENT_FIELDS = {"model", "timestamp", "event_id", "model_version", "inputs", "outputs", "ground_truth", "tags",
                "elapsed_ns"}
OBSERVED: set[tuple[str, str, int]] = set()  # (method, concrete path, status) of every test in this module


# ------------------------------------------------------------------------------------------ helpers
class Api:
    """HTTP clients of the stack that record every (method, path, status) they see."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.seen: set[tuple[str, str, int]] = set()

    def client(self) -> httpx.Client:
        c = self.stack.client()
        c.event_hooks = {"response": [self._record]}
        return c

    def _record(self, response: httpx.Response) -> None:
        self.note(response.request.method, response.request.url.path, response.status_code)

    def note(self, method: str, path: str, status: int) -> None:
        self.seen.add((method, path, status))
        OBSERVED.add((method, path, status))

    def check_declared(self) -> None:
        """Every status seen is declared for its operation in the served OpenAPI."""
        assert_declared(self.stack, self.seen)


def openapi(stack: Stack) -> dict[str, Any]:
    r = httpx.get(f"{stack.api_url}/openapi.json", timeout=30)
    assert r.status_code == 200, r.text
    schema: dict[str, Any] = r.json()
    return schema


def operation(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The operation a concrete path is answered by (a literal segment wins over a parameter)."""
    matches = [t for t, item in schema["paths"].items() if method.lower() in item
               and re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)), path)]
    assert matches, f"no operation for {method} {path}"
    return dict(schema["paths"][min(matches, key=lambda t: t.count("{"))][method.lower()])


def assert_declared(stack: Stack, seen: set[tuple[str, str, int]]) -> None:
    schema = openapi(stack)
    undeclared = [(m, p[:120], s) for m, p, s in sorted(seen)
                  if str(s) not in operation(schema, m, p)["responses"]]
    assert not undeclared, undeclared


@pytest.fixture
def api(stack: Stack) -> Iterator[Api]:
    yield Api(stack)


def field_errors(r: httpx.Response) -> list[dict[str, Any]]:
    """The response's `detail` as field errors of the one error shape."""
    body = r.json()
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    assert isinstance(detail, list), body
    for e in detail:
        assert set(e) == FIELD_KEYS and e["path"] == ".".join(e["loc"]), e
    return detail


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def create_model(client: httpx.Client, model: str) -> None:
    r = client.post("/v1/models", json={"name": model})
    assert r.status_code == 201, r.text


def window(client: httpx.Client, model: str, start: int) -> dict[str, Any] | None:
    """The model's overall profile of the hour window starting at `start` (None while not stored)."""
    r = client.get(f"/v1/models/{model}/profiles", params={"start": start, "end": start + HOUR})
    assert r.status_code == 200, r.text
    windows = r.json()["windows"]
    assert len(windows) <= 1, windows
    return windows[0] if windows else None


def stored_rows(client: httpx.Client, model: str, start: int, rows: int) -> dict[str, Any]:
    """Wait until the window at `start` holds `rows` events; fail on more."""
    def probe() -> dict[str, Any] | None:
        w = window(client, model, start)
        assert w is None or w["row_count"] <= rows, w["row_count"]
        return w if w is not None and w["row_count"] == rows else None

    found = eventually(probe, timeout=60, interval=0.5)
    assert found is not None
    return found


async def _send_raw(stack: Stack, values: list[bytes], key: bytes) -> list[tuple[int, int]]:
    """Publish raw message values with a plain producer; (partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.bootstrap_servers)
    await producer.start()
    try:
        out = []
        for value in values:
            meta = await producer.send_and_wait(stack.settings.topic("events"), value, key=key)
            out.append((meta.partition, meta.offset))
        return out
    finally:
        await producer.stop()


# ------------------------------------------------------------------------------------- dead letters
def test_dead_letters_are_exactly_the_rejected_messages(stack: Stack, api: Api, model: str) -> None:
    client = api.client()
    create_model(client, model)
    since = int(time.time() * 1000) - 1000
    start = now_hour() - 2 * HOUR
    good = [orjson.dumps({"model": model, "timestamp": start + i * MINUTE, "event_id": f"g{i}",
                          "inputs": {"x": float(i)}, "outputs": {"y": i % 3}}) for i in range(40)]
    bad = {
        "bad-json": b'{"model": "' + model.encode() + b'", "inputs": {"x": ',
        "bad-timestamp": orjson.dumps({"model": model, "timestamp": "yesterday", "inputs": {"x": 1000.0}}),
        "not-an-object": b"[1, 2, 3]",
    }
    values = [*good[:10], bad["bad-json"], *good[10:20], bad["bad-timestamp"], *good[20:30], bad["not-an-object"],
              *good[30:]]
    sent = dict(zip(values, asyncio.run(_send_raw(stack, values, model.encode())), strict=True))

    w = stored_rows(client, model, start, 40)
    assert set(w["columns"]) == {"in.x", "out.y"}
    assert w["columns"]["in.x"]["count"] == 40 and w["columns"]["in.x"]["null_count"] == 0
    assert w["columns"]["in.x"]["max"] == 39.0 and w["columns"]["in.x"]["mean"] == pytest.approx(19.5)
    assert w["columns"]["out.y"]["count"] == 40

    def mine() -> dict[str, Any] | None:
        page = client.get("/v1/dead-letters", params={"start": since}).json()
        return page if page["total"] >= 3 else None

    everything = eventually(mine, timeout=30, interval=0.5)
    assert everything is not None and everything["total"] == 3, everything
    got = {i["reason"]: i for i in everything["items"]}
    assert set(got) == set(bad)
    now = datetime.now(UTC)
    for reason, item in got.items():
        value = bad[reason]
        assert item["source"] == {"topic": stack.settings.topic("events"), "partition": sent[value][0],
                                  "offset": sent[value][1], "batch_index": 0}, reason
        assert item["payload_excerpt"] == value.decode() and item["payload_bytes"] == len(value)
        assert item["payload_truncated"] is False
        received = datetime.fromisoformat(item["time"].replace("Z", "+00:00"))
        assert now - timedelta(minutes=2) < received <= now + timedelta(seconds=5)
    assert got["bad-timestamp"]["model"] == model  # the model a rejected event names
    assert got["bad-timestamp"]["detail"] == "timestamp 'yesterday' is not ISO-8601"
    assert got["bad-json"]["model"] is None and got["bad-json"]["detail"]  # undecodable: names no model
    assert got["not-an-object"]["model"] is None
    assert got["not-an-object"]["detail"] == "an event must be a JSON object, not list"

    # the model's own list: only the event that named it
    own = client.get(f"/v1/models/{model}/dead-letters")
    assert own.status_code == 200
    assert own.json() == {"items": [got["bad-timestamp"]], "page": 1, "page_size": 100, "total": 1}
    assert client.get("/v1/dead-letters", params={"model": model}).json()["items"] == [got["bad-timestamp"]]
    unnamed = client.get("/v1/dead-letters", params={"model": "", "start": since}).json()
    assert sorted(i["reason"] for i in unnamed["items"]) == ["bad-json", "not-an-object"]
    by_reason = client.get("/v1/dead-letters", params={"reason": "bad-json", "start": since}).json()
    assert by_reason["items"] == [got["bad-json"]]
    assert client.get(f"/v1/models/{model}/dead-letters", params={"reason": "bad-json"}).json()["total"] == 0
    api.check_declared()


# ------------------------------------------------------------------------------------- HTTP ingest
def test_http_ingest_rejects_a_bad_event_whole_and_accepts_a_valid_request(stack: Stack, api: Api,
                                                                             model: str) -> None:
    client = api.client()
    create_model(client, model)
    start = now_hour() - 2 * HOUR
    rejected = [{"timestamp": start + MINUTE, "inputs": {"x": 1.0, "rejected": 1}},
                {"timestamp": "yesterday", "inputs": {"x": 2.0}},
                {"timestamp": start + 2 * MINUTE, "inputs": {"x": 3.0, "rejected": 1}}]
    r = client.post(f"/v1/models/{model}/events", json=rejected)
    assert r.status_code == 422, r.text
    assert field_errors(r) == [{"loc": ["body", "1", "timestamp"], "path": "body.1.timestamp",
                                "msg": "event 1: timestamp 'yesterday' is not ISO-8601", "type": "bad-timestamp"}]

    events = [{"timestamp": start + i * MINUTE, "event_id": f"e{i}", "model_version": "v1",
               "inputs": {"x": float(i)}, "outputs": {"y": 1.0}, "tags": {"region": "eu"}} for i in range(25)]
    r = client.post(f"/v1/models/{model}/events", json=events)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 25, "messages": 1, "topic": stack.settings.topic("events")}
    # the valid request came after the rejected one on the same partition: once its 25 events are stored,
    # anything of the rejected request would be too
    w = stored_rows(client, model, start, 25)
    assert set(w["columns"]) == {"in.x", "out.y", "tag.region"}  # no `in.rejected`
    assert w["columns"]["in.x"]["count"] == 25 and w["columns"]["in.x"]["min"] == 0.0
    assert w["columns"]["in.x"]["max"] == 24.0
    regions = client.get(f"/v1/models/{model}/profiles",
                         params={"start": start, "end": start + HOUR, "segment": "*"}).json()["windows"]
    assert sorted((x["segment"], x["row_count"]) for x in regions) == [("", 25), ("tag.region=eu", 25)]
    assert client.get(f"/v1/models/{model}/dead-letters").json()["total"] == 0  # it never reached Kafka
    api.check_declared()


# ------------------------------------------------------------------------------------- limits
def _local_port(r: httpx.Response) -> int:
    """The client side port of the connection a response came on."""
    port: int = r.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


def test_request_limits_on_the_real_server(stack: Stack, api: Api, model: str) -> None:
    client = api.client()
    create_model(client, model)
    url = f"/v1/models/{model}/monitor-config"
    # 500 levels of JSON: a 422 naming the body (it was a RecursionError → 500), and the connection stays
    first = client.get(f"/v1/models/{model}")
    assert first.status_code == 200
    r = client.put(url, content=b'{"a": ' * 500 + b"1" + b"}" * 500, headers=JSON)
    assert r.status_code == 422, r.text
    assert field_errors(r) == [{"loc": ["body"], "path": "body", "msg": "JSON nested deeper than 64 levels",
                                "type": "json_too_deep"}]
    after = client.get(f"/v1/models/{model}")
    assert after.status_code == 200 and after.json()["name"] == model
    assert _local_port(first) == _local_port(r) == _local_port(after)  # one keep-alive connection
    assert client.get(url).status_code == 404  # nothing stored

    # a body over the 4 MiB limit of ordinary routes
    big = b'{"a": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    r = client.put(url, content=big, headers=JSON)
    assert r.status_code == 413, r.text
    assert r.json() == {"detail": f"body of {len(big)} bytes exceeds the limit of {4 * 1024 * 1024} bytes"}
    assert client.get(f"/v1/models/{model}").status_code == 200
    assert client.get(url).status_code == 404

    # a ~100 KB query string: 414 JSON, and the same socket answers the next requests
    with socket.create_connection(("127.0.0.1", stack.settings.api_port), timeout=10) as sock:
        path = "/v1/models"
        status, body = raw_get(sock, f"{path}?tag=t:" + "x" * 100_000, stack.admin_key)
        api.note("GET", path, status)
        assert status == 414, body[:300]
        assert orjson.loads(body) == {"detail": "URI too long: the query string has 100006 bytes, at most 65536 "
                                                "are accepted"}
        status, body = raw_get(sock, f"/v1/models/{model}", stack.admin_key)
        api.note("GET", f"/v1/models/{model}", status)
        assert status == 200 and orjson.loads(body)["name"] == model
        status, body = raw_get(sock, f"{path}?unused=" + "x" * 20_000, stack.admin_key)  # over h11's 16 KiB
        api.note("GET", path, status)
        assert status == 200, body[:300]
    assert httpx.get(f"{stack.api_url}/health", timeout=10).status_code == 200
    api.check_declared()


# ------------------------------------------------------------------------------------- config validation
ANALYZER = {"id": "drift-x", "schedule": {"type": "fixed", "cadence": "hourly"},
            "targetMatrix": {"type": "column", "include": ["in.x"]},
            "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                       "baseline": {"type": "TrailingWindow", "size": 7}}}
MONITOR = {"id": "drift-monitor", "analyzerIds": ["drift-x"], "schedule": {"type": "immediate"},
           "mode": {"type": "EVERY_ANOMALY"}, "severity": 3, "actions": []}


def test_config_validation(stack: Stack, api: Api, model: str) -> None:
    client = api.client()
    create_model(client, model)
    url = f"/v1/models/{model}/monitor-config"
    doc = {"id": "doc-1", "schemaVersion": 1, "orgId": "org-0", "datasetId": model, "granularity": "hourly",
           "analyzers": [ANALYZER], "monitors": [MONITOR]}
    # a monitor naming an analyzer the document lacks: the whole document and the single monitor alike
    r = client.put(url, json={**doc, "monitors": [{**MONITOR, "analyzerIds": ["nope"]}]})
    assert r.status_code == 422, r.text
    assert field_errors(r) == [{"loc": ["body", "monitors", "0", "analyzerIds", "0"],
                                "path": "body.monitors.0.analyzerIds.0", "msg": "unknown analyzer id 'nope'",
                                "type": "reference"}]
    assert client.get(url).status_code == 404
    r = client.put(url, json={**doc, "datasetId": "other-model"})
    assert r.status_code == 422
    assert field_errors(r) == [{"loc": ["body", "datasetId"], "path": "body.datasetId", "type": "dataset_mismatch",
                                "msg": f"datasetId 'other-model' differs from the model '{model}' it is stored "
                                       f"for: omit it or set it to '{model}'"}]
    assert client.get(url).status_code == 404
    r = client.put(url, json=doc)
    assert r.status_code == 200 and r.json() == doc
    r = client.put(f"{url}/monitors/drift-monitor", json={**MONITOR, "analyzerIds": ["nope"]})
    assert r.status_code == 422
    assert field_errors(r) == [{"loc": ["body", "analyzerIds", "0"], "path": "body.analyzerIds.0",
                                "msg": "unknown analyzer id 'nope'", "type": "reference"}]
    assert client.get(url).json() == doc  # unchanged

    # a metric on an unknown column: a warning while the model has no data, 422 naming it after
    metrics = f"/v1/models/{model}/metrics"
    nope = {"name": "avg nope", "query": {"select": [{"function": "avg", "parameters": {"property": "in.nope"}}]}}
    r = client.post(metrics, json=nope)
    assert r.status_code == 201, r.text
    assert r.json()["warnings"] == ["query.select.0.parameters.property: column 'in.nope' cannot be checked: "
                                    f"model '{model}' has no stored data yet"]
    start = now_hour() - 2 * HOUR
    stack.produce([{"model": model, "timestamp": start + i * MINUTE, "inputs": {"x": float(i)},
                    "outputs": {"y": 1.0}} for i in range(10)])
    stored_rows(client, model, start, 10)
    r = client.post(metrics, json=nope)
    assert r.status_code == 422, r.text
    assert field_errors(r) == [{"loc": ["body", "query", "select", "0", "parameters", "property"],
                                "path": "body.query.select.0.parameters.property", "type": "unknown_column",
                                "msg": f"unknown column 'in.nope': model '{model}' has no such column (known: "
                                       "in.x, out.y)"}]
    ok = {"name": "avg x", "query": {"select": [{"function": "avg", "parameters": {"property": "x"}}]}}
    r = client.post(metrics, json=ok)
    assert r.status_code == 201 and r.json()["warnings"] == []
    api.check_declared()


# ------------------------------------------------------------------------------------- review
def test_only_known_events_can_be_flagged(stack: Stack, api: Api, model: str) -> None:
    client = api.client()
    create_model(client, model)
    r = client.put(f"/v1/models/{model}/validations", json={"high_x": 'pl.col("in.x") > 100'})
    assert r.status_code == 200, r.text
    at = now_hour() - 2 * HOUR
    stack.produce([{"model": model, "timestamp": at, "event_id": "passed", "inputs": {"x": 1.0}}])
    sent = 0

    def flagged_one() -> str | None:  # the worker evaluates the validation once it has read the config
        nonlocal sent
        eid = f"failing-{sent}"
        stack.produce([{"model": model, "timestamp": at + MINUTE, "event_id": eid, "inputs": {"x": 1000.0}}])
        sent += 1
        page = client.get(f"/v1/models/{model}/validation-failures",
                          params={"validation": "high_x", "start": at, "end": at + HOUR}).json()
        return page["items"][0]["event_id"] if page["total"] else None

    failing = eventually(flagged_one, timeout=60, interval=1.0)
    r = client.post(f"/v1/models/{model}/events/ghost/flag", json={"reason": "looks wrong"})
    assert r.status_code == 404
    assert r.json() == {"detail": f"unknown event 'ghost' of model '{model}': only events in the anomaly log (or "
                                  "flagged before) can be flagged"}
    # profiled but never in the anomaly log: not known either
    assert client.post(f"/v1/models/{model}/events/passed/flag", json={"reason": "x"}).status_code == 404
    r = client.post(f"/v1/models/{model}/events/{failing}/flag", json={"reason": "looks wrong"})
    assert r.status_code == 200 and r.json()["event_id"] == failing and r.json()["reason"] == "looks wrong"
    review = client.get(f"/v1/models/{model}/review").json()
    assert review["flagged"] == 1 and review["found"] == 1
    assert review["failed_validations"] == [{"value": "high_x", "events": 1, "coverage": 1.0}]
    api.check_declared()


# ------------------------------------------------------------------------------------- drift
def _profile(values: list[float]) -> ColumnProfile:
    p = ColumnProfile()
    p.track(pl.Series(values, dtype=pl.Float64))
    return p


def test_drift_reports_a_column_on_one_side_as_missing(stack: Stack, api: Api, model: str) -> None:
    client = api.client()
    create_model(client, model)
    base = now_hour() - 3 * HOUR
    baseline_x = [float(i % 20) for i in range(60)]
    target_x = [float(i % 20) + 5.0 for i in range(60)]
    events = [{"model": model, "timestamp": base + i * MINUTE, "inputs": {"x": x, "old": 1.0}}
              for i, x in enumerate(baseline_x)]
    events += [{"model": model, "timestamp": base + HOUR + i * MINUTE, "inputs": {"x": x, "fresh": float(i)}}
               for i, x in enumerate(target_x)]
    stack.produce(events)
    stored_rows(client, model, base, 60)
    stored_rows(client, model, base + HOUR, 60)
    r = client.get(f"/v1/models/{model}/drift", params={
        "baseline_start": iso(base), "baseline_end": iso(base + HOUR),
        "target_start": iso(base + HOUR), "target_end": iso(base + 2 * HOUR)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["baseline"]["row_count"] == 60 and body["target"]["row_count"] == 60
    columns = body["columns"]
    assert set(columns) == {"in.x", "in.old", "in.fresh"}
    assert columns["in.fresh"] == {"distance": None, "discrete": False, "missing": "baseline"}  # was 1.0
    assert columns["in.old"] == {"distance": None, "discrete": False, "missing": "target"}
    expected = column_distance("hellinger", _profile(baseline_x), _profile(target_x))
    assert 0 < expected < 1
    assert columns["in.x"]["missing"] is None and columns["in.x"]["discrete"] is False
    assert columns["in.x"]["distance"] == pytest.approx(expected, abs=1e-9)
    api.check_declared()


# ------------------------------------------------------------------------------------- assays
def test_assay_baseline_values_only_on_request(stack: Stack, api: Api, model: str) -> None:
    client = api.client()
    create_model(client, model)
    values = [round(0.37 * i % 11.0, 4) for i in range(3000)]
    body = {"name": "x drift", "baseline": {"values": values}, "iopath": "in.x", "window": {"width": "1 hour"},
            "summarizer": {"bin_mode": "quantile", "num_bins": 5, "aggregation": "density", "metric": "PSI"},
            "warning_threshold": 0.1, "alert_threshold": 0.25}
    r = client.post(f"/v1/models/{model}/assays", json=body)
    assert r.status_code == 201, r.text
    assay = r.json()
    assert assay["baseline"] == {"start": None, "end": None, "values_count": 3000, "values": None}
    assert len(r.content) < 3000  # a summary, not the 3000 values
    binned = assay["binned_baseline"]
    assert binned["stats"]["count"] == 3000 and binned["stats"]["min"] == min(values)
    assert binned["stats"]["max"] == max(values)
    assert len(binned["inner_edges"]) == 6 and len(binned["proportions"]) == 7
    assert r.headers["location"] == f"/v1/assays/{assay['id']}"
    assert client.get(f"/v1/assays/{assay['id']}").json() == assay
    full = client.get(f"/v1/assays/{assay['id']}", params={"include": "baseline_values"})
    assert full.status_code == 200
    assert full.json() == {**assay, "baseline": {**assay["baseline"], "values": values}}
    listed = client.get(f"/v1/models/{model}/assays", params={"include": "baseline_values"}).json()
    assert [a["baseline"]["values"] for a in listed["items"]] == [values]
    assert client.get(f"/v1/models/{model}/assays").json()["items"] == [assay]
    r = client.get(f"/v1/assays/{assay['id']}", params={"include": "everything"})
    assert r.status_code == 422 and field_errors(r)[0]["path"] == "query.include"
    assert client.post(f"/v1/assays/{assay['id']}/pause").json() == {**assay, "active": False}
    api.check_declared()


# ------------------------------------------------------------------------------------- OpenAPI
def test_openapi_of_the_running_server(stack: Stack, api: Api) -> None:
    schema = openapi(stack)
    post = schema["paths"]["/v1/models/{model}/events"]["post"]
    assert {"202", "413", "415", "422"} <= set(post["responses"])
    body = post["requestBody"]
    assert body["required"] is True
    assert {"application/json", "application/json; format=pandas-records", "application/x-ndjson",
            "application/vnd.apache.arrow.file", "application/vnd.apache.arrow.stream"} == set(body["content"])
    refs = set(re.findall(r"#/components/schemas/\w+", str(body["content"]["application/json"]["schema"])))
    assert {"#/components/schemas/Event", "#/components/schemas/FlatEvent"} <= refs
    event = schema["components"]["schemas"]["Event"]["properties"]
    assert set(event) >= EVENT_FIELDS
    for name in EVENT_FIELDS:
        assert event[name].get("description") or name in ("inputs", "outputs", "ground_truth", "tags"), name
    # every status the scenarios above observed (those that ran) is declared for its operation
    assert_declared(stack, OBSERVED)
