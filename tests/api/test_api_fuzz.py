"""Property-based run over the OpenAPI schema: random requests never give a 5xx, and every status
answered is one the operation declares (what schemathesis checks as status-code conformance).

Every operation of the generated schema is exercised with hypothesis-drawn parameters (valid-looking
values, random text, numbers, injection-ish strings), admin, foreign-scope or missing keys, and JSON or
raw bodies under the content types the operation declares (and one it does not); every answer must be
< 500, declared for the operation and, for errors, the common `ErrorBody`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from conftest import ANOMALY_COLUMNS, T0, anomaly_row, frame, insert_profiles, profile_row
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.schemas import ErrorBody
from stream.store.client import Store
from stream.store.keys import create_key

pytestmark = pytest.mark.integration

SKIP = {"/metrics", "/health"}  # operations endpoints: health probes the broker, not input handling

text = st.text(max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(text, inner, max_size=4)),
                           max_leaves=12)
query_values = st.one_of(
    text, st.integers(-10**20, 10**20).map(str), st.sampled_from([
        "*", "", "true", "false", "2026-11-01T00:00:00Z", "1793491200000", "in.city=Boston", "in.x,out.p",
        "hour", "day", "minute", "hellinger", "psi", "csv", "json", "env:prod", "' OR 1=1 --", "1000", "1001", "0",
    ]))
path_values = st.one_of(st.sampled_from(["m", "nope", "fraud"]), text.filter(lambda s: s not in ("", ".", "..")))
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"name": st.one_of(text, st.just("m2")), "granularity": text}),
    st.fixed_dictionaries({"name": text, "expression": st.one_of(text, st.just('pl.col("in.x") > 1'))}),
    st.fixed_dictionaries({"tags": st.dictionaries(text, text, max_size=3)}),
)


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    schema = client.get("/openapi.json").json()
    ops = []
    for path, item in schema["paths"].items():
        if path in SKIP:
            continue
        for method, op in item.items():
            ops.append((method.upper(), path, op))
    return ops


@pytest.fixture
def seeded(store: Store, make_model: Any) -> None:
    make_model("m", segment_keys=["in.city"])
    insert_profiles(store, [profile_row("m", T0 + timedelta(hours=h), frame(20, seed=h)) for h in range(2)])
    store.insert("anomaly_log", [anomaly_row("m", T0, 1, ["fraud"])], ANOMALY_COLUMNS)


def test_random_requests_answer_declared_statuses(app_client: TestClient, store: Store, admin: dict[str, str],
                                                  seeded: None) -> None:
    ops = _operations(app_client)
    assert len(ops) >= 15
    scoped = {"Authorization": f"Bearer {create_key(store, 'model:other')}"}

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method, path, op = data.draw(st.sampled_from(ops))
        url = path
        query: dict[str, str] = {}
        for p in op.get("parameters", []):
            if p["in"] == "path":
                url = url.replace("{" + p["name"] + "}", quote(data.draw(path_values), safe=""))
            elif p["in"] == "query" and data.draw(st.booleans()):
                query[p["name"]] = data.draw(query_values)
        headers = dict(data.draw(st.sampled_from([admin, admin, scoped, {}])))
        kwargs: dict[str, Any] = {}
        if "requestBody" in op:
            headers["content-type"] = data.draw(st.sampled_from([*op["requestBody"]["content"], "text/plain"]))
            kwargs["content"] = data.draw(st.one_of(st.binary(max_size=200), bodies.map(orjson.dumps)))
        r = app_client.request(method, url, params=query, headers=headers, **kwargs)
        assert r.status_code < 500, (method, url, query, kwargs, r.status_code, r.text)
        assert str(r.status_code) in op["responses"], (method, url, query, kwargs, r.status_code, r.text[:300])
        if r.status_code >= 400:
            ErrorBody.model_validate(r.json())

    run()
