#!/usr/bin/env bash
# Lambda deployments on MiniStack (starts DynamoDB Local and MiniStack as the tests do, runs a
# benchmark, stops them):
#   bash bench/lambda.sh          # beside the HTTP deployment, and the cold start (about 2 min;
#                                 # bench/lambda_deployments.py: BENCH_CALLS, BENCH_ROUNDS, BENCH_COLD)
#   bash bench/lambda.sh inline   # journals in the request or read from the table (about 3 min;
#                                 # bench/lambda_inline.py: BENCH_ROUNDS)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "run ./scripts/test.sh once first (it makes .venv)" >&2; exit 1; }
# shellcheck source=scripts/dynamodb-local.sh
. scripts/dynamodb-local.sh
_tarry_ddb_start || { echo "DynamoDB Local did not start" >&2; exit 1; }
# shellcheck source=scripts/ministack.sh
. scripts/ministack.sh
_tarry_ministack_start || { echo "MiniStack did not start" >&2; exit 1; }
case "${1:-}" in
    "") .venv/bin/python -m bench.lambda_deployments ;;
    inline) .venv/bin/python -m bench.lambda_inline ;;
    *) echo "usage: bash bench/lambda.sh [inline]" >&2; exit 2 ;;
esac
