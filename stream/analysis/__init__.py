"""Analysis: everything computed from stored profiles. Modules:

* :mod:`stream.analysis.monitor_config` — pydantic models of the WhyLabs monitor document.
* :mod:`stream.analysis.whylabs_metrics` — WhyLabs metric values from column summaries / dataset profiles.
* :mod:`stream.analysis.analyzers` — one analyzer config on target + baseline → :class:`AnalyzerResult`.
* :mod:`stream.analysis.target_matrix` — targetMatrix → (segment, column) targets.
* :mod:`stream.analysis.engine` — the analyzers over stored window profiles, and the analysis timer.
* :mod:`stream.analysis.alerts` — monitors: analyzer results → alerts (topic and webhooks).
* :mod:`stream.analysis.rule_config` — the Arthur metric and alert rule schema, default metrics.
* :mod:`stream.analysis.rules` — Arthur alert rules evaluated on minute profiles.
* :mod:`stream.analysis.references`, :mod:`stream.analysis.assays` — reference profiles, Wallaroo assays.
"""
