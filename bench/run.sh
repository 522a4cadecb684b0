#!/usr/bin/env bash
# Benchmark tarry: latency, per-step cost and throughput of the Bench service (bench/services.py).
#
#   bash bench/run.sh                   # tarry dev: runtime and handlers in one process
#   BENCH_MODE=http bash bench/run.sh   # tarry serve + the handlers behind uvicorn over HTTP
#
# Starts tarry on free loopback ports (never assumes 8080/9070, the defaults of tarry and of
# Restate, so bench/peer_restate.sh or a developer's `tarry dev` can run beside it) with a fresh
# temporary data dir, warms up, then measures with wrk (bench/post.lua POSTs the JSON body):
#   (a) noop latency p50/p99: POST /Bench/noop, one connection, requests one after another
#       (wrk -t1 -c1 -d10s --latency);
#   (b) per-step cost: (p50 of steps(10) - p50 of steps(1)) / 9, measured the same way;
#   (c) noop throughput: wrk -t2 -c32 -d10s.
# Prints a table (and writes KEY=VALUE lines to $BENCH_RESULTS if set). Stops what it started
# on exit; exits non-zero if anything fails (a non-2xx answer included). About 1 minute.
#
# BENCH_MODE=dev (default): `tarry dev bench/services.py`, the in-process deployment; ctx.run
#   results are checkpointed straight into the store and the handler carries on.
# BENCH_MODE=http: `tarry serve` plus `uvicorn services:app` registered over the admin API, the
#   shape Restate has (a separate handler process behind HTTP); tarry's HTTP deployment is
#   request/response, so each ctx.run ends the request and the next one replays the journal.
#
# Environment: TARRY (the tarry command; default: the one on PATH, else .venv/bin/tarry), BENCH_MODE, BENCH_DURATION (10s), BENCH_WARMUP (3s), BENCH_CONNS (32),
# BENCH_RESULTS, BENCH_KEEP=1 to keep the temp dir (server logs, wrk outputs).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPO="$(cd "$BENCH_DIR/.." && pwd)"

need wrk "apt-get install wrk"
need curl
need python3

if [[ -z "${TARRY:-}" ]]; then
  for candidate in "$(command -v tarry || true)" "$REPO/.venv/bin/tarry"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then TARRY="$candidate"; break; fi
  done
fi
[[ -n "${TARRY:-}" ]] || die "no tarry command found (pip install -e ., or set TARRY)"

BENCH_MODE="${BENCH_MODE:-dev}"
[[ "$BENCH_MODE" == dev || "$BENCH_MODE" == http ]] || die "BENCH_MODE is dev or http, not $BENCH_MODE"
PYTHON="$(dirname "$TARRY")/python"
[[ "$BENCH_MODE" == dev || -x "$PYTHON" ]] || die "no python beside $TARRY (needed for uvicorn)"

BENCH_WORK="$(mktemp -d -t tarry-bench.XXXXXX)"
SERVER_PID=""
SDK_PID=""
cleanup() { finish_bench $? "$SERVER_PID $SDK_PID" tarry.log uvicorn.log; }
trap cleanup EXIT
trap 'exit 130' INT TERM

check_quiet

INGRESS_PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [[ "$ADMIN_PORT" == "$INGRESS_PORT" ]]; do ADMIN_PORT=$(free_port); done
mkdir -p "$BENCH_WORK/data"
VERSION="$("$TARRY" --version 2>/dev/null | awk '{print $NF}')"

if [[ "$BENCH_MODE" == dev ]]; then
  log "starting $TARRY dev bench/services.py (ingress :$INGRESS_PORT, admin :$ADMIN_PORT, data $BENCH_WORK/data)"
  (cd "$REPO" && exec setsid "$TARRY" dev bench/services.py --data-dir "$BENCH_WORK/data" \
    --ingress-port "$INGRESS_PORT" --admin-port "$ADMIN_PORT") >"$BENCH_WORK/tarry.log" 2>&1 &
  SERVER_PID=$!
  LABEL="tarry $VERSION (tarry dev: in-process handlers, SQLite)"
else
  SDK_PORT=$(free_port)
  while [[ "$SDK_PORT" == "$INGRESS_PORT" || "$SDK_PORT" == "$ADMIN_PORT" ]]; do
    SDK_PORT=$(free_port)
  done
  log "starting uvicorn bench/services.py (:$SDK_PORT)"
  (cd "$BENCH_DIR" && exec setsid "$PYTHON" -m uvicorn services:app --host 127.0.0.1 \
    --port "$SDK_PORT" --log-level warning --no-access-log) >"$BENCH_WORK/uvicorn.log" 2>&1 &
  SDK_PID=$!
  log "starting $TARRY serve (ingress :$INGRESS_PORT, admin :$ADMIN_PORT, data $BENCH_WORK/data)"
  (cd "$REPO" && exec setsid "$TARRY" serve --store "sqlite:///$BENCH_WORK/data/tarry.db" \
    --ingress-port "$INGRESS_PORT" --admin-port "$ADMIN_PORT") >"$BENCH_WORK/tarry.log" 2>&1 &
  SERVER_PID=$!
  wait_listen "$SDK_PORT" "$SDK_PID" 30
  wait_listen "$ADMIN_PORT" "$SERVER_PID" 30
  register_deployment "http://127.0.0.1:$ADMIN_PORT" "http://127.0.0.1:$SDK_PORT"
  log "registered http://127.0.0.1:$SDK_PORT"
  LABEL="tarry $VERSION (tarry serve + uvicorn HTTP deployment, SQLite)"
fi
wait_http "http://127.0.0.1:$INGRESS_PORT/Bench/noop" "" 60 "$SERVER_PID"
wait_http "http://127.0.0.1:$INGRESS_PORT/Bench/steps" "2" 30 "$SERVER_PID"
log "tarry is up"

measure "$LABEL" "http://127.0.0.1:$INGRESS_PORT"
