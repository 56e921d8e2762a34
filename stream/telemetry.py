"""Prometheus counters and gauges of the worker, served on the Faust web port at /metrics (elsewhere in
Driftline, "metrics" are Arthur metrics)."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("driftline_events_consumed_total", "Kafka messages consumed from the events topic")
EVENTS_DECODED = Counter("driftline_events_decoded_total", "Inference events decoded", ["model"])
EVENTS_REJECTED = Counter("driftline_events_rejected_total", "Input sent to the dead-letter topic", ["reason"])
OPEN_WINDOWS = Gauge("driftline_open_windows", "Windows held in worker memory")
FLUSH_SECONDS = Histogram("driftline_flush_seconds", "Time to write one slice of due windows to the store")
ROWS_WRITTEN = Counter("driftline_store_rows_written_total", "Rows written to the store", ["table"])
STORE_ERRORS = Counter("driftline_store_errors_total", "Failed store writes (retried)")
LATE_EVENTS = Counter("driftline_late_events_total", "Events that arrived after their window closed")
REPLAYED_SKIPPED = Counter("driftline_replayed_events_skipped_total",
                           "Replayed events skipped because their window state already holds them")
ANOMALIES = Counter("driftline_anomalies_total", "Events failing at least one validation")
CONSUMER_LAG = Gauge("driftline_consumer_lag", "Events-topic messages not yet read, per assigned partition",
                     ["partition"])
OPEN_SEGMENTS = Gauge("driftline_open_segments", "Distinct (model, segment) pairs with an open window")
VALIDATIONS_EVALUATED = Counter("driftline_validations_evaluated_total",
                                "Validation checks run (events x validations)", ["model"])
VALIDATION_ERRORS = Counter("driftline_validation_errors_total",
                            "Batches on which a validation could not run (missing column, wrong type)",
                            ["model", "validation"])
ANALYZER_EVALUATIONS = Counter("driftline_analyzer_evaluations_total", "Analyzer results computed", ["model"])
ALERTS_PUBLISHED = Counter("driftline_alerts_published_total", "Alerts published to the alerts topic",
                           ["model", "source"])
ANALYSIS_PASSES = Counter("driftline_analysis_passes_total",
                          "Analysis passes run by this worker (while it owns partition 0 of the events topic)")
ANALYSIS_OWNER = Gauge("driftline_analysis_owner", "1 while this worker owns the analysis (events partition 0)")
PEERS_EVICTED = Counter("driftline_group_members_evicted_total",
                        "Dead consumer-group members evicted by this worker (stream/worker/membership.py)")
OFFSET_HOLES = Counter("driftline_offset_holes_total",
                       "Holes in a partition's offsets found before the agent and read again "
                       "(stream/worker/delivery.py)")
