"""The worker's stateful step: config refresh, batch processing, flushing, dead letters.

`StreamWorker` owns no Kafka or Faust objects of its own: the Faust app (stream/worker/app.py) hands it
raw messages and a table, and gives it functions to publish side outputs. That keeps the data flow
readable here and the framework wiring there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TypeVar

import orjson
import polars as pl

from stream import telemetry
from stream.analysis.alerts import SCHEMA
from stream.analysis.cbpe import Estimator
from stream.analysis.detectors import Detection, DetectorConfig, DetectorRunner, detection_alert
from stream.analysis.ground_truth import join_labels, late_topic, prediction_rows, split_labels
from stream.config.models import ConfigSnapshot, ModelConfig
from stream.events.decode import RawMessage, Rejection, decode_messages
from stream.settings import Settings
from stream.store import profiles
from stream.store.analysis import AlertRecord, alert_ids_present, write_alerts
from stream.store.client import Store, StoreError
from stream.store.config import ConfigRepository
from stream.store.detections import DetectorRepository, write_detections
from stream.store.estimates import EstimateRow, EstimatorRepository, write_estimates
from stream.store.predictions import write_predictions
from stream.worker.plan import (
    FLUSH_SLICE_COLUMNS,
    Due,
    WindowTable,
    anomaly_message,
    apply_plan,
    due_windows,
    flush_slice,
    plan_batch,
)
from stream.worker.sink import Sink
from stream.worker.windows import WindowKey

log = logging.getLogger(__name__)
T = TypeVar("T")
Publish = Callable[[str, bytes | None, bytes, dict[str, bytes]], Awaitable[None]]


class StreamWorker:
    def __init__(self, settings: Settings, store: Store, table: MutableMapping[str, str], publish: Publish,
                 flush_open_every: float = 5.0) -> None:
        self.settings = settings
        self.store = store
        self.config = ConfigRepository(store)
        self.sink = Sink(store, settings.topic("events"))
        self.windows = WindowTable(table)
        self.detectors = DetectorRunner(table)  # detector states live beside the window states
        self.detector_configs: dict[str, list[DetectorConfig]] = {}
        self.estimators: dict[str, list[Estimator]] = {}  # CBPE, folded into the window states
        self.publish = publish
        self.snapshot = ConfigSnapshot()
        self.flush_open_every = flush_open_every
        self.flush_slice_columns = FLUSH_SLICE_COLUMNS  # column profiles per flush slice (`flush_slice`)
        self._last_open_flush = 0.0
        self._lock = asyncio.Lock()
        self.last_progress = time.monotonic()  # when a batch was last processed (stall detection)

    # -- configuration -------------------------------------------------------------------------
    async def refresh_config(self) -> bool:
        """Swap in the stored configuration when its version moved; True when it changed."""
        try:
            version = await asyncio.to_thread(self.config.current_version)
            if version == self.snapshot.version and self.snapshot.version:
                return False
            snapshot = await asyncio.to_thread(self.config.snapshot)
            self.detector_configs = await asyncio.to_thread(DetectorRepository(self.store).all)
            self.estimators = await asyncio.to_thread(EstimatorRepository(self.store).all)
            self.detectors.forget(self.detector_configs)
            self.snapshot = snapshot
            return True
        except StoreError as exc:
            log.warning("config refresh failed (keeping the previous config): %s", exc)
            return False

    async def _admit_unknown_models(self, names: Iterable[str]) -> set[str]:
        """Register unknown models with defaults, or return them to be dead-lettered."""
        unknown = {n for n in names if n not in self.snapshot.models}
        if not unknown:
            return set()
        # The snapshot can be up to one refresh interval old: a model created through the API just
        # before its first events must not be overwritten with defaults (its segment keys, idle
        # timeout, ... would be lost), so look again before registering anything.
        await self.refresh_config()
        unknown = {n for n in unknown if n not in self.snapshot.models}
        if not unknown or self.settings.unknown_models == "dlq":
            return unknown
        for name in sorted(unknown):
            await asyncio.to_thread(self.config.put_model, ModelConfig(name=name))
        await self.refresh_config()
        return set()

    # -- the batch step ------------------------------------------------------------------------
    async def process(self, messages: list[RawMessage]) -> None:
        """decode → dead-letter the bad → profile the good into window states → publish anomalies."""
        telemetry.EVENTS_CONSUMED.inc(len(messages))
        self.last_progress = time.monotonic()
        # Delivery hands each partition's offsets over in order, but a sequence restarts at the
        # committed offset when a rebalance ends; a batch gathered across one (a rebalance that gave
        # up waiting for it) can hold a record twice. Offset fencing works across batches; within a
        # batch we keep the first copy of each record.
        if len({(m.partition, m.offset) for m in messages}) < len(messages):
            first: dict[tuple[int, int], RawMessage] = {}
            for m in messages:
                first.setdefault((m.partition, m.offset), m)
            messages = list(first.values())
        async with self._lock:
            if not self.snapshot.version:
                await self.refresh_config()
            decoded = decode_messages(messages)
            frame, rejections = decoded.frame, list(decoded.rejections)
            if frame.height:
                rejected_models = await self._admit_unknown_models(frame.get_column("model").unique().to_list())
                if rejected_models:
                    unknown = frame.filter(frame.get_column("model").is_in(sorted(rejected_models)))
                    by_message = {(m.partition, m.offset): m for m in messages}
                    for part, off, idx, model in unknown.select("__partition", "__offset", "__index", "model").rows():
                        rejections.append(Rejection(by_message[(part, off)], "unknown-model",
                                                    f"model {model!r} is not registered", idx, model))
                    frame = frame.filter(~frame.get_column("model").is_in(sorted(rejected_models)))
            frame, labels = split_labels(frame)  # late ground truth: joined below, not rows of a window
            await self._dead_letter(rejections)
            plan = plan_batch(frame, self.snapshot, self.windows.watermarks(), self.windows.known_segments(),
                              carried=decoded.carried)
            for model, errors in plan.validation_errors.items():
                for name, error in errors.items():  # the batch still counts; the validation is all-False
                    log.warning("validation %s of model %s failed on this batch: %s", name, model, error)
                    telemetry.VALIDATION_ERRORS.labels(model=model, validation=name).inc()
            missing = {g.key for g in plan.groups
                       if self.windows.get(g.key.encode()) is None and self.windows.may_be_stored(g.key)}
            loaded = await self._retry(lambda: self.sink.load_states(missing)) if missing else {}
            # Predictions kept for late labels are written while the batch is folded (the insert waits on
            # the store, not on this thread); awaited before the labels are joined and the batch ends.
            predictions = prediction_rows(plan.groups, self.snapshot)
            written = asyncio.get_running_loop().run_in_executor(
                None, write_predictions, self.store, predictions) if predictions.height else None
            applied = apply_plan(self.windows, plan, self.snapshot, loaded, estimators=self.estimators)
            await self._ground_truth(predictions, written, labels, messages)
            for model, count in frame.get_column("model").value_counts().rows() if frame.height else []:
                telemetry.EVENTS_DECODED.labels(model=model).inc(count)
                state = self.snapshot.models.get(model)
                if state is not None and len(state.validations):
                    telemetry.VALIDATIONS_EVALUATED.labels(model=model).inc(count * len(state.validations))
            if frame.height and self.detector_configs:
                await self._detect(frame)
            telemetry.LATE_EVENTS.inc(applied.late)
            telemetry.REPLAYED_SKIPPED.inc(applied.skipped_replayed)
            anomalies = applied.new_anomalies(plan)
            if anomalies:
                await self._retry(lambda: self.sink.write_anomalies(anomalies))
                for record in anomalies:
                    await self.publish(self.settings.topic("anomalies"), record["model"].encode(),
                                       anomaly_message(record), {})
                telemetry.ANOMALIES.inc(len(anomalies))

    async def _ground_truth(self, predictions: pl.DataFrame, written: asyncio.Future[int] | None,
                            labels: pl.DataFrame, messages: list[RawMessage]) -> None:
        """Make sure the batch's predictions are stored (`written`: their insert, under way), then apply its
        ground-truth events: dead letters first, then the claims (the exactly-once marks), then the late
        performance rows — all before the offsets are committed, so a crash replays the batch and the
        marks and row versions fence it."""
        if written is not None:
            try:
                await written
            except StoreError:
                telemetry.STORE_ERRORS.inc()
                await self._retry(lambda: write_predictions(self.store, predictions))
        if labels.height == 0:
            return
        topic, horizon = self.sink.source_topic, self.settings.ground_truth_horizon_days
        outcome = await self._retry(lambda: join_labels(self.store, topic, labels, self.snapshot, horizon))
        if outcome.rejections:
            by_message = {(m.partition, m.offset): m for m in messages}
            await self._dead_letter([Rejection(by_message[(r.partition, r.offset)], r.reason, r.detail, r.index,
                                               r.model) for r in outcome.rejections])
        if outcome.claims.height:
            await self._retry(lambda: write_predictions(self.store, outcome.claims))
        if outcome.windows:
            await self._retry(lambda: profiles.write_windows(self.store, late_topic(topic), outcome.windows))

    async def _detect(self, frame: pl.DataFrame) -> None:
        """Run the change detectors on the batch (state fenced by offset, like windows); store each
        detection and publish the alerts of those outside their detector's cooldown."""
        jobs = self.detectors.prepare(frame, self.detector_configs)
        if not jobs:
            return
        # River updates one value per call: off the event loop, so heartbeats and /metrics are served.
        detections: list[Detection] = self.detectors.save(await asyncio.to_thread(self.detectors.compute, jobs))
        if not detections:
            return
        await self._retry(lambda: write_detections(self.store, self.sink.source_topic, detections))
        by_id = {(m, c.id): c for m, cs in self.detector_configs.items() for c in cs}
        alerts = [detection_alert(d, by_id[(d.model, d.detector_id)]) for d in detections if d.alerted]
        if alerts:
            await self._send_alerts(alerts)

    async def _send_alerts(self, alerts: list[AlertRecord]) -> None:
        """Send detector alerts not sent before, then record them as sent. No pending row is written
        first (as monitors do): the batch itself is the retry — its state is made durable only after
        this returns, so a crash before the send replays the batch and finds the change again, with the
        same deterministic alert id; and nothing pending races the analysis owner's resend of pending
        alerts."""
        sent_before = await self._retry(lambda: alert_ids_present(self.store, [a.alert_id for a in alerts]))
        fresh = [a for a in alerts if a.alert_id not in sent_before]
        for a in fresh:
            await self.publish(self.settings.topic("alerts"), a.model.encode(), orjson.dumps(a.body, default=str),
                               {"schema": SCHEMA.encode(), "alert-id": a.alert_id.encode()})
            a.published = True
        if fresh:
            await self._retry(lambda: write_alerts(self.store, fresh))

    async def _dead_letter(self, rejections: list[Rejection]) -> None:
        if not rejections:
            return
        for r in rejections:
            telemetry.EVENTS_REJECTED.labels(reason=r.reason).inc()
            headers = {"error": f"{r.reason}: {r.detail}"[:1000].encode(),
                       "source-topic": self.sink.source_topic.encode(),
                       "source-partition": str(r.message.partition).encode(),
                       "source-offset": str(r.message.offset).encode(), "batch-index": str(r.index).encode()}
            await self.publish(self.settings.topic("dlq"), None, r.payload(), headers)
        await self._retry(lambda: self.sink.write_dead_letters(rejections))

    async def _retry(self, call: Callable[[], T], attempts: int | None = None) -> T:
        """Store calls on the critical path retry with backoff until the store is back: the batch
        (and so the offset commit) waits, nothing is dropped."""
        delay, attempt = 0.2, 0
        while True:
            try:
                return await asyncio.to_thread(call)
            except StoreError as exc:
                attempt += 1
                telemetry.STORE_ERRORS.inc()
                if attempts is not None and attempt >= attempts:
                    raise
                log.warning("store unavailable (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- background ----------------------------------------------------------------------------
    async def compact_days(self, now_ms: int | None = None) -> None:
        """Persist whole-day merges of past windows for every model (fast long-range queries)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        for state in list(self.snapshot.models.values()):
            try:
                await asyncio.to_thread(profiles.compact_days, self.store, state.model.name,
                                        state.model.granularity, now_ms)
            except StoreError as exc:
                log.warning("day compaction of %s failed (retried later): %s", state.model.name, exc)

    # -- flushing ------------------------------------------------------------------------------
    async def flush(self, partitions: Iterable[int] | None = None, now: float | None = None) -> int:
        """Write due windows; drop closed ones from memory only after the store has them.

        The due windows are written in slices (`flush_slice`: fresh open windows and old closed ones
        in turn, a bounded number of column profiles each), every slice in a thread under the lock,
        released between slices: batches waiting to be processed go in between, so a backlog of wide
        windows (a model of 1,000 columns costs ~50 ms of Python per window to summarize and
        serialize) never holds the batch step, and the event loop stays free to serve heartbeats and
        /metrics. Each slice looks at the table again, so what a batch changed in between is written
        as it is now. Every `flush_open_every` seconds a snapshot round adds the dirty open windows to
        those pending (a waiting window is written once however many rounds found it dirty), the
        freshest first, so the windows being filled right now are visible within seconds even while
        older ones wait their turn. Returns the number of window rows written (stops at the first
        store error)."""
        written, pending = 0, set[str]()
        while True:
            async with self._lock:
                undecoded = self.windows.undecoded(partitions)
                if undecoded:  # recovered from the changelog: decoded off the loop, not in due_windows
                    await asyncio.to_thread(self.windows.decode, undecoded)
                at = time.time() if now is None else now
                opening = at - self._last_open_flush >= self.flush_open_every
                due = due_windows(self.windows, self.snapshot, at, opening, partitions, pending)
                if opening:
                    self._last_open_flush = at
                    pending |= {d.key.encode() for d in due if not d.close}
                if not due:
                    self._gauge_open(partitions)
                    return written
                part = flush_slice(due, self.flush_slice_columns)
                started = time.perf_counter()
                try:
                    rows = await asyncio.to_thread(self.sink.write_windows, part)
                    estimates = _estimate_rows(part)
                    if estimates:  # written with the windows: a failure keeps both in memory for the retry
                        await asyncio.to_thread(write_estimates, self.store, self.sink.source_topic, estimates)
                except StoreError as exc:
                    telemetry.STORE_ERRORS.inc()
                    log.warning("flush failed, windows stay in memory and are retried: %s", exc)
                    return written
                telemetry.FLUSH_SECONDS.observe(time.perf_counter() - started)
                telemetry.ROWS_WRITTEN.labels(table="profiles").inc(rows)
                written += rows
                for item in part:
                    text = item.key.encode()
                    pending.discard(text)
                    if item.close:
                        self.windows.drop(text)
                        self.windows.note_dropped(item.key)
                    else:
                        self.windows.dirty.discard(text)
                self._gauge_open(partitions)

    def _gauge_open(self, partitions: Iterable[int] | None) -> None:
        keys = [WindowKey.decode(k) for k in self.windows.window_keys(partitions)]
        telemetry.OPEN_WINDOWS.set(len(keys))
        telemetry.OPEN_SEGMENTS.set(len({(k.model, k.segment) for k in keys}))


def _estimate_rows(due: Iterable[Due]) -> list[EstimateRow]:
    """The CBPE sums of the windows being written, one row per (window state, score column)."""
    return [EstimateRow(d.key.model, d.key.granularity, d.key.segment, d.key.window_start, d.key.partition,
                        d.state.estimates_since, column, (sums[0], sums[1], sums[2], sums[3], sums[4]),
                        d.state.max_offset)
            for d in due for column, sums in d.state.estimates.items()]
