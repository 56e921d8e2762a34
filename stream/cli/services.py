"""Local development services: a Kafka-protocol broker (noida-db) and a ClickHouse server (chdb-core).

Both run as background processes that own a directory under the data dir, so `up` is idempotent
(`up` twice finds the running one) and `down` stops exactly what `up` started. They exist for
development and tests; production runs Apache Kafka and ClickHouse (see docker-compose.yaml).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_CHDB_PREFIX = "26."


class ServiceError(RuntimeError):
    """A local service could not be started or stopped; the message says why."""


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def next_free_port(host: str, port: int, tries: int = 100) -> int:
    """The first port after `port` that nobody listens on (`port + 1` if none of `tries` is free)."""
    return next((p for p in range(port + 1, min(port + 1 + tries, 65536)) if not port_open(host, p)), port + 1)


def embedded_store_holder(path: Path) -> int | None:
    """Who holds the embedded ClickHouse (chDB) data directory `path`: the engine keeps an exclusive
    flock on its `status` file (which also names its PID). Returns that PID (0 when it cannot be
    read), or None when no process holds the directory. A process that opened the store itself
    counts as a holder too."""
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 4096).decode(errors="replace")
            pid = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("PID:")), "")
            return int(pid) if pid.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


RUN_FILE = "run.json"


@dataclass(frozen=True)
class RunInfo:
    """What a running `driftline run` tells other commands of its data dir (`<data dir>/run.json`,
    mode 0600, removed when it exits): where its API listens, which store it holds, and an admin key
    it created for them (`driftline keys create` creates keys through the API while the embedded
    store is held)."""

    pid: int
    api_url: str
    clickhouse_url: str
    key: str

    def alive(self) -> bool:
        return self.pid > 0 and _pid_alive(self.pid)


def write_run_info(data_dir: Path, info: RunInfo) -> Path:
    """Write `run.json` readable by its owner only (written beside, then renamed into place)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path, tmp = data_dir / RUN_FILE, data_dir / f".{RUN_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"pid": info.pid, "api_url": info.api_url, "clickhouse_url": info.clickhouse_url,
                   "key": info.key}, out)
    os.replace(tmp, path)
    return path


