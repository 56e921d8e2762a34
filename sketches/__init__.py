"""Driftline sketches: vectorized, mergeable column and dataset profiles plus drift math.

>>> import polars as pl
>>> from sketches import DatasetProfile
>>> p = DatasetProfile()
>>> p.track(pl.DataFrame({"in.x": [1, 2, 3], "in.city": ["a", "b", "a"]}))
>>> p.columns["in.city"].summary()["frequent_items"]
[('a', 2), ('b', 1)]
"""

from sketches.column import ColumnProfile
from sketches.dataset import DatasetProfile
from sketches.errors import ProfileFormatError
from sketches.moments import Moments
from sketches.performance import ClassificationMetrics, RegressionMetrics

__all__ = [
    "ClassificationMetrics",
    "ColumnProfile",
    "DatasetProfile",
    "Moments",
    "ProfileFormatError",
    "RegressionMetrics",
]
