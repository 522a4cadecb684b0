#!/usr/bin/env bash
# The same benchmark as bench/run.sh, against Restate: restate-server (npm
# @restatedev/restate-server) with bench/restate_services.py (PyPI restate-sdk) served by
# hypercorn, so tarry's numbers have a peer measured on the same machine the same way.
#
#   bash bench/peer_restate.sh
#
# 1. Installs, once, into bench/.cache (gitignored): restate-server from npm, and a virtualenv
#    with restate-sdk and hypercorn from PyPI (versions pinned below).
# 2. Starts restate-server with a fresh temporary base dir, TCP only, on free loopback ports
#    (Restate's defaults 8080/9070/5122 are also tarry's, so they are not assumed free; set
#    RESTATE_INGRESS_PORT / RESTATE_ADMIN_PORT / RESTATE_FABRIC_PORT / RESTATE_SDK_PORT to pin).
# 3. Serves bench/restate_services.py with hypercorn using Restate's recommended production
#    settings (HTTP/2 without TLS, which Restate speaks to http:// deployments; keep-alive
#    timeout, keep-alive max requests and max concurrent streams at 2^31-1, otherwise hypercorn
#    recycles Restate's long-lived connection and invocations stall). Restate recommends
#    `workers = 8`; on this 2-core machine the default here is RESTATE_SDK_WORKERS=1 (see
#    bench/README.md for why and for the 2-worker numbers).
# 4. Registers the deployment: POST /deployments {"uri": "http://127.0.0.1:SDK_PORT"} on the
#    admin API.
# 5. Runs the measurements of bench/lib.sh against Restate's ingress and prints the same table.
# Stops everything it started on exit (each server runs in its own process group); exits
# non-zero on failure. About 1 minute, plus ~15 s for the first install.
#
# Environment: as bench/run.sh (BENCH_DURATION, BENCH_WARMUP, BENCH_CONNS, BENCH_RESULTS,
# BENCH_KEEP), plus the ports above and RESTATE_SDK_WORKERS.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RESTATE_SERVER_VERSION=1.7.12
RESTATE_SDK_VERSION=1.3.0
HYPERCORN_VERSION=0.18.0
RESTATE_SDK_WORKERS="${RESTATE_SDK_WORKERS:-1}"
CACHE="$BENCH_DIR/.cache"

need wrk "apt-get install wrk"
need curl
need python3
need npm

BENCH_WORK="$(mktemp -d -t restate-bench.XXXXXX)"
RESTATE_PID=""
SDK_PID=""

