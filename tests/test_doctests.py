"""Run the runnable examples in the docstrings of every module of the product."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import api
import sketches
import stream

MODULES = ["sketches", *sorted(
    m.name for package in (sketches, stream, api)
    for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    if not m.name.endswith("__main__")  # running it would start the CLI
)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
