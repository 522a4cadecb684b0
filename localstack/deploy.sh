#!/usr/bin/env bash
# Deploy tarry (template.yaml) and its examples' functions (examples/signup-stack/template.yaml)
# to LocalStack, register the functions' versions with the runtime, and print the ingress URL
# and a curl line to try.
#
#   docker compose -f localstack/docker-compose.yml up -d --wait
#   localstack/deploy.sh
#
# Needs: LocalStack answering at TARRY_AWS_ENDPOINT (default http://localhost:4566); a Python
# 3.12 and make, for `sam build`; the repository's .venv (./scripts/test.sh makes it) for the
# tarry CLI and boto3. The SAM CLI comes from scripts/sam.sh (its own venv under .ci/.deps/),
# or SAM=/path/to/sam (1.95 or later: older ones ignore AWS_ENDPOINT_URL). Credentials are
# LocalStack's test ones whatever the environment holds: nothing here reaches a real account.
# Settings: TARRY_STACK (tarry), TARRY_EXAMPLE_STACK (tarry-examples), TARRY_SAM_BUCKET
# (tarry-sam-artifacts), TARRY_STACK_PARAMETERS (more Key=Value overrides for template.yaml),
# TARRY_LAYER_AS_CODE (1; 0 leaves the runtime's code in its layer, for LocalStack Pro).
set -euo pipefail
cd "$(dirname "$0")/.."

endpoint=${TARRY_AWS_ENDPOINT:-http://localhost:4566}
endpoint=${endpoint%/}
stack=${TARRY_STACK:-tarry}
example_stack=${TARRY_EXAMPLE_STACK:-tarry-examples}
example_template=examples/signup-stack/template.yaml
bucket=${TARRY_SAM_BUCKET:-tarry-sam-artifacts}
region=us-east-1
build=build/localstack
py=.venv/bin/python

unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
export AWS_ENDPOINT_URL=$endpoint AWS_REGION=$region AWS_DEFAULT_REGION=$region \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
# the examples' Makefile packages each function with the tarry CLI
TARRY="$(pwd)/.venv/bin/tarry"
export TARRY

fail() {
    echo "deploy: $*" >&2
    exit 1
}

# -- what it needs -----------------------------------------------------------------------------

[ -f template.yaml ] || fail "no template.yaml at the repository's top level"
[ -f "$example_template" ] || fail "no $example_template"
if ! { [ -x "$py" ] && "$py" -c 'import boto3, yaml, tarry.runtime.cli' 2>/dev/null; }; then
    fail "no .venv with tarry and boto3: run ./scripts/test.sh (or python3 -m venv .venv;" \
        ".venv/bin/pip install -e '.[aws]')"
fi
curl -sf "$endpoint/_localstack/health" >/dev/null \
    || fail "nothing answers at $endpoint/_localstack/health:" \
        "docker compose -f localstack/docker-compose.yml up -d --wait"

# the SAM CLI in its own venv, and a real python3.12 first on PATH (sam build refuses a shim)
# shellcheck source=scripts/sam.sh
. scripts/sam.sh
_tarry_sam_install || fail "cannot install the SAM CLI (scripts/sam.sh)"
sam=${SAM:-$TARRY_SAM}
sam_version=$("$sam" --version | grep -Eo '[0-9]+\.[0-9]+\.[0-9]+' | head -1)
"$py" -c 'import sys; sys.exit(tuple(map(int, sys.argv[1].split("."))) < (1, 95, 0))' \
    "$sam_version" || fail "SAM CLI $sam_version ignores AWS_ENDPOINT_URL: 1.95.0 or later is needed"

# -- AWS calls through boto3 -------------------------------------------------------------------

# the outputs of stack $1, a line "Key<TAB>Value" each
outputs() {
    "$py" - "$1" <<'PY'
import sys

import boto3

[stack] = boto3.client("cloudformation").describe_stacks(StackName=sys.argv[1])["Stacks"]
for output in stack.get("Outputs", []):
    print(f"{output['OutputKey']}\t{output['OutputValue']}")
PY
}

# the value of output $2 in outputs $1
output() {
    awk -F '\t' -v key="$2" '$1 == key { print $2 }' <<<"$1"
}

# the emulator's URL for an API Gateway URL: https://{api}.execute-api.{...}/{stage}/... ->
# $endpoint/_aws/execute-api/{api}/{stage}/... (no DNS, no port 443; any other URL as it is)
local_api_url() {
    "$py" - "$1" "$endpoint" <<'PY'
import sys
import urllib.parse

url, endpoint = sys.argv[1:]
parts = urllib.parse.urlsplit(url)
api, _, rest = (parts.hostname or "").partition(".")
if rest.startswith("execute-api."):
    print(f"{endpoint}/_aws/execute-api/{api}{parts.path.rstrip('/')}")
else:
    print(url.rstrip("/"))
PY
}

# Key=Value for each parameter of template $1 that outputs $2 have a value for (the examples'
# TableName and IngressUrl, from the runtime's stack)
matching_parameters() {
    "$py" - "$1" "$2" <<'PY'
import sys

import yaml


class Loader(yaml.SafeLoader):
    """CloudFormation's short forms (!Ref, !Sub, ...) read as plain values."""


def untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


Loader.add_multi_constructor("!", untagged)
template, outputs = sys.argv[1], sys.argv[2]
parameters = yaml.load(open(template), Loader=Loader).get("Parameters") or {}
values = dict(line.split("\t", 1) for line in outputs.splitlines() if "\t" in line)
print(" ".join(f"{name}={values[name]}" for name in parameters if name in values))
PY
}

# LocalStack's free image creates Lambda layers but does not apply them (a paid feature), so the
# runtime's functions, whose code is all in RuntimeLayer, would not find tarry: each gets the
# layer's contents as its own code instead. Usage: layer_as_code LAYER_DIR FUNCTION...
layer_as_code() {
    "$py" - "$bucket" "$@" <<'PY'
import hashlib
import io
import os
import sys
import zipfile

import boto3

bucket, root, *functions = sys.argv[1:]
packed = io.BytesIO()
with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            archive.write(path, os.path.relpath(path, root))
code = packed.getvalue()
key = f"tarry-runtime-code/{hashlib.sha256(code).hexdigest()}.zip"
boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=code)
lam = boto3.client("lambda")
for function in functions:
    lam.update_function_code(FunctionName=function, S3Bucket=bucket, S3Key=key)
    lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    print(f"{function}: the runtime layer as its code ({len(code) // 1024} KB zipped)")
PY
}

