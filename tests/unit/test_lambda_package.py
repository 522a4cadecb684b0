"""`tarry lambda package`: the zip holds what a function needs, and only that."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tarry.runtime.lambda_package import HANDLER, package
from tarry.runtime.loader import AppError

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_runs_with_nothing_but_the_standard_library(tmp_path: Path) -> None:
    made = package(ROOT / "examples" / "greeter.py", tmp_path / "greeter.zip")
    assert made.handler == HANDLER == "tarry_lambda.handler"
    names = zipfile.ZipFile(made.path).namelist()
    needed = {"greeter.py", "tarry_lambda.py", "tarry/__init__.py", "tarry/journal_table.py",
              "tarry/lambda_adapter/__init__.py", "tarry/operations/run.py"}  # fmt: skip
    assert needed <= set(names)
    assert not [n for n in names if n.startswith(("tarry/runtime", "tarry/infra"))]

    # As Lambda would: the zip on the path, no site-packages (no starlette, httpx, runtime).
    probe = (
        "import json, sys, tarry_lambda\n"
        "print(json.dumps(tarry_lambda.handler({'discover': True}, None)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'httpx', 'jsonschema', 'click', 'uvicorn')))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": str(made.path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    discovery, heavy = ran.stdout.splitlines()
    assert [s["name"] for s in json.loads(discovery)["services"]] == ["Greeter"]
    assert heavy == "[]"


def test_an_app_that_is_not_a_python_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AppError, match=r"a \.py file"):
        package(ROOT / "examples", tmp_path / "x.zip")
    odd = tmp_path / "my-app.py"
    odd.write_text("")
    with pytest.raises(AppError, match="module name"):
        package(odd, tmp_path / "x.zip")
