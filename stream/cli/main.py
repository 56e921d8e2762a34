"""The `driftline` command line: run everything locally, or one part (worker, api, services)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlparse

import httpx
import orjson
import typer

from stream.cli.data import produce, profile
from stream.cli.demo import DEFAULT_STABLE_MINUTES
from stream.cli.env import load_cli_settings
from stream.cli.services import (
    LocalBroker,
    LocalClickHouse,
    RunInfo,
    ServiceError,
    embedded_store_holder,
    next_free_port,
    port_open,
    read_run_info,
    remove_run_info,
    write_run_info,
)
from stream.settings import STALLED_EXIT_CODE, Settings

if TYPE_CHECKING:
    from stream.store.client import Store

app = typer.Typer(help="Driftline: streaming data plane for ML model monitoring.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
services_app = typer.Typer(help="Local broker and ClickHouse server for development and tests.",
                           no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(keys_app, name="keys")
RESTARTS_ENV = "DRIFTLINE_RUN_RESTARTS"  # how often `driftline run` restarted its process so far
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what `keys revoke` accepts: the ids `keys list` shows
T = TypeVar("T")


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
    broker, clickhouse = _local_services(load_cli_settings(), kafka_port, http_port, tcp_port)
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
    broker, clickhouse = _local_services(load_cli_settings(), kafka_port)
    typer.echo(f"broker      {'stopped' if broker.down() else 'was not running'}")
    typer.echo(f"clickhouse  {'stopped' if clickhouse.down() else 'was not running'}")


@services_app.command("status")
def services_status(kafka_port: Annotated[int | None, typer.Option()] = None) -> None:
    """Show whether the local services run and where."""
    broker, clickhouse = _local_services(load_cli_settings(), kafka_port)
    typer.echo(f"broker      {'running at kafka://' + broker.bootstrap if broker.running() else 'stopped'}")
    typer.echo(f"clickhouse  {'running at ' + clickhouse.url if clickhouse.running() else 'stopped'}")



def _running_api(settings: Settings) -> RunInfo | None:
    """The run.json of a live `driftline run` on this store (its API creates, lists and revokes keys)."""
    info = read_run_info(settings.data_dir)
    alive = info is not None and info.clickhouse_url == settings.clickhouse_url and info.alive()
    return info if alive else None


def _through_api(info: RunInfo, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, str]:
    """(status, JSON answer, why it failed) of a keys route of a running `driftline run`'s API, called with
    the admin key it wrote to run.json; status 0 when the API does not answer."""
    try:
        r = httpx.request(method, f"{info.api_url}{path}", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {info.key}"})
    except httpx.HTTPError as exc:
        return 0, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        answer = r.json() if r.content else None
    except ValueError:
        answer = None
    if r.is_success:
        return r.status_code, answer, ""
    detail = answer.get("detail", r.text) if isinstance(answer, dict) else r.text
    return r.status_code, answer, f"HTTP {r.status_code}: {str(detail)[:200]}"


def _with_store(settings: Settings, info: RunInfo | None, why_not: str, action: Callable[[Store], T],
                verb: str = "create") -> T:
    """`action` on the configured store, for a keys command (`verb`: create, list, revoke) its API did not
    serve; exits with a hint when another process (`driftline run`?) holds the embedded store, or with one
    line when the store fails."""
    from stream.store.client import shared_store

    parsed = urlparse(settings.clickhouse_url)
    if parsed.scheme == "chdb":
        path = Path(parsed.path)
        holder = embedded_store_holder(path)
        if holder is not None:
            task = f"{verb} the key{'s' if verb == 'list' else ''}"
            hint = (f"its API at {info.api_url} did not {task} ({why_not})" if info is not None else
                    f"stop it{f' (pid {holder})' if holder else ''}, or {task} while `driftline run` serves its "
                    f"API (keys are then {verb.removesuffix('e')}ed through it)")
            typer.echo(f"error: the embedded store at {path} is in use by another process (driftline run?); {hint}",
                       err=True)
            raise typer.Exit(1)
    try:
        return action(shared_store(settings.clickhouse_url, settings.clickhouse_access))
    except Exception as exc:  # one line, never a traceback: the store's errors are long
        # redacted before it is cut short: a cut must not leave part of a secret behind
        first = (settings.redact(str(exc)).strip().splitlines() or [type(exc).__name__])[0][:300]
        typer.echo(f"error: cannot use the store at {settings.redact(settings.clickhouse_url)}: {first}", err=True)
        raise typer.Exit(1) from None


@keys_app.command("create")
def keys_create(
    scope: Annotated[str, typer.Option(help="admin or model:NAME")] = "admin",
    expires: Annotated[str | None, typer.Option(
        help="when the key stops working: a duration (90m, 12h, 30d, 2w, 1d12h) or an ISO-8601 date or time "
             "(UTC unless it has an offset); default: never")] = None,
) -> None:
    """Create an API key and print it (it is stored hashed and cannot be shown again).

    While `driftline run` holds the embedded store, the key is created through its API."""
    from stream.store.keys import create_key, parse_expiry, validate_scope

    try:
        validate_scope(scope)
        expires_at = parse_expiry(expires) if expires is not None else None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    settings = load_cli_settings()
    info, why_not = _running_api(settings), ""
    if info is not None:
        status, answer, why_not = _through_api(info, "POST", "/v1/keys", {
            "scope": scope, **({"expires": expires_at.isoformat()} if expires_at else {})})
        if status == 201 and isinstance(answer, dict) and isinstance(answer.get("key"), str):
            typer.echo(answer["key"])
            return
    typer.echo(_with_store(settings, info, why_not, lambda store: create_key(store, scope, expires_at)))


def _when(value: str | datetime | None) -> str:
    """A time for the keys table: UTC to the second, `-` for none."""
    if value is None:
        return "-"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso(value: datetime | None) -> str | None:
    """A stored time as the API writes it (ISO-8601 UTC with `Z`), None for none."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@keys_app.command("list")
