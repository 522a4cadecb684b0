#!/usr/bin/env bash
# Install everything the tests need into .venv and run them all: lint, types, and the test
# tiers (unit, contract, integration, fault). Fails (non-zero) on the first failure.
# Usage: ./scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# strict editable mode: mypy follows the sdk/ runtime/ lambda_adapter/ -> tarry.* mapping
.venv/bin/python -m pip install --quiet -e ".[dev]" --config-settings editable_mode=strict

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
