"""The Faust application: topics, tables and agents of the Driftline worker.

The agents read as the data flow: raw bytes → decode → profile → emit. This module wires them;
the work itself lives in the modules named by each step.
"""

from __future__ import annotations

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream import metrics
from stream.settings import Settings


def create_app(settings: Settings) -> faust.App:
    """A Faust app bound to the settings' broker; topics are created by `ensure_topics` first."""
    app = faust.App(
        f"{settings.topic_prefix}worker",
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        topic_disable_leader=True,
        processing_guarantee="exactly_once",
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        web_port=settings.worker_web_port,
        web_host="127.0.0.1",
        datadir=str(settings.data_dir / "faust"),
    )
    events = app.topic(settings.topic("events"), value_type=bytes, value_serializer="raw",
                       key_type=bytes, key_serializer="raw", partitions=settings.partitions)

    @app.agent(events)
    async def consume_events(stream: faust.StreamT[bytes]) -> None:
        async for batch in stream.take(10_000, within=0.5):
            metrics.EVENTS_CONSUMED.inc(len(batch))

    @app.page("/metrics")
    async def prometheus_metrics(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app
