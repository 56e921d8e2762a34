"""The web console in real browsers: headless Debian Chromium (Playwright), and Debian firefox-esr (puppeteer-core
over WebDriver BiDi, tests/e2e/console_firefox.cjs), against the running stack.

One model gets eight hourly windows (`in.x` shifts from ~10 to ~20 in the last two, `in.y` stays put),
a reference profile of the stable distribution, a WhyLabs drift analyzer on `in.x` / `in.y` against
it, a Wallaroo assay of `in.x` and a validation, all through the public API and Kafka. Once the
worker's analysis has written its results, a browser logs in with a key made by `driftline keys
create` and walks every page: the numbers shown must equal the JSON API's, the drifted column must
be flagged and the stable one not, every chart must render, the browser console must stay clean,
and axe-core must find no serious or critical accessibility violation. Screenshots of every page go
to tests/e2e/artifacts/ (console.png is the README picture, copied to docs/ by hand). Nothing is asserted on time; each
page's server response time is printed. Sessions are checked across two API replicas of one store: logout
on one ends the session on both, and revoking the key ends it too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from stream.cli.services import free_port
from stream.store.keys import key_id_of
from tests.e2e.conftest import HOUR, Stack, now_hour
from tests.e2e.console_browser import ARTIFACTS, SEVERE, Tab, launch, login, numbers, tab
from tests.e2e.console_firefox import Visit, walk
from tests.integration.helpers import eventually, http_get, spawn, stop

pytestmark = pytest.mark.integration

# Events per hourly window, one every 2.5 minutes. Eight windows hold 192 values per column, fewer than
# the KLL sketch's k (200): merged sketches are then exact, whatever the merge order. (Above k, KLL
# compaction is randomized, so two merges of the same windows, e.g. two calls of /drift, differ
# slightly, and a page could not be compared with the API exactly.)
N = 24
STEP = HOUR // N
SPREAD = [-2.0 + 4.0 * i / (N - 1) for i in range(N)]
X_BASE = [9.5, 10.5, 10.0, 9.5, 10.5, 10.0, 20.0, 20.0]  # H-8 … H-1; the last two shifted
Y_BASE = [4.5, 5.5, 5.0, 4.5, 5.5, 5.0, 5.0, 4.5]
CITIES = ["boston", "austin", "denver"]
COLUMNS = ["in.city", "in.x", "in.y", "out.score"]
ROWS = 'tr[data-testid="column-row"]'


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _row(x: float, y: float, i: int) -> dict[str, Any]:
    return {"inputs": {"x": x, "y": y, "city": CITIES[i % 3]}, "outputs": {"score": round(x / 100, 6)}}


@dataclass
class Scenario:
    stack: Stack
    model: str
    hours: list[int]  # the eight window starts, H-8 … H-1
    end: int  # the current hour's start: every window lies in [hours[0], end)
    reference: str
    assay: str
    document: dict[str, Any]

    @property
    def api(self) -> httpx.Client:
        return self.stack.client()

    def range_query(self, start: int, end: int, baseline: str) -> str:
        return f"range=custom&start={_iso(start)}&end={_iso(end)}&baseline={baseline}"


def _document(model: str, reference: str) -> dict[str, Any]:
    return {
        "id": f"{model}-monitors", "schemaVersion": 1, "orgId": "org-0", "datasetId": model, "granularity": "hourly",
        "analyzers": [
            {"id": "drift-ref", "schedule": {"type": "fixed", "cadence": "hourly"},
             "targetMatrix": {"type": "column", "include": ["in.x", "in.y"]},
             "config": {"type": "drift", "metric": "histogram", "algorithm": "hellinger", "threshold": 0.7,
                        "baseline": {"type": "Reference", "profileId": reference}}}],
        "monitors": [{"id": "every", "analyzerIds": ["drift-ref"], "schedule": {"type": "immediate"}, "severity": 2,
                      "mode": {"type": "EVERY_ANOMALY"}, "actions": []}],
    }


def _windows(client: httpx.Client, model: str, start: int, end: int) -> dict[int, int]:
    r = client.get(f"/v1/models/{model}/profiles", params={"start": start, "end": end})
    assert r.status_code == 200, r.text
    return {_ms(w["window_start"]): w["row_count"] for w in r.json()["windows"]}


@pytest.fixture(scope="module")
def scenario(stack: Stack) -> Scenario:
    client = stack.client()
    model = f"console{uuid.uuid4().hex[:8]}"
    r = client.post("/v1/models", json={"name": model, "idle_timeout_seconds": 2})
    assert r.status_code == 201, r.text
    r = client.put(f"/v1/models/{model}/validations", json={"y_high": 'pl.col("in.y") > 7'})
    assert r.status_code == 200, r.text
    h = now_hour()
    hours = [h - (8 - k) * HOUR for k in range(8)]
    run = uuid.uuid4().hex[:6]
    stack.produce([{"model": model, "timestamp": ws + i * STEP + 7_000, "event_id": f"{run}-{k}-{i}",
                    **_row(X_BASE[k] + SPREAD[i], Y_BASE[k] + SPREAD[i], i)}
                   for k, ws in enumerate(hours) for i in range(N)])
    r = client.post(f"/v1/models/{model}/reference-profiles", params={"name": "stable"},
                    json=[_row(10.0 + SPREAD[i], 5.0 + SPREAD[i], i) for i in range(N)])
    assert r.status_code == 201, r.text
    reference = r.json()["id"]
    eventually(lambda: _windows(client, model, hours[0], h) == dict.fromkeys(hours, N), timeout=90, interval=0.5)

    document = _document(model, reference)
    r = client.put(f"/v1/models/{model}/monitor-config", json=document)
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/models/{model}/assays", json={
        "name": "x-psi", "iopath": "input x", "baseline": {"start": _iso(hours[0]), "end": _iso(hours[4])},
        "window": {"width": "1 hour"}, "summarizer": {"bin_mode": "quantile", "num_bins": 5, "metric": "PSI"},
        "warning_threshold": 0.1, "alert_threshold": 0.25})
    assert r.status_code == 201, r.text
    assay = r.json()["id"]

    def analysed() -> bool:
        results = client.get(f"/v1/models/{model}/analyzer-results", params={"page_size": 1000}).json()
        scored = client.get(f"/v1/assays/{assay}/results").json()
        return results["total"] >= 16 and scored["total"] >= 4  # 2 columns x 8 hours; hours[4:8]

    eventually(analysed, timeout=60, interval=0.5)
    return Scenario(stack, model, hours, h, reference, assay, document)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        b = launch(playwright)
        yield b
        b.close()


@pytest.fixture(scope="module")
def admin(scenario: Scenario, browser: Browser) -> Iterator[Tab]:
    """A browser logged in with an admin key made by `driftline keys create`, the keyboard only."""
    key = scenario.stack.create_key("admin")
    with tab(browser, scenario.stack.api_url) as t:
        login(t, key)
        yield t


def check_page(t: Tab, path: str, name: str, capsys: pytest.CaptureFixture[str], charts: int = 0,
               heading: str | None = None, logged_in: bool = True) -> Page:
    """Open a console page and check what every page must have; charts rendered, axe-core, a screenshot."""
    t.goto(path)
    page = t.page
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.locator("main#main")).to_have_count(1)
    expect(page.locator("h1")).to_have_count(1)
    if heading:
        expect(page.locator("h1")).to_contain_text(heading)
    nav = page.locator("nav").filter(has=page.get_by_role("link", name="Models", exact=True)).filter(
        has=page.get_by_role("link", name="Anomalies", exact=True))  # the site's nav, not breadcrumbs or tabs
    expect(nav).to_have_count(1)
    expect(nav.get_by_role("link", name="Models", exact=True)).to_have_attribute("href", "/")
    expect(nav.get_by_role("link", name="Anomalies", exact=True)).to_have_attribute("href", re.compile(r"^/anomalies"))
    logout = page.locator('form[action="/logout"][method="post" i]')
    if logged_in:  # the login page has no session to end
        expect(logout).to_have_count(1)
        expect(logout.get_by_role("button", name="Logout")).to_be_visible()
        assert logout.locator('input[type="hidden"]').get_attribute("value")  # the CSRF token
    expect(page.locator("#theme-toggle")).to_be_visible()
    expect(page.locator('a[href="#main"]')).to_have_count(1)
    rendered = t.wait_charts(charts) if charts else []
    report = _axe_report(t, name)
    t.screenshot(name)
    t.assert_no_errors(path)
    with capsys.disabled():
        print(f"\nconsole {name}: {t.timings[-1][1]:.0f} ms server response; charts {rendered}; axe: {report}")
    return page


def _axe_report(t: Tab, name: str) -> str:
    violations = t.axe()
    severe = [v for v in violations if v["impact"] in SEVERE]
    assert not severe, f"{name}: serious/critical accessibility violations: {severe}"
    return ", ".join(f"{v['id']} ({v['impact']}, {len(v['nodes'])} nodes)" for v in violations) or "no violations"


def _api_drift(s: Scenario, target: tuple[int, int], **baseline: Any) -> dict[str, float | None]:
    r = s.api.get(f"/v1/models/{s.model}/drift", params={"target_start": target[0], "target_end": target[1],
                                                          "algorithm": "hellinger", **baseline})
    assert r.status_code == 200, r.text
    return {c: d["distance"] for c, d in r.json()["columns"].items()}


def _shown(values: dict[str, str]) -> dict[str, float | None]:
    return {c: (float(v) if v not in ("", None) else None) for c, v in values.items()}


def _flagged(page: Page) -> set[str]:
    return {c for c in COLUMNS
            if page.locator(f'{ROWS}[data-column="{c}"] [data-testid="anomaly-flag"]').count() > 0}


def test_models_page_shows_the_24h_events_of_the_api(admin: Tab, scenario: Scenario,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario
    page = check_page(admin, "/", "models", capsys, heading="Models")
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    table = page.locator('[data-testid="models-table"]')
    start, end = int(table.get_attribute("data-start-ms") or 0), int(table.get_attribute("data-end-ms") or 0)
    assert end - start == 24 * HOUR and start <= s.hours[0] and s.end <= end  # the last 24 hours
    want = sum(_windows(s.api, s.model, start, end).values())
    assert want == 8 * N
    row = page.locator(f'tr[data-testid="model-row"][data-model="{s.model}"]')
    expect(row).to_have_count(1)
    assert int(row.locator('[data-testid="events-24h"]').get_attribute("data-value") or "-1") == want
    expect(row.locator("svg.sparkline")).to_be_visible()  # the 24 h sparkline
    last = row.locator('[data-testid="last-event"]').get_attribute("data-value") or ""
    assert s.hours[-1] <= _ms(last) <= now, last
    anomalies = s.api.get(f"/v1/models/{s.model}/analyzer-results",
                          params={"start": start, "end": end, "anomalies_only": True}).json()["total"]
    assert anomalies == 2  # in.x in both shifted hours
    assert int(row.locator('[data-testid="open-anomalies"]').get_attribute("data-value") or "-1") == anomalies
    assert row.locator('[data-testid="status"]').get_attribute("data-value") in ("warning", "alert")
    expect(row.get_by_role("link", name=s.model)).to_have_attribute("href", re.compile(rf"/models/{s.model}"))


def test_model_page_drift_and_numbers_equal_the_api_and_flag_the_drifted_column(
        admin: Tab, scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario
    span = (s.hours[0], s.end)
    path = f"/models/{s.model}?" + s.range_query(*span, f"reference:{s.reference}")
    page = check_page(admin, path, "model", capsys, charts=2, heading=s.model)
    admin.page.screenshot(path=str(ARTIFACTS / "console.png"))  # the README's picture: light, 1280x800
    page.evaluate("window.scrollTo(0, document.getElementById('columns-heading').offsetTop - 360)")
    admin.screenshot("model-columns", full_page=False)  # the flagged column in one 1280x800 view
    page.evaluate("window.scrollTo(0, 0)")

    expect(page.locator(ROWS)).to_have_count(len(COLUMNS))
    table = page.locator('[data-testid="column-table"]')
    assert (table.get_attribute("data-target-start-ms"), table.get_attribute("data-target-end-ms"),
            table.get_attribute("data-reference")) == (str(span[0]), str(span[1]), s.reference)
    want = _api_drift(s, span, reference=s.reference)
    assert set(want) == set(COLUMNS)
    shown = _shown(numbers(page, ROWS, "drift-score"))
    assert shown == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert want["in.x"] is not None and want["in.y"] is not None and want["in.x"] > 1.5 * want["in.y"]

    # The drifted column is flagged (the analyzer found it anomalous in the range); the stable one is not.
    flagged = _flagged(page)
    assert "in.x" in flagged and "in.y" not in flagged, flagged

    # Row counts, means, null ratios and distinct counts are the merged profile's.
    r = s.api.get(f"/v1/models/{s.model}/profiles", params={"start": span[0], "end": span[1], "rollup": True})
    assert r.status_code == 200, r.text
    (merged,) = r.json()["windows"]
    assert merged["row_count"] == 8 * N
    columns = merged["columns"]
    assert {c: int(float(v)) for c, v in numbers(page, ROWS, "row-count").items()} == {
        c: columns[c]["count"] for c in COLUMNS}
    for testid, key in (("mean", "mean"), ("null-ratio", "null_ratio"), ("distinct", "unique_est")):
        values = _shown(numbers(page, ROWS, testid))
        for c in COLUMNS:
            if columns[c][key] is None:
                assert values[c] is None, (testid, c)
            else:
                assert values[c] == pytest.approx(columns[c][key], rel=1e-9), (testid, c)


def test_model_page_previous_baseline_and_stable_range(admin: Tab, scenario: Scenario,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario
    # The two shifted hours against the two hours before them.
    target = (s.hours[6], s.end)
    page = check_page(admin, f"/models/{s.model}?" + s.range_query(*target, "previous"), "model-previous",
                      capsys, charts=2)
    table = page.locator('[data-testid="column-table"]')
    # "previous": the range of the same length just before the target
    assert (table.get_attribute("data-baseline-start-ms"), table.get_attribute("data-baseline-end-ms")) == (
        str(s.hours[4]), str(s.hours[6]))
    want = _api_drift(s, target, baseline_start=s.hours[4], baseline_end=s.hours[6])
    assert _shown(numbers(page, ROWS, "drift-score")) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert want["in.x"] == pytest.approx(1.0)  # no overlap at all
    assert "in.x" in _flagged(page)
    # Only stable hours in range: no anomaly, no flag.
    stable = (s.hours[0], s.hours[6])
    admin.goto(f"/models/{s.model}?" + s.range_query(*stable, f"reference:{s.reference}"))
    expect(admin.page.locator(ROWS)).to_have_count(len(COLUMNS))
    assert _flagged(admin.page) == set()
    admin.wait_charts(2)
    admin.assert_no_errors("the model page, stable range")


def test_column_pages_render_their_charts(admin: Tab, scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario
    query = s.range_query(s.hours[0], s.end, f"reference:{s.reference}")
    want = _api_drift(s, (s.hours[0], s.end), reference=s.reference)
    page = check_page(admin, f"/models/{s.model}/columns/in.x?{query}", "column-numeric", capsys, charts=3,
                      heading="in.x")
    summary = page.locator('[data-testid="column-summary"]')
    assert float(summary.locator('[data-testid="drift-score"]').get_attribute("data-value") or "nan") == \
        pytest.approx(want["in.x"], rel=1e-9)
    expect(summary.locator('[data-testid="anomaly-flag"]')).to_have_attribute("data-value", "2")
    assert int(page.locator('[data-testid="row-count"]').first.get_attribute("data-value") or "-1") == 8 * N
    page = check_page(admin, f"/models/{s.model}/columns/in.city?{query}", "column-string", capsys, charts=1,
                      heading="in.city")
    assert float(page.locator('[data-testid="column-summary"] [data-testid="drift-score"]')
                 .get_attribute("data-value") or "nan") == pytest.approx(want["in.city"], rel=1e-9, abs=1e-12)
    expect(page.locator('[data-testid="column-summary"] [data-testid="anomaly-flag"]')).to_have_count(0)


def test_anomalies_page_lists_the_analyzer_results_with_links(admin: Tab, scenario: Scenario,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario
    page = check_page(admin, f"/anomalies?model={s.model}", "anomalies", capsys, charts=1, heading="Anomalies")
    sources = set(page.locator('[data-testid="timeline-row"]').evaluate_all("rows => rows.map(r => r.dataset.source)"))
    assert {"analyzer", "validation"} <= sources, sources
    span = page.locator('[data-testid="timeline-range"]')
    start, end = span.get_attribute("data-start-ms"), span.get_attribute("data-end-ms")
    want = s.api.get(f"/v1/models/{s.model}/analyzer-results",
                     params={"start": start, "end": end, "anomalies_only": True}).json()["total"]
    assert want == 2
    assert page.locator('[data-testid="total-analyzer"]').get_attribute("data-value") == str(want)

    page = check_page(admin, f"/anomalies?model={s.model}&source=analyzer", "anomalies-analyzer", capsys, charts=1)
    rows = page.locator('[data-testid="timeline-row"]')
    expect(rows).to_have_count(want)
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.source)")) == {"analyzer"}
    # Each entry links to its column (only the drifted one is anomalous) and to its lineage trace.
    expect(page.locator(f'a[href*="/models/{s.model}/columns/in.x"]')).to_have_count(want)
    expect(page.locator(f'a[href*="/models/{s.model}/columns/in.y"]')).to_have_count(0)
    trace = page.get_by_role("link", name="Trace").first
    expect(trace).to_have_attribute("href", re.compile(rf"/models/{s.model}/lineage"))
    with page.expect_navigation():
        trace.click()
    expect(page.locator("h1")).to_be_visible()
    _axe_report(admin, "lineage")
    admin.screenshot("lineage")
    admin.assert_no_errors("the lineage page")


def test_assays_page_scores_equal_the_api(admin: Tab, scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario
    page = check_page(admin, f"/models/{s.model}/assays", "assays", capsys, charts=1)
    results = s.api.get(f"/v1/assays/{s.assay}/results").json()["results"]
    assert len(results) >= 4
    shown = sorted(float(v) for v in page.locator('[data-testid="assay-row"] [data-testid="assay-score"]')
                   .evaluate_all("cells => cells.map(c => c.dataset.value)"))
    assert shown == pytest.approx(sorted(r["score"] for r in results), rel=1e-9)


def test_config_page_shows_server_errors_next_to_the_field_and_saves(
        admin: Tab, scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    s = scenario
    page = check_page(admin, f"/models/{s.model}/config", "config", capsys)
    form = page.locator('form[data-testid="config-form-monitor"]')
    field = form.locator("textarea")
    expect(field).to_have_accessible_name(re.compile("Monitor document"))
    invalid = json.loads(json.dumps(s.document))
    invalid["analyzers"][0]["config"]["threshold"] = "very high"
    api_error = s.api.put(f"/v1/models/{s.model}/monitor-config", json=invalid)
    assert api_error.status_code == 422, api_error.text
    text = json.dumps(invalid, indent=2)
    field.fill(text)
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    form = page.locator('form[data-testid="config-form-monitor"]')
    alert = form.get_by_role("alert")
    expect(alert).to_be_visible()
    for error in api_error.json()["detail"]:  # the API's own errors, next to the field
        expect(alert).to_contain_text(error["path"].removeprefix("body."))
        expect(alert).to_contain_text(error["msg"])
    assert form.locator("textarea").input_value() == text  # the user's text is kept
    admin.take_errors()  # the 422 document load is logged by Chromium as a failed resource

    valid = json.loads(json.dumps(s.document))
    valid["monitors"][0]["severity"] = 3
    form.locator("textarea").fill(json.dumps(valid, indent=2))
    with page.expect_navigation():
        form.get_by_role("button", name="Save").click()
    expect(page.locator('form[data-testid="config-form-monitor"]').get_by_role("alert")).to_have_count(0)
    stored = s.api.get(f"/v1/models/{s.model}/monitor-config").json()
    assert stored["monitors"][0]["severity"] == 3 and stored["analyzers"] == s.document["analyzers"]
    admin.assert_no_errors("the config page after saving")


def test_drift_sort_button_works_with_enter(admin: Tab, scenario: Scenario) -> None:
    s = scenario
    page = admin.page
    admin.goto(f"/models/{s.model}?" + s.range_query(s.hours[0], s.end, f"reference:{s.reference}"))

    def order() -> list[float]:
        return [float(v) if v else -1.0 for v in page.locator(f'{ROWS} [data-testid="drift-score"]').evaluate_all(
            "cells => cells.map(c => c.dataset.value)")]

    before = order()
    assert before != sorted(before) and before != sorted(before, reverse=True), before  # by name, not drift
    button = page.locator("table").get_by_role("button", name=re.compile("drift", re.I))
    button.focus()
    page.keyboard.press("Enter")
    first = eventually(lambda: (o := order()) != before and o, timeout=5, interval=0.1)
    assert first in (sorted(before), sorted(before, reverse=True)), first
    page.keyboard.press("Enter")
    second = eventually(lambda: (o := order()) != first and o, timeout=5, interval=0.1)
    assert second == list(reversed(first))
    admin.assert_no_errors("the model page after sorting")


def test_theme_toggle_switches_and_persists(scenario: Scenario, browser: Browser) -> None:
    key = scenario.stack.create_key("admin")
    with tab(browser, scenario.stack.api_url, color_scheme="light") as t:
        login(t, key)
        html = t.page.locator("html")
        assert html.get_attribute("data-theme") in (None, "light")  # none stored: prefers-color-scheme
        expect(t.page.locator("#theme-toggle")).to_have_attribute("aria-pressed", "false")
        t.page.locator("#theme-toggle").click()
        expect(html).to_have_attribute("data-theme", "dark")
        s = scenario
        t.goto(f"/models/{s.model}?" + s.range_query(s.hours[0], s.end, f"reference:{s.reference}"))
        expect(html).to_have_attribute("data-theme", "dark")  # kept in localStorage
        expect(t.page.locator("#theme-toggle")).to_have_attribute("aria-pressed", "true")
        t.wait_charts(2)
        t.screenshot("model-dark")
        _axe_report(t, "model-dark")
        t.page.locator("#theme-toggle").focus()
        t.page.keyboard.press("Enter")
        expect(html).to_have_attribute("data-theme", "light")
        t.assert_no_errors("the theme toggle")
    with tab(browser, scenario.stack.api_url, color_scheme="dark") as t:
        t.goto("/login")  # nothing stored: the toggle starts from prefers-color-scheme (dark)
        expect(t.page.locator("#theme-toggle")).to_have_attribute("aria-pressed", "true")
        t.page.locator("#theme-toggle").click()
        expect(t.page.locator("html")).to_have_attribute("data-theme", "light")
        t.assert_no_errors("the theme toggle, dark default")


def test_login_refuses_a_wrong_key_and_sets_a_strict_cookie(scenario: Scenario, browser: Browser,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with tab(browser, scenario.stack.api_url) as t:
        page = check_page(t, "/login", "login", capsys, heading="Log in", logged_in=False)
        expect(page.get_by_label("API key")).to_have_attribute("type", "password")
        page.get_by_label("API key").fill("dl_not-a-key")
        with page.expect_navigation() as navigation:
            page.get_by_label("API key").press("Enter")
        assert navigation.value is not None and navigation.value.status == 401
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page.get_by_label("API key")).to_be_visible()
        assert not [c for c in t.page.context.cookies() if c["name"] == "driftline_session"]
        t.take_errors()  # Chromium logs the 401 document load
        login(t, scenario.stack.create_key("admin"))
        (cookie,) = [c for c in t.page.context.cookies() if c["name"] == "driftline_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        t.assert_no_errors("the models page after logging in")


def test_model_key_sees_only_its_model(scenario: Scenario, browser: Browser) -> None:
    s = scenario
    other = f"{s.model}-other"
    assert s.api.post("/v1/models", json={"name": other}).status_code == 201
    with tab(browser, s.stack.api_url) as t:
        login(t, s.stack.create_key(f"model:{other}"))
        expect(t.page.locator(f'tr[data-testid="model-row"][data-model="{other}"]')).to_have_count(1)
        expect(t.page.locator('tr[data-testid="model-row"]')).to_have_count(1)
        t.assert_no_errors("the models page of a model key")
        t.goto("/anomalies")
        expect(t.page.locator(f'[data-testid="timeline-row"][data-model="{s.model}"]')).to_have_count(0)
        expect(t.page.locator(f'#model option[value="{s.model}"]')).to_have_count(0)
        for path in (f"/models/{s.model}", f"/models/{s.model}/columns/in.x", f"/models/{s.model}/config",
                     f"/models/{s.model}/assays", f"/anomalies?model={s.model}"):
            t.goto(path, status=404)
            expect(t.page.locator(ROWS)).to_have_count(0)
            expect(t.page.locator('[data-testid="assay-row"]')).to_have_count(0)


def test_logout_ends_the_session(scenario: Scenario, browser: Browser) -> None:
    base = scenario.stack.api_url
    with tab(browser, base) as t:
        login(t, scenario.stack.create_key("admin"))
        (cookie,) = [c for c in t.page.context.cookies() if c["name"] == "driftline_session"]
        # A POST without the CSRF token is refused and does not end the session.
        forged = httpx.post(f"{base}/logout", cookies={"driftline_session": cookie["value"]}, follow_redirects=False)
        assert forged.status_code in (400, 403), forged.status_code
        assert httpx.get(f"{base}/", cookies={"driftline_session": cookie["value"]}).status_code == 200
        with t.page.expect_navigation(url=re.compile(r"/login")):
            t.page.locator('form[action="/logout"]').get_by_role("button").click()
        assert not [c for c in t.page.context.cookies() if c["name"] == "driftline_session"]
        t.goto("/")
        assert t.page.url.endswith("/login")
        expect(t.page.get_by_label("API key")).to_be_visible()
        t.assert_no_errors("logging out")
        # The session ended on the server: a copy of the cookie taken before logging out no longer works.
        copied = httpx.get(f"{base}/", cookies={"driftline_session": cookie["value"]}, follow_redirects=False)
        assert copied.status_code == 303 and copied.headers["location"] == "/login"


def test_sessions_are_shared_by_api_replicas_and_end_with_their_key(scenario: Scenario, browser: Browser,
                                                                     tmp_path: Path) -> None:
    """A second `driftline api` on the same store serves the browser's session; logging out there ends it on
    the first; revoking the key (admin API) ends the sessions opened with it."""
    s = scenario
    settings = s.stack.settings.model_copy(update={"api_port": free_port()})
    replica = spawn(["api", "--port", str(settings.api_port)], settings, tmp_path / "api-replica.log")
    other = f"http://127.0.0.1:{settings.api_port}"
    try:
        eventually(lambda: replica.poll() is None and http_get(f"{other}/health")[0] == 200, timeout=90, interval=0.5)
        key = s.stack.create_key("admin")
        with tab(browser, s.stack.api_url) as t:
            login(t, key)
            (cookie,) = [c for c in t.page.context.cookies() if c["name"] == "driftline_session"]
            jar = {"driftline_session": cookie["value"]}
            page = httpx.get(f"{other}/", cookies=jar, follow_redirects=False)
            assert page.status_code == 200 and f'data-model="{s.model}"' in page.text
            token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
            assert token is not None
            out = httpx.post(f"{other}/logout", cookies=jar, data={"csrf_token": token.group(1)},
                             headers={"Origin": other}, follow_redirects=False)
            assert out.status_code == 303, out.text
            t.goto("/")
            assert t.page.url.endswith("/login")  # ended on the first replica too
            login(t, key)
            assert s.api.delete(f"/v1/keys/{key_id_of(key)}").status_code == 204
            t.goto("/")
            assert t.page.url.endswith("/login")
            t.assert_no_errors("the sessions across replicas")
    finally:
        stop(replica)


def test_pages_need_a_session_and_send_security_headers(scenario: Scenario) -> None:
    base = scenario.stack.api_url
    for path in ("/", f"/models/{scenario.model}", "/anomalies"):
        r = httpx.get(base + path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), (path, r.status_code)
    r = httpx.get(f"{base}/login")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                                    "img-src 'self' data:; frame-ancestors 'none'")
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "same-origin"
    for asset in ("console.css", "console.js", "plotly.min.js"):
        r = httpx.get(f"{base}/console/static/{asset}")
        assert r.status_code == 200, asset
        assert "max-age" in r.headers.get("cache-control", ""), asset


def test_firefox_walks_every_page(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    """Every page again in headless Firefox (Debian's firefox-esr over WebDriver BiDi): logged in with the
    keyboard, each page renders its charts, the drift scores and row counts shown equal the API's, the
    drifted column is flagged, the console stays clean, axe-core finds nothing serious; firefox-*.png."""
    s = scenario
    span = (s.hours[0], s.end)
    query = s.range_query(*span, f"reference:{s.reference}")
    model_row = f'tr[data-testid="model-row"][data-model="{s.model}"]'
    summary = '[data-testid="column-summary"] [data-testid="drift-score"]'
    visits = [
        Visit("models", "/", read={"events": (f'{model_row} [data-testid="events-24h"]', "data-value"),
                                   "start": ('[data-testid="models-table"]', "data-start-ms"),
                                   "end": ('[data-testid="models-table"]', "data-end-ms")}),
        Visit("model", f"/models/{s.model}?{query}", charts=2, read={
            "columns": (ROWS, "data-column"), "drift": (f'{ROWS} [data-testid="drift-score"]', "data-value"),
            "rows": (f'{ROWS} [data-testid="row-count"]', "data-value"),
            "flagged": (f'{ROWS}:has([data-testid="anomaly-flag"])', "data-column")}),
        Visit("column-numeric", f"/models/{s.model}/columns/in.x?{query}", charts=3,
              read={"drift": (summary, "data-value")}),
        Visit("column-string", f"/models/{s.model}/columns/in.city?{query}", charts=1,
              read={"drift": (summary, "data-value")}),
        Visit("anomalies", f"/anomalies?model={s.model}&source=analyzer", charts=1,
              read={"total": ('[data-testid="total-analyzer"]', "data-value")}),
        Visit("lineage", link=f'[data-testid="timeline-row"] a[href*="/models/{s.model}/lineage"]'),
        Visit("assays", f"/models/{s.model}/assays", charts=1,
              read={"scores": ('[data-testid="assay-row"] [data-testid="assay-score"]', "data-value")}),
        Visit("config", f"/models/{s.model}/config",
              read={"monitor": ('form[data-testid="config-form-monitor"] textarea', "name")}),
    ]
    report = walk(s.stack.api_url, s.stack.create_key("admin"), visits)
    assert report["version"].startswith("firefox/"), report["version"]
    assert report["login"]["status"] == 200 and report["login"]["url"].endswith("/"), report["login"]
    assert not report["login"]["errors"], report["login"]["errors"]
    pages = {p["name"]: p for p in report["pages"]}
    assert list(pages) == [v.name for v in visits]
    for visit in visits:
        p = pages[visit.name]
        assert p["status"] == 200, (visit.name, p["status"], p["url"])
        assert not p["errors"], f"Firefox console errors on {visit.name}: {p['errors']}"
        assert len(p["charts"]) >= visit.charts and all(c["svgs"] >= 1 for c in p["charts"]), (visit.name, p["charts"])
        severe = [v for v in p["violations"] if v["impact"] in SEVERE]
        assert not severe, f"{visit.name} in Firefox: serious/critical accessibility violations: {severe}"
        assert (ARTIFACTS / f"firefox-{visit.name}.png").stat().st_size > 0
    models = pages["models"]["values"]
    (start,), (end,) = models["start"], models["end"]
    assert [int(v) for v in models["events"]] == [sum(_windows(s.api, s.model, int(start), int(end)).values())]
    model = pages["model"]["values"]
    want = _api_drift(s, span, reference=s.reference)
    shown = dict(zip(model["columns"], (float(v) if v else None for v in model["drift"]), strict=True))
    assert shown == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert [int(float(v)) for v in model["rows"]] == [8 * N] * len(COLUMNS)
    assert "in.x" in model["flagged"] and "in.y" not in model["flagged"], model["flagged"]
    assert [float(v) for v in pages["column-numeric"]["values"]["drift"]] == pytest.approx([want["in.x"]], rel=1e-9)
    assert [float(v) for v in pages["column-string"]["values"]["drift"]] == pytest.approx([want["in.city"]],
                                                                                          rel=1e-9, abs=1e-12)
    assert pages["anomalies"]["values"]["total"] == ["2"]
    assert "/lineage" in pages["lineage"]["url"]
    results = s.api.get(f"/v1/assays/{s.assay}/results").json()["results"]
    assert sorted(float(v) for v in pages["assays"]["values"]["scores"]) == pytest.approx(
        sorted(r["score"] for r in results), rel=1e-9)
    assert pages["config"]["values"]["monitor"] == ["text"]
    with capsys.disabled():
        print(f"\nconsole in {report['version']}: " + "; ".join(
            f"{p['name']} {len(p['charts'])} charts, axe {len(p['violations'])}" for p in report["pages"]))
