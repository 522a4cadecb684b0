#!/usr/bin/env bash
# Source this file: installs MiniStack (PyPI `ministack`, a pure-Python AWS emulator: Lambda,
# API Gateway, SQS, ... on one port, no Docker) into its own venv under .ci/.deps/, starts it on
# a free loopback port with its own TMPDIR, exports TARRY_MINISTACK_URL, and stops it (and the
# Lambda workers it spawned) when the shell exits, chaining any EXIT trap already set (such as
# DynamoDB Local's from scripts/dynamodb-local.sh).
# It deliberately does not export AWS_ENDPOINT_URL: the DynamoDB tests keep using DynamoDB Local
# through AWS_ENDPOINT_URL_DYNAMODB; the Lambda tests point their clients at TARRY_MINISTACK_URL.
# Needs a Python 3.12 interpreter: MiniStack runs python3.12 functions on its own interpreter.

_tarry_ms_dir=.ci/.deps/ministack
_tarry_ms_version=1.5.33
# boto3 because AWS's python3.12 runtime has it (a handler imports it without bundling it);
# its botocore is the one ministack pins. aws-sam-translator for CloudFormation's SAM transform.
_tarry_ms_requirements="ministack==$_tarry_ms_version boto3==1.43.106 aws-sam-translator==1.115.0"

_tarry_ms_python312() {
    local candidate
    for candidate in "$(command -v python3.12 2>/dev/null)" \
        "$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python3.12"; do
        # a pyenv shim exists even where 3.12 is not selected: ask it, and use what answers
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c \
            'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' \
            2>/dev/null; then
            return 0
        fi
    done
    return 1
}

_tarry_ms_install() {
    local stamp="$_tarry_ms_dir/installed.txt" python
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$_tarry_ms_requirements" ] \
        && "$_tarry_ms_dir/venv/bin/python" -c 'import ministack' 2>/dev/null; then
        return 0
    fi
    if ! python=$(_tarry_ms_python312); then
        echo "MiniStack needs a Python 3.12 interpreter (python3.12, or pyenv's 3.12.1)" >&2
        return 1
    fi
    rm -rf "$_tarry_ms_dir/venv" "$stamp"
    mkdir -p "$_tarry_ms_dir"
    "$python" -m venv "$_tarry_ms_dir/venv" || return 1
    echo "installing $_tarry_ms_requirements into $_tarry_ms_dir/venv"
    # shellcheck disable=SC2086  # the requirements are words
    if ! "$_tarry_ms_dir/venv/bin/python" -m pip install --disable-pip-version-check \
        $_tarry_ms_requirements >"$_tarry_ms_dir/install.log" 2>&1; then
        cat "$_tarry_ms_dir/install.log" >&2
        return 1
    fi
    echo "$_tarry_ms_requirements" >"$stamp"
}

_tarry_ministack_start() {
    _tarry_ms_install || return 1
    local port root
    root=$(pwd)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # its own TMPDIR: each Lambda worker unpacks its zip there (and some are left behind)
    _tarry_ms_tmp=$(mktemp -d "$root/$_tarry_ms_dir/tmp.XXXXXX")
    # Handlers inherit MiniStack's environment (a function's Environment wins over it): keep
    # the tests' endpoints out of it, so a function reaches what its own Environment says and
    # otherwise MiniStack itself (AWS_ENDPOINT_URL, which MiniStack injects). It runs in a
    # process group of its own (same PID, so $! is its group), so stopping it stops the Lambda
    # workers it spawned too.
    (cd "$_tarry_ms_dir" && exec env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_DYNAMODB \
        -u AWS_PROFILE TMPDIR="$_tarry_ms_tmp" GATEWAY_PORT="$port" BIND_HOST=127.0.0.1 \
        LOG_LEVEL=WARNING "$root/$_tarry_ms_dir/venv/bin/python" -c \
        'import os, sys; os.setpgid(0, 0); os.execv(sys.argv[1], sys.argv[1:])' \
        "$root/$_tarry_ms_dir/venv/bin/ministack" >"$root/$_tarry_ms_dir/ministack.log" 2>&1) &
    _tarry_ms_pid=$!
    # chain the EXIT trap already set (DynamoDB Local's), once
    local previous
    previous=$(trap -p EXIT)
    eval "set -- $previous"
    previous=${3:-}
    case "$previous" in
        *_tarry_ministack_stop*) ;;
        "") trap '_tarry_ministack_stop' EXIT ;;
        *) trap "_tarry_ministack_stop; $previous" EXIT ;;
    esac
    local i
    for i in $(seq 1 300); do  # 30 s: it is ready in about 1 s
        if python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()' \
            "http://127.0.0.1:$port/_ministack/health" 2>/dev/null; then
            export TARRY_MINISTACK_URL="http://127.0.0.1:$port"
            # the AWS endpoint tests/aws_stack.py deploys the SAM stacks to
            export TARRY_AWS_ENDPOINT=$TARRY_MINISTACK_URL
            echo "MiniStack $_tarry_ms_version on $TARRY_MINISTACK_URL (pid $_tarry_ms_pid)"
            return 0
        fi
        if ! kill -0 "$_tarry_ms_pid" 2>/dev/null; then
            cat "$_tarry_ms_dir/ministack.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "MiniStack did not answer on http://127.0.0.1:$port/_ministack/health in 30 s" >&2
    cat "$_tarry_ms_dir/ministack.log" >&2
    return 1
}

_tarry_ministack_stop() {
    if [ -n "${_tarry_ms_pid:-}" ]; then
        # its process group: MiniStack and the Lambda workers it spawned
        kill -TERM -- "-$_tarry_ms_pid" 2>/dev/null || kill "$_tarry_ms_pid" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 -- "-$_tarry_ms_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$_tarry_ms_pid" 2>/dev/null || true
        wait "$_tarry_ms_pid" 2>/dev/null || true
        _tarry_ms_pid=
    fi
    if [ -n "${_tarry_ms_tmp:-}" ]; then
        rm -rf "$_tarry_ms_tmp"
        _tarry_ms_tmp=
    fi
}
