"""Shared pieces of the bench scripts: the ratio lines every script prints and `bench/run_all.py` collects.

A script reports each figure as a :class:`Ratio` — the measured value against a peer or limit measured
in the same run (whylogs, a bare consumer, the worst case) or a fixed target — with :func:`report`:
one human-readable `ratio:` line each and, with `--json`, one `BENCH-JSON {...}` line that
`bench/run_all.py` parses into its table.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass

JSON_PREFIX = "BENCH-JSON "


@dataclass(frozen=True)
class Ratio:
    """One figure of a bench: `value` (in `unit`) against `peer` (what `versus` names)."""

    name: str
    value: float
    unit: str
    versus: str
    peer: float
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        """How many times better than the peer (> 1: better, whichever way the unit points)."""
        if self.higher_is_better:
            return self.value / self.peer if self.peer else 0.0
        return self.peer / self.value if self.value else 0.0


def report(bench: str, ratios: list[Ratio], as_json: bool, extra: dict[str, object] | None = None) -> None:
    """Print one `ratio:` line per figure; with `as_json` also the machine-readable line for run_all."""
    for r in ratios:
        print(f"ratio: {r.name}: {r.value:,.1f} {r.unit} vs {r.versus} {r.peer:,.1f} {r.unit} = {r.ratio:.2f}x")
    if as_json:
        doc = {"bench": bench, "ratios": [asdict(r) | {"ratio": r.ratio} for r in ratios], "extra": extra or {}}
        print(JSON_PREFIX + json.dumps(doc), flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (inclusive method; a single value is its own percentile)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