# the bucket sam deploy uploads to (init/ready.d makes it when LocalStack starts from compose)
"$py" - "$bucket" <<'PY'
import sys

import boto3
import botocore.exceptions

s3 = boto3.client("s3")
try:
    s3.head_bucket(Bucket=sys.argv[1])
except botocore.exceptions.ClientError:
    s3.create_bucket(Bucket=sys.argv[1])
PY

# -- build and deploy ----------------------------------------------------------------------------

# deploy TEMPLATE STACK [Key=Value...]: sam build, then sam deploy with those parameters
deploy() {
    local template=$1 name=$2 dir="$build/$2"
    shift 2
    echo "== sam build $template"
    # in source: the layer's CodeUri is the repository, which SAM would otherwise copy whole
    "$sam" build --template-file "$template" --build-dir "$dir" --build-in-source \
        >"$build/$name-build.log" 2>&1 \
        || { cat "$build/$name-build.log" >&2; fail "sam build of $template failed"; }
    echo "== sam deploy $name"
    local overrides=()
    if [ "$#" -gt 0 ]; then
        overrides=(--parameter-overrides "$@")
    fi
    "$sam" deploy --template-file "$dir/template.yaml" --stack-name "$name" \
        --s3-bucket "$bucket" --region "$region" --no-confirm-changeset \
        --no-fail-on-empty-changeset \
        --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
        ${overrides[@]+"${overrides[@]}"} || fail "sam deploy of $name failed"
}

mkdir -p "$build"
# LocalStack's free image has REST APIs (v1) only: HTTP APIs (v2) are in its paid plans
runtime_parameters=()
grep -Eq '^  ApiType:' template.yaml && runtime_parameters+=(ApiType=REST)
# shellcheck disable=SC2206  # Key=Value words
runtime_parameters+=(${TARRY_STACK_PARAMETERS:-})
deploy template.yaml "$stack" ${runtime_parameters[@]+"${runtime_parameters[@]}"}
runtime=$(outputs "$stack")
ingress=$(local_api_url "$(output "$runtime" IngressUrl)")
admin=$(local_api_url "$(output "$runtime" AdminUrl)")
[ -n "$ingress" ] && [ -n "$admin" ] || fail "stack $stack has no IngressUrl or AdminUrl output"
if [ "${TARRY_LAYER_AS_CODE:-1}" = 1 ]; then
    echo "== the runtime's code into its functions"
    layer_as_code "$build/$stack/RuntimeLayer/python" \
        "$(output "$runtime" IngressFunctionName)" "$(output "$runtime" WorkerFunctionName)" \
        "$(output "$runtime" SweepFunctionName)" "$(output "$runtime" AdminFunctionName)"
fi

# the runtime's outputs as the examples take them: its URLs as they are reached from here
runtime_here=$(awk -F '\t' -v OFS='\t' -v ingress="$ingress" -v admin="$admin" \
    '$1 == "IngressUrl" { $2 = ingress } $1 == "AdminUrl" { $2 = admin } { print }' <<<"$runtime")
# shellcheck disable=SC2046  # Key=Value words
deploy "$example_template" "$example_stack" \
    $(matching_parameters "$example_template" "$runtime_here")
examples=$(outputs "$example_stack")

# each function's version ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION)
versions=$(awk -F '\t' '$1 ~ /VersionArn$/ && $2 ~ /:function:[^:]+:[0-9]+$/ { print $2 }' \
    <<<"$examples")
[ -n "$versions" ] || fail "stack $example_stack has no output with a function version's ARN"
for version in $versions; do
    echo "== tarry deployments register $version"
    .venv/bin/tarry deployments register "$version" --admin-url "$admin"
done

cat <<EOF

tarry runs on LocalStack:
  ingress    $ingress
  admin API  $admin

Try it (the CLI signs its requests: it needs the test credentials LocalStack takes):
  export TARRY_ADMIN_URL=$admin AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=$region
  curl -X POST $ingress/Signup/signup/send -H 'content-type: application/json' \\
    -d '{"username": "ada", "name": "Ada", "surname": "Lovelace", "password": "s3cret", "email": "ada@example.com"}'
  .venv/bin/tarry invocations ls
EOF
