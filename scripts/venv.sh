#!/usr/bin/env bash
# Source this file: _tarry_venv makes .venv (with $PYTHON, default python3) if there is none and
# installs tarry into it, editable, with the dev extra (what the tests and the soaks need).

_tarry_venv() {
    if [ ! -x .venv/bin/python ]; then
        "${PYTHON:-python3}" -m venv .venv || return 1
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip || return 1
    # strict editable mode: mypy follows the sdk/ runtime/ lambda_adapter/ -> tarry.* mapping
    .venv/bin/python -m pip install --quiet -e ".[dev]" --config-settings editable_mode=strict
}
