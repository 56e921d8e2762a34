"""Run the runnable examples in the docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "api.keys",
    "sketches",
    "sketches.assay",
    "sketches.column",
    "sketches.dataset",
    "sketches.drift",
    "sketches.errors",
    "sketches.moments",
    "sketches.performance",
    "sketches.segments",
    "sketches.serialization",
    "stream.worker.delivery",
    "stream.worker.membership",
    "stream.worker.plan",
    "stream.config.row_filters",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
