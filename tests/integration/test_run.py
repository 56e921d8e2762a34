"""`driftline run`, the local all-in-one of the README's first command: worker + API + demo producer
in one supervised process, on the embedded store."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stream.cli import supervise
from stream.demo import DEMO_MODEL
from stream.services import free_port, port_open
from stream.settings import STALLED_EXIT_CODE, Settings
from tests.integration.helpers import eventually, spawn, stop


def _admin_key(log: Path) -> str | None:
    match = re.search(r"admin key +(dl_\S+)", log.read_text(errors="replace")) if log.exists() else None
    return match.group(1) if match else None


def _profiled_events(port: int, key: str) -> int:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models/{DEMO_MODEL}/profiles",
                      headers={"Authorization": f"Bearer {key}"}, timeout=5)
    except httpx.HTTPError:
        return 0
    return sum(w["row_count"] for w in r.json()["windows"]) if r.status_code == 200 else 0


@pytest.mark.integration
def test_driftline_run_profiles_the_demo_events_and_stops_with_its_child(settings: Settings,
                                                                           tmp_path: Path) -> None:
    local = settings.model_copy(update={"clickhouse_url": f"chdb://{tmp_path / 'store'}"})
    port, log = free_port(), tmp_path / "run.log"
    run = spawn(["run", "--demo", "--port", str(port)], local, log)
    try:
        key = eventually(lambda: _admin_key(log), timeout=90)
        # demo events → broker → worker → embedded store → API (open windows are flushed every 5 s)
        eventually(lambda: _profiled_events(port, key), timeout=120, interval=2)
    finally:
        stop(run)
    assert run.returncode is not None
    assert not port_open("127.0.0.1", port), "the supervised child outlived `driftline run`"


def test_supervise_restarts_a_child_that_asks_for_it_and_returns_other_codes(tmp_path: Path) -> None:
    """A stalled worker exits with STALLED_EXIT_CODE: the local all-in-one comes back by itself."""
    starts = tmp_path / "starts"
    script = (f"import pathlib, sys; p = pathlib.Path({str(starts)!r}); n = len(p.read_text()) if p.exists() else 0; "
              f"p.write_text('x' * (n + 1)); sys.exit({STALLED_EXIT_CODE} if n < 2 else 3)")
    assert supervise([sys.executable, "-c", script]) == 3
    assert starts.read_text() == "xxx"  # stalled twice, then a real failure is passed on
    assert supervise([sys.executable, "-c", "raise SystemExit(0)"]) == 0


def test_supervise_passes_sigterm_to_the_child(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = (f"import pathlib, signal, sys, time; "
              f"signal.signal(signal.SIGTERM, lambda *a: sys.exit(7)); pathlib.Path({str(ready)!r}).touch(); "
              f"time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c",
                               f"import sys; from stream.cli import supervise; "
                               f"sys.exit(supervise([sys.executable, '-c', {script!r}]))"],
                              cwd=Path(__file__).resolve().parents[2])
    eventually(ready.exists, timeout=30, interval=0.1)
    parent.terminate()
    assert parent.wait(timeout=30) == 7  # the child got SIGTERM, and its code came back
