#!/usr/bin/env bash
# Install everything the tests need into .venv and run them all: lint, types, and the test
# tiers (unit, contract, integration, fault). Fails (non-zero) on the first failure.
# The DynamoDB contract tests run against DynamoDB Local, which this script installs and starts
# (scripts/dynamodb-local.sh); this script stops if it cannot. (Run by hand, pytest skips them
# when nothing answers at AWS_ENDPOINT_URL_DYNAMODB, and fails them under CI=true.)
# Usage: ./scripts/test.sh [extra pytest args] (with none, it also runs the functional suite
# a second time in the SDK's suspend-everywhere testing mode)
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/venv.sh
. scripts/venv.sh
_tarry_venv || { echo "could not install tarry into .venv" >&2; exit 1; }

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== SAM templates"
# sam validate --lint and cfn-lint on template.yaml and examples/signup-stack (offline)
# shellcheck source=scripts/sam.sh
. scripts/sam.sh
_tarry_sam_lint || { echo "the SAM templates are not clean" >&2; exit 1; }
echo "== compose file"
# The LocalStack setup needs Docker, which CI lacks: check offline what can be checked.
# shellcheck source=scripts/compose-check.sh
. scripts/compose-check.sh
_tarry_compose_check localstack/docker-compose.yml \
    || { echo "localstack/docker-compose.yml is not a valid Compose file" >&2; exit 1; }
_tarry_shell_check localstack/deploy.sh localstack/init/ready.d/*.sh \
    || { echo "the LocalStack scripts do not pass bash -n / shellcheck" >&2; exit 1; }
echo "== DynamoDB Local"
# shellcheck source=scripts/dynamodb-local.sh
. scripts/dynamodb-local.sh
_tarry_ddb_start || { echo "DynamoDB Local did not start: the DynamoDB tests cannot run" >&2; exit 1; }
echo "== MiniStack"
# shellcheck source=scripts/ministack.sh
. scripts/ministack.sh
_tarry_ministack_start || { echo "MiniStack did not start: the Lambda tests cannot run" >&2; exit 1; }
# Independent test files run side by side (pytest-xdist), a file to a worker, so a module's
# fixtures are made once; TARRY_TEST_WORKERS=1 runs them one after another.
workers=${TARRY_TEST_WORKERS:-2}
echo "== pytest ($workers workers)"
.venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
if [ "$#" -eq 0 ]; then
    echo "== pytest: the functional suite again, the SDK suspending at every await"
    .venv/bin/python -m pytest -n "$workers" --dist loadfile --suspend-everywhere
fi
