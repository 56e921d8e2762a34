"""Online analysis (issue 5): WhyLabs monitor documents, metric extraction, analyzer arithmetic, targets.

Pure logic, no I/O.  Modules:

* :mod:`stream.analysis.monitor_config` — pydantic models of the WhyLabs monitor document.
* :mod:`stream.analysis.metrics` — metric values from column summaries / dataset profiles.
* :mod:`stream.analysis.analyzers` — one analyzer config on target + baseline → :class:`AnalyzerResult`.
* :mod:`stream.analysis.target_matrix` — targetMatrix → (segment, column) targets.
"""
