"""Headless Firefox for the console's browser tests: Debian's `firefox-esr` driven by puppeteer-core.

Playwright's Firefox is a patched build that cannot be downloaded here, and Selenium needs geckodriver
(not packaged by Debian). puppeteer-core (npm, no browser download) speaks WebDriver BiDi, which
firefox-esr 128+ implements natively, so the stock Debian browser is driven as is. The walk itself is
`console_firefox.cjs` (Node); this module runs it with a plan and returns its JSON report, for the
assertions in tests/e2e/test_console.py. `make test` installs firefox-esr (apt) and puppeteer-core (npm).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.e2e.console_browser import ARTIFACTS, AXE_JS, REPO

FIREFOX = Path(os.environ.get("DRIFTLINE_FIREFOX", "/usr/bin/firefox-esr"))
NODE_MODULES = REPO / ".venv/node/node_modules"
SCRIPT = Path(__file__).with_name("console_firefox.cjs")
TIMEOUT_MS = 20_000


@dataclass(frozen=True)
class Visit:
    """One page of the walk: `path` opened, or the href of the `link` selector on the previous page followed;
    `charts` Plotly charts awaited; `read` = {name: (selector, attribute)} read from every matching element."""

    name: str
    path: str = ""
    link: str = ""
    charts: int = 0
    read: dict[str, tuple[str, str]] = field(default_factory=dict)


def walk(base_url: str, key: str, visits: list[Visit], timeout: float = 240) -> dict[str, Any]:
    """Log in with `key` in headless Firefox, open every visit in order; the script's report."""
    assert FIREFOX.exists(), f"{FIREFOX} is missing: `apt-get install -y firefox-esr` (make test does it)"
    assert (NODE_MODULES / "puppeteer-core").is_dir(), \
        "puppeteer-core is missing: `npm install --prefix .venv/node puppeteer-core` (make test does it)"
    assert AXE_JS.exists(), f"{AXE_JS} is missing (make test installs axe-core)"
    plan = {"base": base_url, "key": key, "artifacts": str(ARTIFACTS), "axe": str(AXE_JS), "timeout": TIMEOUT_MS,
            "pages": [asdict(v) for v in visits]}
    done = subprocess.run(["node", str(SCRIPT)], input=orjson.dumps(plan), capture_output=True, timeout=timeout,
                          env={**os.environ, "NODE_PATH": str(NODE_MODULES), "DRIFTLINE_FIREFOX": str(FIREFOX)})
    assert done.returncode == 0, f"the Firefox walk failed:\n{done.stderr.decode(errors='replace')[-4000:]}"
    report: dict[str, Any] = orjson.loads(done.stdout)
    return report