def read_run_info(data_dir: Path) -> RunInfo | None:
    """The `run.json` of `data_dir`; None when there is none or it is unreadable."""
    try:
        body = json.loads((data_dir / RUN_FILE).read_text())
        return RunInfo(int(body["pid"]), str(body["api_url"]), str(body["clickhouse_url"]), str(body["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_run_info(data_dir: Path, pid: int | None = None) -> None:
    """Remove `run.json` (only when it was written by `pid`, if given)."""
    info = read_run_info(data_dir)
    if pid is None or info is None or info.pid == pid:
        (data_dir / RUN_FILE).unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise ServiceError(f"{what} did not become ready within {timeout:.0f}s")


@dataclass
class LocalBroker:
    """noida-db speaking the Kafka protocol on host:port, data in `data_dir`."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "driftline-broker.pid"

    def _binary(self) -> str:
        beside = Path(sys.executable).with_name("noida-db")
        found = str(beside) if beside.exists() else shutil.which("noida-db")
        if not found:
            raise ServiceError("noida-db is not installed in this environment (pip install noida-db)")
        return found

    def running(self) -> bool:
        """True when the broker we started is alive and accepting connections."""
        if not self._pidfile.exists():
            return False
        try:
            pid = int(self._pidfile.read_text().split()[0])
        except ValueError:
            return False
        return pid > 0 and _pid_alive(pid) and port_open(self.host, self.port)

    def up(self, timeout: float = 20.0) -> str:
        """Start the broker unless ours is already running; refuse if the port belongs to someone else."""
        if self.running():
            return self.bootstrap
        if port_open(self.host, self.port):
            raise ServiceError(
                f"port {self.port} on {self.host} is already taken by another program; "
                "stop it or choose another port (--kafka-port)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [self._binary(), "up", "--only", "kafka", "--host", self.host,
             "--kafka-port", str(self.port), "--data-dir", str(self.data_dir)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if out.returncode != 0:
            raise ServiceError(f"noida-db failed to start: {out.stderr.strip() or out.stdout.strip()}")
        _wait(lambda: port_open(self.host, self.port), timeout, f"broker on {self.bootstrap}")
        pid = _read_noida_pid(self.data_dir)
        self._pidfile.write_text(f"{pid} {self.port}\n")
        return self.bootstrap

    def down(self, timeout: float = 20.0) -> bool:
        """Stop the broker; True if one was running."""
        was = self.running()
        if self.data_dir.exists():
            subprocess.run([self._binary(), "down", "--data-dir", str(self.data_dir)],
                           capture_output=True, text=True, timeout=timeout, check=False)
        if was:
            _wait(lambda: not port_open(self.host, self.port), timeout, "broker shutdown")
        self._pidfile.unlink(missing_ok=True)
        return was


def _read_noida_pid(data_dir: Path) -> int:
    """noida-db writes its pid file in the data dir; fall back to 0 when its name changes."""
    for name in ("noida.pid", "noida-db.pid", "server.pid", "pid"):
        p = data_dir / name
        if p.exists():
            with contextlib.suppress(ValueError):
                return int(p.read_text().strip().split()[0])
    out = subprocess.run(["pgrep", "-f", f"noida-db.*{data_dir}"], capture_output=True, text=True, check=False)
    pids = [int(x) for x in out.stdout.split() if x.isdigit()]
    return pids[0] if pids else 0


def check_chdb_version() -> str:
    """The server mode (`stream.store.client.serve_embedded`) relies on a private chdb API; only
    versions we tested may use it."""
    try:
        import chdb
    except ImportError as exc:  # pragma: no cover - chdb-core is a hard dependency
        raise ServiceError("chdb-core is not installed") from exc
    version = str(getattr(chdb, "__version__", "") or getattr(chdb, "chdb_version", ""))
    if not version.startswith(SUPPORTED_CHDB_PREFIX):
        raise ServiceError(
            f"chdb-core {version or '?'} is not supported for server mode (tested: {SUPPORTED_CHDB_PREFIX}x); "
            "install the pinned version from constraints.txt"
        )
    return version


@dataclass
class LocalClickHouse:
    """A real ClickHouse 26.x server (HTTP + native) run from chdb-core in a child process."""

    data_dir: Path
    host: str = "127.0.0.1"
    http_port: int = 8123
    tcp_port: int = 9000

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}/driftline"

    @property
    def _pidfile(self) -> Path:
        return self.data_dir / "driftline-clickhouse.pid"

    @classmethod
    def recorded(cls, data_dir: Path, host: str = "127.0.0.1") -> LocalClickHouse:
        """The server `up` started in `data_dir`, with the ports it recorded (defaults if none)."""
        server = cls(data_dir, host=host)
        fields = server._pidfile.read_text().split() if server._pidfile.exists() else []
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            server.http_port, server.tcp_port = int(fields[1]), int(fields[2])
        return server

    def _pid(self) -> int | None:
        if not self._pidfile.exists():
            return None
        try:
            return int(self._pidfile.read_text().split()[0])
        except ValueError:
            return None

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/ping", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def running(self) -> bool:
        pid = self._pid()
        return pid is not None and _pid_alive(pid) and self.ping()

    def up(self, timeout: float = 60.0) -> str:
        """Start the server unless ours is running; refuse if a port belongs to someone else."""
        if self.running():
            return self.url
        for port in (self.http_port, self.tcp_port):
            if port_open(self.host, port):
                raise ServiceError(
                    f"port {port} on {self.host} is already taken by another program; "
                    "stop it or choose other ports (--http-port/--tcp-port)"
                )
        check_chdb_version()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "config.xml").write_text(
            f"<clickhouse><listen_host>{self.host}</listen_host><http_port>{self.http_port}</http_port>"
            f"<tcp_port>{self.tcp_port}</tcp_port></clickhouse>\n"
        )
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [sys.executable, "-c",
             f"from stream.store.client import serve_embedded; serve_embedded({str(self.data_dir / 'data')!r})"],
            cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self._pidfile.write_text(f"{proc.pid} {self.http_port} {self.tcp_port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self.url
            if proc.poll() is not None:
                tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise ServiceError(f"ClickHouse server exited with {proc.returncode}: {tail}")
            time.sleep(0.2)
        self.down()
        raise ServiceError(f"ClickHouse server did not answer /ping within {timeout:.0f}s")

    def down(self, timeout: float = 20.0) -> bool:
        """Stop the server; True if one was running."""
        pid = self._pid()
        if pid is None or not _pid_alive(pid):
            self._pidfile.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._pidfile.unlink(missing_ok=True)
        return True
