#!/usr/bin/env bash
# Source this file: offline checks of the LocalStack setup, which CI cannot run (no Docker).
#   _tarry_compose_check FILE...  validates Compose files against the Compose specification's
#       schema (check-jsonschema's built-in vendor.compose-spec: no network, about 0.3 s);
#   _tarry_shell_check FILE...    bash -n, and shellcheck when it is installed (else skipped).
# check-jsonschema is installed into its own venv under .ci/.deps/: its click conflicts with
# the SAM CLI's.

_tarry_cj_dir=.ci/.deps/check-jsonschema
_tarry_cj_requirements="check-jsonschema==0.39.0"

_tarry_cj_install() {
    local stamp="$_tarry_cj_dir/installed.txt"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$_tarry_cj_requirements" ] \
        && [ -x "$_tarry_cj_dir/venv/bin/check-jsonschema" ]; then
        return 0
    fi
    rm -rf "$_tarry_cj_dir/venv" "$stamp"
    mkdir -p "$_tarry_cj_dir"
    "${PYTHON:-python3}" -m venv "$_tarry_cj_dir/venv" || return 1
    echo "installing $_tarry_cj_requirements into $_tarry_cj_dir/venv"
    # shellcheck disable=SC2086  # the requirements are words
    if ! "$_tarry_cj_dir/venv/bin/python" -m pip install --disable-pip-version-check \
        $_tarry_cj_requirements >"$_tarry_cj_dir/install.log" 2>&1; then
        cat "$_tarry_cj_dir/install.log" >&2
        return 1
    fi
    echo "$_tarry_cj_requirements" >"$stamp"
}

_tarry_compose_check() {
    _tarry_cj_install || return 1
    "$_tarry_cj_dir/venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$@"
}

_tarry_shell_check() {
    local file failed=0
    for file in "$@"; do
        bash -n "$file" || failed=1
    done
    if command -v shellcheck >/dev/null; then
        shellcheck -x "$@" || failed=1
    else
        echo "shellcheck is not installed: only bash -n checked $*"
    fi
    return "$failed"
}