cleanup() { finish_bench $? "$SDK_PID $RESTATE_PID" hypercorn.log restate.log; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- 1. install ---------------------------------------------------------------------------------

mkdir -p "$CACHE"
NPM_DIR="$CACHE/npm-$RESTATE_SERVER_VERSION"
restate_bin() {
  # The npm package's bin is a node wrapper around a per-platform binary; run the binary itself
  # so the server is the process we start and stop.
  local f
  for f in "$NPM_DIR"/node_modules/@restatedev/restate-server-linux-*/bin/restate-server; do
    if [[ -x "$f" ]]; then echo "$f"; return; fi
  done
}
if [[ -z "$(restate_bin)" ]]; then
  log "installing @restatedev/restate-server@$RESTATE_SERVER_VERSION into $NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --silent \
    "@restatedev/restate-server@$RESTATE_SERVER_VERSION" >&2
fi
RESTATE_SERVER="$(restate_bin)"
[[ -x "$RESTATE_SERVER" ]] || die "restate-server binary not found under $NPM_DIR"

VENV="$CACHE/venv-restate"
STAMP="restate-sdk==$RESTATE_SDK_VERSION hypercorn==$HYPERCORN_VERSION"
if [[ "$(cat "$VENV/.bench-stamp" 2>/dev/null || true)" != "$STAMP" ]]; then
  log "creating $VENV with $STAMP"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086  # STAMP is the list of requirements
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $STAMP 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/python" -c "import restate, hypercorn" || die "installing $STAMP failed"
  echo "$STAMP" >"$VENV/.bench-stamp"
fi

check_quiet

# -- 2. restate-server --------------------------------------------------------------------------

# pick_port: a free port not already in TAKEN_PORTS (the caller appends what it takes).
pick_port() {
  local p
  while :; do
    p=$(free_port)
    [[ " ${TAKEN_PORTS:-} " == *" $p "* ]] || break
  done
  echo "$p"
}
INGRESS_PORT="${RESTATE_INGRESS_PORT:-$(pick_port)}"; TAKEN_PORTS="${TAKEN_PORTS:-} $INGRESS_PORT"
ADMIN_PORT="${RESTATE_ADMIN_PORT:-$(pick_port)}"; TAKEN_PORTS="$TAKEN_PORTS $ADMIN_PORT"
FABRIC_PORT="${RESTATE_FABRIC_PORT:-$(pick_port)}"; TAKEN_PORTS="$TAKEN_PORTS $FABRIC_PORT"
SDK_PORT="${RESTATE_SDK_PORT:-$(pick_port)}"
for p in "$INGRESS_PORT" "$ADMIN_PORT" "$FABRIC_PORT" "$SDK_PORT"; do
  port_is_free "$p" || die "port $p is in use"
done

log "starting restate-server $RESTATE_SERVER_VERSION (ingress :$INGRESS_PORT, admin :$ADMIN_PORT, fabric :$FABRIC_PORT, data $BENCH_WORK/restate-data)"
RESTATE_DISABLE_TELEMETRY=true RESTATE_LOG_DISABLE_ANSI_CODES=true \
RESTATE_INGRESS__BIND_ADDRESS="127.0.0.1:$INGRESS_PORT" \
RESTATE_ADMIN__BIND_ADDRESS="127.0.0.1:$ADMIN_PORT" \
  setsid "$RESTATE_SERVER" --no-logo \
    --base-dir "$BENCH_WORK/restate-data" --listen-mode tcp \
    --bind-address "127.0.0.1:$FABRIC_PORT" >"$BENCH_WORK/restate.log" 2>&1 &
RESTATE_PID=$!

deadline=$((SECONDS + 60))
until curl -sf -o /dev/null -m 2 "http://127.0.0.1:$ADMIN_PORT/health" \
   && curl -sf -o /dev/null -m 2 "http://127.0.0.1:$INGRESS_PORT/restate/health"; do
  kill -0 "$RESTATE_PID" 2>/dev/null || die "restate-server exited (see the log above)"
  ((SECONDS < deadline)) || die "restate-server did not become healthy within 60s"
  sleep 0.2
done
log "restate-server is up"

# -- 3. the Python service under hypercorn -------------------------------------------------------

cat >"$BENCH_WORK/hypercorn.toml" <<EOF
# Restate's recommended hypercorn settings (docs: Python SDK, "Serving"), on loopback.
bind = "127.0.0.1:$SDK_PORT"
h2_max_concurrent_streams = 2147483647
keep_alive_max_requests = 2147483647
keep_alive_timeout = 2147483647
workers = $RESTATE_SDK_WORKERS
EOF
log "starting hypercorn bench/restate_services.py (:$SDK_PORT, $RESTATE_SDK_WORKERS worker(s))"
(cd "$BENCH_DIR" && exec setsid "$VENV/bin/python" -m hypercorn \
  --config "$BENCH_WORK/hypercorn.toml" restate_services:app) >"$BENCH_WORK/hypercorn.log" 2>&1 &
SDK_PID=$!
wait_listen "$SDK_PORT" "$SDK_PID" 30

# -- 4. register ---------------------------------------------------------------------------------

register_deployment "http://127.0.0.1:$ADMIN_PORT" "http://127.0.0.1:$SDK_PORT"
log "registered http://127.0.0.1:$SDK_PORT: $(grep -o '"sdk_version":"[^"]*"' <<<"$REGISTER_REPLY" || true)"

wait_http "http://127.0.0.1:$INGRESS_PORT/Bench/noop" "" 60 "$RESTATE_PID"
wait_http "http://127.0.0.1:$INGRESS_PORT/Bench/steps" "2" 30 "$RESTATE_PID"

# -- 5. measure ----------------------------------------------------------------------------------

measure "Restate $RESTATE_SERVER_VERSION + restate-sdk $RESTATE_SDK_VERSION (hypercorn, $RESTATE_SDK_WORKERS worker(s))" \
  "http://127.0.0.1:$INGRESS_PORT"
