"""The examples in docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tarry._journal",
    "tarry.serde",
    "tarry.limits",
    "tarry.service",
    "tarry.operations.call",
    "tarry.runtime.paths",
    "tarry.runtime.checkpoints",
    "tarry.runtime.http_input",
    "tarry.runtime.durations",
    "tarry.runtime.admin_auth",
    "tarry.runtime.cli",
    "tarry.runtime.store.dynamodb_layout",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
