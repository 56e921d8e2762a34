"""Headless Chromium for the console's browser tests: Debian's `chromium` driven by Playwright.

Playwright's pip package brings its own driver; no browser is downloaded (`playwright install` is
never run): the tests launch `/usr/bin/chromium`, which `make test` installs with apt when missing.
axe-core is the npm package's `axe.min.js`, which `make test` installs under `.venv/node`.
Both are required: a missing one fails the tests with the command that installs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Response

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("DRIFTLINE_CHROMIUM", "/usr/bin/chromium"))
AXE_JS = Path(os.environ.get("DRIFTLINE_AXE_JS", REPO / ".venv/node/node_modules/axe-core/axe.min.js"))
ARTIFACTS = REPO / "tests/e2e/artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
SEVERE = ("serious", "critical")


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless; every launch gets a fresh temporary user-data dir from Playwright."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)"
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


@dataclass
class Tab:
    """A page of a browser context, with the console errors and uncaught exceptions it produced."""

    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text} ({message.location.get('url', '')})")

    def goto(self, path: str, status: int = 200) -> Response:
        """Open `path`; asserts the final status and records the server's response time (time to first byte)."""
        response = self.page.goto(self.base_url + path, wait_until="load")
        assert response is not None, path
        assert response.status == status, f"{path}: {response.status} {response.text()[:2000]}"
        self.record(path, response)
        return response

    def record(self, path: str, response: Response) -> None:
        timing = response.request.timing
        self.timings.append((path, max(0.0, timing["responseStart"] - timing["requestStart"])))

    def take_errors(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors

    def assert_no_errors(self, where: str) -> None:
        errors = self.take_errors()
        assert not errors, f"browser console errors on {where}:\n" + "\n".join(errors)

    def wait_charts(self, minimum: int = 1) -> list[str]:
        """Every `.chart` of the page rendered by Plotly (`data-rendered="true"` and an SVG inside); their testids."""
        page = self.page
        charts = page.locator("div.chart")
        page.wait_for_function(f"document.querySelectorAll('div.chart').length >= {minimum}", timeout=TIMEOUT_MS)
        page.wait_for_function(
            "[...document.querySelectorAll('div.chart')].every(c => c.dataset.rendered === 'true' "
            "&& c.querySelector('.main-svg, .plot-container, .js-plotly-plot'))", timeout=TIMEOUT_MS)
        names = []
        for i in range(charts.count()):
            chart = charts.nth(i)
            assert chart.locator(".main-svg").count() >= 1, chart.get_attribute("data-testid")
            names.append(chart.get_attribute("data-testid") or "")
        return names

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's violations of the page (all impacts)."""
        assert AXE_JS.exists(), f"{AXE_JS} is missing: `npm install --prefix .venv/node axe-core` (make test does it)"
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            # Injected through the DevTools protocol: the page's CSP (script-src 'self') does not apply to it.
            self.page.evaluate(AXE_JS.read_text())
        violations: list[dict[str, Any]] = self.page.evaluate(
            "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(v => ({id: v.id, "
            "impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})))")
        return violations

    def screenshot(self, name: str, full_page: bool = True, path: Path | None = None) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = path or ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=full_page)
        return out


@contextmanager
def tab(browser: Browser, base_url: str, color_scheme: str = "light",
        viewport: tuple[int, int] = (1280, 800)) -> Iterator[Tab]:
    """A fresh browser context (no cookies, no storage) and one page in it."""
    context: BrowserContext = browser.new_context(
        base_url=base_url, color_scheme=color_scheme,  # type: ignore[arg-type]
        viewport={"width": viewport[0], "height": viewport[1]})
    try:
        yield Tab(context.new_page(), base_url)
    finally:
        context.close()


def login(t: Tab, key: str) -> None:
    """Log in through the form with the keyboard only: Tab to the API key field, type, Enter."""
    page = t.page
    t.goto("/login")
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "api-key":
            break
    else:
        raise AssertionError("the API key field is not reachable with Tab")
    page.keyboard.type(key)
    with page.expect_navigation(url=re.compile(r"/$")) as navigation:
        page.keyboard.press("Enter")
    response = navigation.value
    assert response is not None and response.status == 200, response and response.status
    t.record("POST /login → /", response)


def numbers(page: Page, scope: str, testid: str) -> dict[str, str]:
    """`data-value` of the `[data-testid=testid]` cell of each row `scope` (a selector whose rows carry
    `data-column` or `data-model`), keyed by that attribute."""
    out: dict[str, str] = page.evaluate(
        """([scope, testid]) => Object.fromEntries([...document.querySelectorAll(scope)].map(row => [
            row.dataset.column ?? row.dataset.model ?? row.dataset.assay ?? '',
            row.querySelector(`[data-testid="${testid}"]`)?.dataset.value]))""", [scope, testid])
    return out
