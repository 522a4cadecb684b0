"""Fixtures the fault tests share."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import boto3
import pytest

from tests.conftest import ROOT
from tests.dynamodb_local import dynamodb_local


@pytest.fixture
def table() -> Iterator[str]:
    """A fresh table, created by the CLI from infra/table.yaml."""
    dynamodb_local()
    name = f"tarry-test-{uuid.uuid4().hex[:12]}"
    cli = [sys.executable, "-m", "tarry.runtime.cli", "dynamodb", "create-table", name]
    made = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert made.returncode == 0, made.stderr
    assert f"table {name} created" in made.stdout
    again = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "exists already" in again.stdout  # idempotent
    yield name
    boto3.client("dynamodb").delete_table(TableName=name)
