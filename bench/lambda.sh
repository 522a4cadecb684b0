#!/usr/bin/env bash
# Lambda deployments on MiniStack beside the HTTP deployment (bench/lambda_deployments.py says
# what is measured): starts DynamoDB Local and MiniStack as the tests do, runs the benchmark,
# stops them. About 2 minutes. BENCH_CALLS (100), BENCH_ROUNDS (3), BENCH_COLD (3).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./scripts/test.sh once first (it makes .venv)" >&2; exit 1; }
# shellcheck source=scripts/dynamodb-local.sh
. scripts/dynamodb-local.sh
_tarry_ddb_start || { echo "DynamoDB Local did not start" >&2; exit 1; }
# shellcheck source=scripts/ministack.sh
. scripts/ministack.sh
_tarry_ministack_start || { echo "MiniStack did not start" >&2; exit 1; }
.venv/bin/python -m bench.lambda_deployments
