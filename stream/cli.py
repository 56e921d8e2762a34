"""The `driftline` command line: run everything locally, or one part (worker, api, services)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from stream.cli_data import produce, profile
from stream.services import LocalBroker, LocalClickHouse, ServiceError, port_open
from stream.settings import STALLED_EXIT_CODE, Settings

app = typer.Typer(help="Driftline: streaming data plane for ML model monitoring.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
services_app = typer.Typer(help="Local broker and ClickHouse server for development and tests.",
                           no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(keys_app, name="keys")
RESTARTS_ENV = "DRIFTLINE_RUN_RESTARTS"  # how often `driftline run` restarted its process so far


def _split_bootstrap(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port or 9092)


def _local_services(settings: Settings, kafka_port: int | None, http_port: int | None = None,
                    tcp_port: int | None = None) -> tuple[LocalBroker, LocalClickHouse]:
    """The local services of this data dir; ports not given are those a previous `up` recorded."""
    host, port = _split_bootstrap(settings.bootstrap_servers)
    broker = LocalBroker(settings.data_dir / "broker", host=host, port=kafka_port or port)
    clickhouse = LocalClickHouse.recorded(settings.data_dir / "clickhouse")
    clickhouse.http_port = http_port or clickhouse.http_port
    clickhouse.tcp_port = tcp_port or clickhouse.tcp_port
    return broker, clickhouse


@services_app.command("up")
def services_up(
    clickhouse_server: Annotated[
        bool, typer.Option("--clickhouse-server", help="also start a ClickHouse server")] = False,
    kafka_port: Annotated[
        int | None, typer.Option(help="broker port (default: from DRIFTLINE_KAFKA_BOOTSTRAP)")] = None,
    http_port: Annotated[int, typer.Option(help="ClickHouse HTTP port")] = 8123,
    tcp_port: Annotated[int, typer.Option(help="ClickHouse native port")] = 9000,
) -> None:
    """Start the local broker (and optionally a ClickHouse server); idempotent."""
    broker, clickhouse = _local_services(Settings.from_env(), kafka_port, http_port, tcp_port)
    try:
        typer.echo(f"broker      kafka://{broker.up()}")
        if clickhouse_server:
            typer.echo(f"clickhouse  {clickhouse.up()}")
    except ServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@services_app.command("down")
def services_down(
    kafka_port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Stop the local services started by `services up`."""
    broker, clickhouse = _local_services(Settings.from_env(), kafka_port)
    typer.echo(f"broker      {'stopped' if broker.down() else 'was not running'}")
    typer.echo(f"clickhouse  {'stopped' if clickhouse.down() else 'was not running'}")


@services_app.command("status")
def services_status(kafka_port: Annotated[int | None, typer.Option()] = None) -> None:
    """Show whether the local services run and where."""
    broker, clickhouse = _local_services(Settings.from_env(), kafka_port)
    typer.echo(f"broker      {'running at kafka://' + broker.bootstrap if broker.running() else 'stopped'}")
    typer.echo(f"clickhouse  {'running at ' + clickhouse.url if clickhouse.running() else 'stopped'}")


@keys_app.command("create")
def keys_create(scope: Annotated[str, typer.Option(help="admin or model:NAME")] = "admin") -> None:
    """Create an API key and print it (it is stored hashed and cannot be shown again)."""
    from api.keys import create_key
    from stream.store import shared_store

    try:
        typer.echo(create_key(shared_store(Settings.from_env().clickhouse_url), scope))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _start_worker(settings: Settings, loglevel: str) -> None:
    """Create topics, then run the Faust worker in this thread until it is stopped."""
    import faust

    from stream.app import create_app
    from stream.membership import evict_previous_member
    from stream.topics import ensure_topics

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    faust_app = create_app(settings)
    asyncio.run(ensure_topics(settings))
    asyncio.run(evict_previous_member(settings.bootstrap_servers, settings.data_dir, faust_app.conf.id))
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = faust.Worker(faust_app, loglevel=loglevel)
    worker.execute_from_commandline()


