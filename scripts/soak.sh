#!/usr/bin/env bash
# Run one long soak and print its summary: ./scripts/soak.sh KIND [flags], for example
#   ./scripts/soak.sh kill --keys 30 --adds 100 --kill-every 0.5-3
#   ./scripts/soak.sh kill --store dynamodb --lease 10s
# KIND and its flags: python -m tests.soak KIND --help. Installs what it needs into .venv
# (scripts/venv.sh, as scripts/test.sh does); with --store dynamodb it starts DynamoDB Local
# (scripts/dynamodb-local.sh) unless AWS_ENDPOINT_URL_DYNAMODB already names one. Exits
# non-zero when an invariant failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
. scripts/venv.sh
_tarry_venv || { echo "could not install tarry into .venv" >&2; exit 1; }

wants_dynamodb=no
previous=
for arg in "$@"; do
    case "$previous=$arg" in  # --store dynamodb, --store=dynamodb, and store-chaos's both
        --store=dynamodb | --store=both | *=--store=dynamodb | *=--store=both)
            wants_dynamodb=yes ;;
    esac
    previous=$arg
done
if [ "$wants_dynamodb" = yes ] && [ -z "${AWS_ENDPOINT_URL_DYNAMODB:-}" ]; then
    # shellcheck source=scripts/dynamodb-local.sh
    . scripts/dynamodb-local.sh
    _tarry_ddb_start || { echo "DynamoDB Local did not start" >&2; exit 1; }
fi
.venv/bin/python -m tests.soak "$@"
