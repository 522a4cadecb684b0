#!/usr/bin/env bash
# Source this file: installs the AWS SAM CLI and cfn-lint into their own venv under .ci/.deps/
# (their pins of click, boto3 and jsonschema are their own) and exports where they are:
#   TARRY_SAM, TARRY_CFN_LINT   the commands (tests/aws_stack.py runs them)
#   TARRY_SAM_PYTHON            a real python3.12: `sam build` wants one first on PATH (it refuses
#                               a pyenv shim) and the Makefiles compile for it
# _tarry_sam ARGS runs sam with that python3.12 first on PATH (the shell's PATH is left alone);
# _tarry_sam_lint validates and lints the project's SAM templates, and fails on any finding.
# Everything here runs offline once installed; `sam local` (Docker) is not used.

_tarry_sam_dir=.ci/.deps/sam
_tarry_sam_requirements="aws-sam-cli==1.170.0 cfn-lint==1.58.0"
# the SAM templates of the project: the runtime, and the examples' functions
_tarry_sam_templates="template.yaml examples/signup-stack/template.yaml"

_tarry_sam_python312() {
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

_tarry_sam_install() {
    local stamp="$_tarry_sam_dir/installed.txt" python
    if ! python=$(_tarry_sam_python312); then
        echo "sam build needs a Python 3.12 interpreter (python3.12, or pyenv's 3.12.1)" >&2
        return 1
    fi
    if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$_tarry_sam_requirements" ] \
        || ! "$_tarry_sam_dir/venv/bin/sam" --version >/dev/null 2>&1; then
        rm -rf "$_tarry_sam_dir/venv" "$stamp"
        mkdir -p "$_tarry_sam_dir"
        "$python" -m venv "$_tarry_sam_dir/venv" || return 1
        echo "installing $_tarry_sam_requirements into $_tarry_sam_dir/venv"
        # shellcheck disable=SC2086  # the requirements are words
        if ! "$_tarry_sam_dir/venv/bin/python" -m pip install --disable-pip-version-check \
            $_tarry_sam_requirements >"$_tarry_sam_dir/install.log" 2>&1; then
            cat "$_tarry_sam_dir/install.log" >&2
            return 1
        fi
        echo "$_tarry_sam_requirements" >"$stamp"
    fi
    # sam and cfn-lint by absolute path, for tests/aws_stack.py (it runs them as subprocesses)
    TARRY_SAM="$(pwd)/$_tarry_sam_dir/venv/bin/sam"
    TARRY_CFN_LINT="$(pwd)/$_tarry_sam_dir/venv/bin/cfn-lint"
    TARRY_SAM_PYTHON=$python
    export TARRY_SAM TARRY_CFN_LINT TARRY_SAM_PYTHON
    export SAM_CLI_TELEMETRY=0
}

# sam, with the python3.12 it needs first on PATH: _tarry_sam build, _tarry_sam deploy --guided
_tarry_sam() {
    _tarry_sam_install || return 1
    PATH="$(dirname "$TARRY_SAM_PYTHON"):$PATH" "$TARRY_SAM" "$@"
}

# `sam validate --lint` (the SAM transform, then cfn-lint's rules) and cfn-lint on the template
# as written, for each template; fails on the first that is not clean.
_tarry_sam_lint() {
    _tarry_sam_install || return 1
    local template
    for template in $_tarry_sam_templates; do
        # a region, as sam validate asks for one; nothing is sent anywhere
        AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} \
            "$TARRY_SAM" validate --lint --template-file "$template" || {
            echo "sam validate --lint: $template is not clean" >&2
            return 1
        }
        "$TARRY_CFN_LINT" "$template" || {
            echo "cfn-lint: $template is not clean" >&2
            return 1
        }
    done
}
