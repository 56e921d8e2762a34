"""`make run` as a newcomer meets it: `driftline run --demo` on a fresh data dir, with nothing
configured by hand, shows the injected drift as analyzer results and alerts within five minutes.

The command is started exactly as `make run` does (its own local broker, the embedded store under
the data dir, stdout to a file); the only knob turned is the documented `DRIFTLINE_ANALYSIS_INTERVAL`
(5 s instead of a minute). The demo's timing is the users' default: drift starts 1.5 minutes after
the producer starts. Everything is observed through public interfaces: the HTTP API, the alerts
topic read with a plain aiokafka consumer, the run log.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord

from stream.cli.demo import (
    DEMO_ASSAY,
    DEMO_DRIFT_ANALYZER,
    DEMO_MODEL,
    DEMO_MONITOR,
    DEMO_RULE,
)
from stream.cli.services import free_port
from stream.settings import Settings
from tests.integration.helpers import eventually, read_topic, stop

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FIVE_MINUTES = 300.0
SOURCES = {"monitor", "rule", "assay"}


@dataclass
class DemoRun:
    settings: Settings
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes]
    started: float

    def remaining(self) -> float:
        """Seconds left of the five minutes since `driftline run` started."""
        return max(1.0, FIVE_MINUTES - (time.monotonic() - self.started))

    def admin_key(self) -> str | None:
        match = re.search(r"admin key +([A-Za-z0-9]{10}\.\S+)", self.log.read_text(errors="replace"))
        return match.group(1) if match else None


@pytest.fixture
def demo_run(tmp_path: Path) -> Iterator[DemoRun]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DRIFTLINE_") and k not in ("FORCE_COLOR", "PY_COLORS", "CLICOLOR_FORCE")}
    env.update({
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIFTLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nothing there: `run` starts its own broker
        "DRIFTLINE_WORKER_WEB_PORT": str(free_port()),
        "DRIFTLINE_ANALYSIS_INTERVAL": "5",
    })
    port, log = free_port(), tmp_path / "run.log"
    with open(log, "wb") as out:  # not a terminal, like `make run > run.log`
        proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "run", "--demo", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
    run = DemoRun(Settings.from_env(env), env, port, log, proc, time.monotonic())
    try:
        yield run
    finally:
        stop(proc, timeout=30)
        subprocess.run([sys.executable, "-m", "stream.cli", "services", "down"], env=env, cwd=REPO,
                       capture_output=True, timeout=60, check=False)


def _alerts(records: list[ConsumerRecord]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def _all_sources(records: list[ConsumerRecord]) -> bool:
    return {a["source"] for a in _alerts(records)} >= SOURCES


def test_make_run_shows_the_demo_drift_as_analyzer_results_and_alerts_within_five_minutes(
        demo_run: DemoRun) -> None:
    key = eventually(demo_run.admin_key, timeout=120)
    api = httpx.Client(base_url=f"http://127.0.0.1:{demo_run.port}", timeout=30,
                       headers={"Authorization": f"Bearer {key}"})
    results_url = f"/v1/models/{DEMO_MODEL}/analyzer-results"

    def sqft_flagged() -> list[dict[str, Any]]:
        try:
            r = api.get(results_url, params={"analyzer": DEMO_DRIFT_ANALYZER, "column": "in.sqft",
                                             "anomalies_only": "true"})
        except httpx.HTTPError:
            return []
        return list(r.json()["items"]) if r.status_code == 200 else []

    # 1. the drifted column comes back as an anomalous analyzer result
    flagged = eventually(sqft_flagged, timeout=demo_run.remaining(), interval=3)
    assert all(r["anomaly"] and r["threshold"] == 0.5 and r["value"] > 0.5 for r in flagged), flagged
    # ... and in the same (drifted) batches the stable column of the same analyzer is not flagged
    drifted = {r["dataset_timestamp"] for r in flagged}
    year = api.get(results_url, params={"analyzer": DEMO_DRIFT_ANALYZER, "column": "in.year_built"}).json()["items"]
    same_batches = [r for r in year if r["dataset_timestamp"] in drifted]
    assert same_batches and not any(r["anomaly"] for r in same_batches), same_batches
    assert all(r["value"] < 0.5 for r in same_batches)

    # 2. monitor, rule and assay alerts on the alerts topic (a plain consumer, from the start)
    # (the five minutes are the waits' own deadline: each waits at most what remains of them, and raises after)
    records = asyncio.run(read_topic(demo_run.settings, "alerts", _all_sources, timeout=demo_run.remaining(),
                                     settle=0))
    alerts = _alerts(records)
    assert all(dict(r.headers)["schema"] == b"driftline.alert/v1" for r in records)
    assert {a["model"] for a in alerts} == {DEMO_MODEL}
    monitor = [a for a in alerts if a["source"] == "monitor"]
    assert {(a["monitor_id"], a["mode"]) for a in monitor} == {(DEMO_MONITOR, "DIGEST")}
    flagged_columns = {(x["analyzer_id"], x["column"]) for a in monitor for x in a["anomalies"]}
    assert (DEMO_DRIFT_ANALYZER, "in.sqft") in flagged_columns
    rule = [a for a in alerts if a["source"] == "rule"]
    assert rule and all(a["rule_id"] == DEMO_RULE and a["mode"] == "RULE" and a["rule"]["value"] > 2200
                        for a in rule), rule
    assay = [a for a in alerts if a["source"] == "assay"]
    assert assay and all(a["rule_id"] == DEMO_ASSAY and a["assay"]["status"] == "Alert"
                         and a["assay"]["alert_threshold"] == 0.25 and a["assay"]["score"] > 0.25 for a in assay), assay

    # 3. the API lists the same alerts
    listed = api.get(f"/v1/models/{DEMO_MODEL}/alerts").json()["items"]
    assert {a["alert_id"] for a in alerts} <= {a["alert_id"] for a in listed}

    # 4. stdout is a file: no terminal escape codes in the log
    assert b"\x1b[" not in demo_run.log.read_bytes()