@app.command()
def worker(
    web_port: Annotated[int | None, typer.Option(help="Faust web/metrics port")] = None,
    loglevel: Annotated[str, typer.Option()] = "warn",
) -> None:
    """Run a stream worker (Faust) against the configured broker and store."""
    settings = Settings.from_env()
    if web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": web_port})
    _start_worker(settings, loglevel)


def _serve_api(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from api.main import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@app.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run the HTTP API against the configured broker and store."""
    _serve_api(Settings.from_env(), host, port)


@app.command()
def demo(
    rate: Annotated[int, typer.Option(help="events per second")] = 50,
    stable_minutes: Annotated[float, typer.Option(help="minutes of baseline data before drift starts")] = 3.0,
) -> None:
    """Publish synthetic house-price events (with injected drift) to the events topic."""
    from stream.demo import produce_demo, register_demo_model
    from stream.store import shared_store

    settings = Settings.from_env()
    register_demo_model(shared_store(settings.clickhouse_url))
    asyncio.run(produce_demo(settings.bootstrap_servers, settings.topic("events"), rate, stable_minutes))


def supervise(argv: list[str]) -> int:
    """Run `argv` again each time it exits with STALLED_EXIT_CODE (a wedged worker asking for a
    restart); return any other exit code. SIGINT/SIGTERM are passed on to the running child."""
    restarts = 0
    while True:
        # Its own process group: a terminal's Ctrl-C reaches only us, and we pass it on once.
        child = subprocess.Popen(argv, env={**os.environ, RESTARTS_ENV: str(restarts)}, process_group=0)

        def forward(signum: int, frame: object, child: subprocess.Popen[bytes] = child) -> None:
            child.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code != STALLED_EXIT_CODE:
            return code
        restarts += 1
        typer.echo(f"driftline: the worker stalled; restarting (restart {restarts})", err=True)


@app.command()
def run(
    demo: Annotated[bool, typer.Option("--demo", help="also publish synthetic events with injected drift")] = False,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    supervised: Annotated[bool, typer.Option("--supervised", hidden=True)] = False,
) -> None:
    """Local all-in-one: broker (noida-db, if none is reachable), embedded store, worker and API.

    Worker and API share one process (the embedded store allows one per data directory); a parent
    process restarts it when the worker's stall watchdog asks for a restart."""
    if not supervised:
        argv = [sys.executable, "-m", "stream.cli", "run", "--supervised", "--host", host, "--port", str(port)]
        raise typer.Exit(supervise(argv + (["--demo"] if demo else [])))
    from api.keys import create_key
    from stream.demo import produce_demo, register_demo_model
    from stream.store import shared_store

    settings = Settings.from_env()
    if port_open(host, port):
        typer.echo(f"error: port {port} on {host} is already taken; pass --port", err=True)
        raise typer.Exit(1)
    bhost, bport = _split_bootstrap(settings.bootstrap_servers)
    if not port_open(bhost, bport):
        LocalBroker(settings.data_dir / "broker", host=bhost, port=bport).up()
        typer.echo(f"started local broker at kafka://{bhost}:{bport}")
    store = shared_store(settings.clickhouse_url)  # one embedded engine shared by worker and API
    first_start = os.environ.get(RESTARTS_ENV, "0") == "0"
    threading.Thread(target=_serve_api, args=(settings, host, port), daemon=True, name="api").start()
    if demo:
        register_demo_model(store)
        threading.Thread(
            target=lambda: asyncio.run(produce_demo(settings.bootstrap_servers, settings.topic("events"))),
            daemon=True, name="demo-producer",
        ).start()
    typer.echo(f"API        http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    # One new admin key per `driftline run`, not per restart after a stall.
    typer.echo(f"admin key  {create_key(store, 'admin') if first_start else '(unchanged, printed at start)'}")
    typer.echo(f"store      {settings.clickhouse_url}")
    typer.echo(f"data dir   {Path(settings.data_dir)}")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    _start_worker(settings, "warn")


app.command()(produce)
app.command()(profile)

if __name__ == "__main__":
    app()