def keys_list(
    include_revoked: Annotated[bool, typer.Option("--all/--active", help="also list revoked keys")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (the API's `items`) instead of a table")] = False,
) -> None:
    """List API keys: id, scope, created, expires and status (never a token or a hash).

    While `driftline run` holds the embedded store, the keys are read through its API."""
    from stream.store.keys import list_keys

    settings = load_cli_settings()
    info, why_not = _running_api(settings), ""
    items: list[dict[str, Any]] | None = None
    if info is not None:
        status, answer, why_not = _through_api(info, "GET", f"/v1/keys?include_revoked={str(include_revoked).lower()}")
        if status == 200 and isinstance(answer, dict) and isinstance(answer.get("items"), list):
            items = answer["items"]
    if items is None:
        now = datetime.now(UTC)
        keys = _with_store(settings, info, why_not, lambda store: list_keys(store, include_revoked=include_revoked),
                           "list")
        items = [{"key_id": k.key_id, "scope": k.scope, "created_at": _iso(k.created_at),
                  "expires_at": _iso(k.expires_at), "expired": k.expires_at is not None and k.expires_at <= now,
                  "revoked": k.revoked, "revoked_at": _iso(k.revoked_at)} for k in keys]
    if as_json:
        typer.echo(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode())
        return
    rows = [(k["key_id"], k["scope"], _when(k["created_at"]), _when(k["expires_at"]),
             "revoked" if k["revoked"] else "expired" if k["expired"] else "active") for k in items]
    header = ("ID", "SCOPE", "CREATED", "EXPIRES", "STATUS")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id, as `keys list` shows it")]) -> None:
    """Revoke an API key: it stops working at once on the API that revoked it, and within
    DRIFTLINE_AUTH_CACHE_SECONDS (default 5) on every other API process.

    While `driftline run` holds the embedded store, the key is revoked through its API."""
    from stream.store.keys import revoke_key

    if not _KEY_ID.fullmatch(key_id):
        typer.echo(f"error: {key_id!r} is not a key id (as `driftline keys list` shows them)", err=True)
        raise typer.Exit(2)
    settings = load_cli_settings()
    info, why_not = _running_api(settings), ""
    found: bool | None = None
    if info is not None:
        status, _, why_not = _through_api(info, "DELETE", f"/v1/keys/{key_id}")
        found = True if status == 204 else False if status == 404 else None
    if found is None:
        found = _with_store(settings, info, why_not, lambda store: revoke_key(store, key_id), "revoke")
    if not found:
        typer.echo(f"error: no API key has id {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


def _start_worker(settings: Settings, loglevel: str) -> None:
    """Create topics, then run the Faust worker in this thread until it is stopped."""
    import faust

    from stream.worker.app import create_app
    from stream.worker.membership import evict_previous_member
    from stream.worker.topics import ensure_topics

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    faust_app = create_app(settings)
    asyncio.run(ensure_topics(settings))
    asyncio.run(evict_previous_member(settings.kafka_client_kwargs(), settings.data_dir, faust_app.conf.id))
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = faust.Worker(faust_app, loglevel=loglevel)
    if not sys.stdout.isatty():
        # Faust's start-up spinner writes cursor escape codes even into a file; log lines are only
        # coloured on a terminal (colorlog; NO_COLOR turns that off too).
        worker.spinner = None
    worker.execute_from_commandline()


@app.command()
def worker(
    web_port: Annotated[int | None, typer.Option(help="Faust web/metrics port")] = None,
    loglevel: Annotated[str, typer.Option()] = "warn",
) -> None:
    """Run a stream worker (Faust) against the configured broker and store."""
    settings = load_cli_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": web_port})
    _start_worker(settings, loglevel)


def _serve_api(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from api.errors import MAX_REQUEST_HEAD_BYTES
    from api.main import create_app

    # h11 drops a request whose head (request line + headers) exceeds its buffer with a plain 400 and a
    # closed socket (the client, still sending, sees a reset); with room above the API's URI limit the
    # request reaches the app, which answers 414 as JSON and keeps the connection.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES)


@app.command()
def api(
    host: Annotated[str, typer.Option(envvar="DRIFTLINE_API_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DRIFTLINE_API_PORT")] = 8000,
) -> None:
    """Run the HTTP API against the configured broker and store."""
    _serve_api(load_cli_settings(), host, port)


@app.command()
def demo(
    rate: Annotated[int, typer.Option(help="events per second")] = 50,
    stable_minutes: Annotated[float, typer.Option(
        help="minutes of baseline data before drift starts")] = DEFAULT_STABLE_MINUTES,
) -> None:
    """Publish synthetic house-price events (with injected drift) to the events topic."""
    from stream.cli.demo import produce_demo, register_demo_model
    from stream.store.client import shared_store

    settings = load_cli_settings()
    register_demo_model(shared_store(settings.clickhouse_url, settings.clickhouse_access))
    asyncio.run(produce_demo(settings.kafka_client_kwargs(), settings.topic("events"), rate, stable_minutes))


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


def _check_port(host: str, port: int) -> None:
    if port_open(host, port):
        free = next_free_port(host, port)
        typer.echo(f"error: port {port} on {host} is already taken; use make run PORT={free} or "
                   f"driftline run --port {free}", err=True)
        raise typer.Exit(1)


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to `host`."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host


def _publish_run_info(settings: Settings, store: Store, api_url: str) -> str:
    """Write run.json with a new admin key for `driftline keys create`; revoke the key of a previous
    run.json of this store (a run that did not exit cleanly). Returns the key."""
    from stream.store.keys import create_key, key_id_of, revoke_key

    stale = read_run_info(settings.data_dir)
    if stale is not None and stale.clickhouse_url == settings.clickhouse_url and (key_id := key_id_of(stale.key)):
        revoke_key(store, key_id)
    key = create_key(store, "admin")
    write_run_info(settings.data_dir, RunInfo(os.getpid(), api_url, settings.clickhouse_url, key))
    return key


def _withdraw_run_info(settings: Settings, store: Store, key: str) -> None:
    """On exit: run.json goes, and so does its key."""
    from stream.store.keys import key_id_of, revoke_key

    remove_run_info(settings.data_dir, os.getpid())
    with contextlib.suppress(Exception):  # the store may be unusable at exit; the token is gone anyway
        if key_id := key_id_of(key):
            revoke_key(store, key_id)


@app.command()
def run(
    demo: Annotated[bool, typer.Option("--demo", help="also publish synthetic events with injected drift")] = False,
    host: Annotated[str, typer.Option(envvar="DRIFTLINE_API_HOST", help="API host")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="DRIFTLINE_API_PORT", help="API port")] = 8000,
    stable_minutes: Annotated[float, typer.Option(
        help="with --demo: minutes of baseline data before the drift starts")] = DEFAULT_STABLE_MINUTES,
    supervised: Annotated[bool, typer.Option("--supervised", hidden=True)] = False,
) -> None:
    """Local all-in-one: broker (noida-db, if none is reachable), embedded store, worker and API.

    Worker and API share one process (the embedded store allows one per data directory); a parent
    process restarts it when the worker's stall watchdog asks for a restart. While it runs,
    `<data dir>/run.json` (mode 0600) tells `driftline keys create` how to reach its API."""
    if not supervised:
        _check_port(host, port)
        argv = [sys.executable, "-m", "stream.cli", "run", "--supervised", "--host", host, "--port", str(port),
                "--stable-minutes", str(stable_minutes)]
        try:
            code = supervise(argv + (["--demo"] if demo else []))
        finally:
            data_dir = load_cli_settings().data_dir
            info = read_run_info(data_dir)
            if info is None or not info.alive():  # the child died without removing it
                remove_run_info(data_dir)
        raise typer.Exit(code)
    from stream.cli.demo import produce_demo, register_demo_model
    from stream.store.client import shared_store
    from stream.store.keys import create_key

    settings = load_cli_settings()
    _check_port(host, port)
    bhost, bport = _split_bootstrap(settings.bootstrap_servers)
    if not port_open(bhost, bport):
        LocalBroker(settings.data_dir / "broker", host=bhost, port=bport).up()
        typer.echo(f"started local broker at kafka://{bhost}:{bport}")
    # one embedded engine shared by worker and API
    store = shared_store(settings.clickhouse_url, settings.clickhouse_access)
    first_start = os.environ.get(RESTARTS_ENV, "0") == "0"
    api_thread = threading.Thread(target=_serve_api, args=(settings, host, port), daemon=True, name="api")
    api_thread.start()
    if demo:
        register_demo_model(store)
        threading.Thread(
            target=lambda: asyncio.run(produce_demo(settings.kafka_client_kwargs(), settings.topic("events"),
                                                    stable_minutes=stable_minutes)),
            daemon=True, name="demo-producer",
        ).start()
    client_host = _client_host(host)
    deadline = time.monotonic() + 60
    while api_thread.is_alive() and not port_open(client_host, port) and time.monotonic() < deadline:
        time.sleep(0.1)
    cli_key = _publish_run_info(settings, store,
                                f"http://{f'[{client_host}]' if ':' in client_host else client_host}:{port}")
    typer.echo(f"API        http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    # One new admin key per `driftline run`, not per restart after a stall.
    typer.echo(f"admin key  {create_key(store, 'admin') if first_start else '(unchanged, printed at start)'}")
    typer.echo(f"store      {settings.redact(settings.clickhouse_url)}")
    typer.echo(f"data dir   {Path(settings.data_dir)}")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        _start_worker(settings, "warn")
    finally:
        _withdraw_run_info(settings, store, cli_key)


app.command()(produce)
app.command()(profile)

if __name__ == "__main__":
    app()
