"""`driftline run`, the local all-in-one of the README's first command: worker + API + demo producer
in one supervised process, on the embedded store."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stream.cli.demo import DEMO_MODEL
from stream.cli.main import supervise
from stream.cli.services import RUN_FILE, RunInfo, free_port, port_open, read_run_info, write_run_info
from stream.settings import STALLED_EXIT_CODE, Settings
from tests.integration.helpers import eventually, spawn, stop


def _admin_key(log: Path) -> str | None:
    match = re.search(r"admin key +([A-Za-z0-9]{10}\.\S+)", log.read_text(errors="replace")) if log.exists() else None
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
                               f"import sys; from stream.cli.main import supervise; "
                               f"sys.exit(supervise([sys.executable, '-c', {script!r}]))"],
                              cwd=Path(__file__).resolve().parents[2])
    eventually(ready.exists, timeout=30, interval=0.1)
    parent.terminate()
    assert parent.wait(timeout=30) == 7  # the child got SIGTERM, and its code came back


ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`driftline <args>` as a user runs it; its output captured."""
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)


def _verified(url: str, *tokens: str) -> list[bool]:
    """Which tokens the store `url` accepts, asked in a process of its own (chDB: one per data dir)."""
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from stream.store.keys import verify_key; "
         "from stream.store.client import shared_store; s = shared_store(sys.argv[1]); "
         "print(' '.join(str(verify_key(s, t) is not None) for t in sys.argv[2:]))",
         url, *tokens], capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    return [word == "True" for word in out.stdout.split()]


def _status(port: int, key: str, path: str = "/v1/models") -> int:
    r = httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return r.status_code


@pytest.mark.integration
def test_keys_create_goes_through_the_api_while_driftline_run_holds_the_store(settings: Settings,
                                                                              tmp_path: Path) -> None:
    local = settings.model_copy(update={"clickhouse_url": f"chdb://{tmp_path / 'store'}"})
    env = {**os.environ, **local.env()}
    port, log, run_file = free_port(), tmp_path / "run.log", local.data_dir / RUN_FILE
    run = spawn(["run", "--port", str(port)], local, log)
    try:
        eventually(lambda: _admin_key(log), timeout=90)
        assert stat.S_IMODE(run_file.stat().st_mode) == 0o600  # it holds an admin key
        info = read_run_info(local.data_dir)
        assert info is not None and info.api_url == f"http://127.0.0.1:{port}"
        run_key = info.key
        admin = _cli(["keys", "create"], env)
        assert (admin.returncode, admin.stderr) == (0, ""), admin.stderr
        model = _cli(["keys", "create", "--scope", "model:house-price"], env)
        assert (model.returncode, model.stderr) == (0, ""), model.stderr
        admin_key, model_key = admin.stdout.strip(), model.stdout.strip()
        assert re.fullmatch(r"[A-Za-z0-9]{10}\.[A-Za-z0-9_-]{43}", admin_key)
        assert _status(port, admin_key) == 200
        refused = httpx.post(f"http://127.0.0.1:{port}/v1/keys", json={"scope": "admin"}, timeout=10,
                             headers={"Authorization": f"Bearer {model_key}"})
        assert refused.status_code == 403  # only admin keys create keys
        assert _status(port, model_key, "/v1/models/house-price") == 404  # in scope; the model does not exist
        bad = _cli(["keys", "create", "--scope", "root"], env)
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr.splitlines() == ["error: invalid scope 'root': use 'admin' or 'model:<model-name>'"]
    finally:
        stop(run)
    assert not run_file.exists()
    direct = _cli(["keys", "create"], env)  # nobody holds the store now: opened directly
    assert (direct.returncode, direct.stderr) == (0, ""), direct.stderr
    # run.json's own key was revoked when `driftline run` exited; the others stay valid
    assert _verified(local.clickhouse_url, admin_key, model_key, direct.stdout.strip(), run_key) == [
        True, True, True, False]


def test_keys_create_says_in_one_line_that_another_process_holds_the_store(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {**os.environ, "DRIFTLINE_DATA_DIR": str(data_dir)}
    env.pop("DRIFTLINE_CLICKHOUSE_URL", None)
    url = f"chdb://{data_dir / 'store'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from stream.store.client import shared_store; "
         "shared_store(sys.argv[1]); print('ready', flush=True); time.sleep(300)", url],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        out = _cli(["keys", "create"], env)
        assert (out.returncode, out.stdout) == (1, "")
        assert out.stderr.splitlines() == [
            f"error: the embedded store at {data_dir / 'store'} is in use by another process (driftline run?); "
            f"stop it (pid {holder.pid}), or create the key while `driftline run` serves its API (keys are then "
            "created through it)"]
        # a run.json of a live process whose API does not answer: still one line, naming the API
        api = f"http://127.0.0.1:{free_port()}"
        write_run_info(data_dir, RunInfo(holder.pid, api, url, "dl_000000000000_" + "x" * 43))
        out = _cli(["keys", "create", "--scope", "model:house-price"], env)
        assert (out.returncode, out.stdout) == (1, "")
        [line] = out.stderr.splitlines()
        assert line.startswith(f"error: the embedded store at {data_dir / 'store'} is in use by another process "
                               f"(driftline run?); its API at {api} did not create the key (ConnectError: "), line
    finally:
        holder.kill()
        holder.wait()


def test_run_says_how_to_pick_another_port_when_its_port_is_taken(tmp_path: Path) -> None:
    env = {**os.environ, "DRIFTLINE_DATA_DIR": str(tmp_path / "data")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, extra in ((["run", "--demo", "--port", str(port)], {}),
                            (["run", "--demo"], {"DRIFTLINE_API_PORT": str(port)})):
            out = _cli(args, {**env, **extra}, timeout=60)
            assert out.returncode == 1, out
            [line] = out.stderr.splitlines()
            match = re.fullmatch(rf"error: port {port} on 127\.0\.0\.1 is already taken; use make run PORT=(\d+) "
                                 r"or driftline run --port (\d+)", line)
            assert match and match.group(1) == match.group(2) and int(match.group(1)) > port, line
            assert not port_open("127.0.0.1", int(match.group(1)))
    assert not (tmp_path / "data" / "broker").exists()  # it stopped before starting anything


def test_make_run_passes_port_to_driftline_run() -> None:
    make = ["make", "--no-print-directory", "-n", "run"]  # no directory lines under a parent make
    out = subprocess.run([*make, "PORT=8123"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.splitlines()[-1] == ".venv/bin/driftline run --demo --port 8123"
    out = subprocess.run(make, capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.splitlines()[-1] == ".venv/bin/driftline run --demo"
