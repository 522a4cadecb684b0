# shellcheck shell=bash
# Shared by bench/run.sh (tarry) and bench/peer_restate.sh (Restate): picking ports, waiting
# for a server, running wrk and printing the results table. Sourced, not run.
#
# Knobs (environment):
#   BENCH_DURATION   length of each measured wrk run (default 10s)
#   BENCH_WARMUP     length of each warm-up wrk run (default 3s)
#   BENCH_CONNS      connections of the throughput run (default 32)
#   BENCH_RESULTS    if set, a file to write the numbers to as KEY=VALUE lines

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_DURATION="${BENCH_DURATION:-10s}"
BENCH_WARMUP="${BENCH_WARMUP:-3s}"
BENCH_CONNS="${BENCH_CONNS:-32}"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed${2:+ ($2)}"; }

# stop_group PID: end the process group led by PID (started with setsid), politely first.
stop_group() {
  local pid="$1"
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# register_deployment ADMIN_URL URI: POST {"uri": URI} to ADMIN_URL/deployments (the same call
# on Restate's admin API and on tarry's); fails unless it answers 2xx.
register_deployment() {
  local reply code
  reply=$(curl -s -m 30 -w '\n%{http_code}' -X POST "$1/deployments" \
    -H 'content-type: application/json' --data "{\"uri\": \"$2\"}")
  code="${reply##*$'\n'}"
  [[ "$code" == 2* ]] || die "registering $2 at $1 failed ($code): ${reply%$'\n'*}"
  # shellcheck disable=SC2034  # for the caller
  REGISTER_REPLY="${reply%$'\n'*}"
}

# wait_listen PORT PID TIMEOUT_S: wait until something listens on 127.0.0.1:PORT; fail if PID
# exits first or after TIMEOUT_S seconds.
wait_listen() {
  local port="$1" pid="$2" deadline=$((SECONDS + $3))
  until ! port_is_free "$port"; do
    kill -0 "$pid" 2>/dev/null || die "the server (pid $pid) exited before listening on :$port"
    ((SECONDS < deadline)) || die "nothing listens on :$port after $3s"
    sleep 0.2
  done
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# port_is_free PORT: true if nothing listens on 127.0.0.1:PORT.
port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# cpu_busy: how busy all CPUs were over the next 2 seconds, as "N%".
cpu_busy() {
  local a b
  a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    na = split(a, x); split(b, y); busy = 0; total = 0
    for (i = 2; i <= na; i++) { d = y[i] - x[i]; total += d; if (i != 5 && i != 6) busy += d }
    printf "%d%%", total ? 100 * busy / total : 0 }'
}

# check_quiet: measure how busy the machine is before our servers start (other work skews every
# number here), set BENCH_CPU_BUSY, and warn if it is busy.
check_quiet() {
  BENCH_CPU_BUSY=$(cpu_busy)
  log "CPU busy before starting (other work on the machine): $BENCH_CPU_BUSY (all $(nproc) cores)"
  [[ "${BENCH_CPU_BUSY%\%}" -lt 15 ]] \
    || log "warning: something else is using the CPU: expect noisy numbers"
}

# wait_http URL BODY TIMEOUT_S [PID]: POST BODY to URL until it answers 2xx; fail after
# TIMEOUT_S seconds, or at once if PID (the server) has exited.
wait_http() {
  local url="$1" body="$2" timeout="$3" pid="${4:-}" deadline=$((SECONDS + $3)) code
  local args=(-s -o /dev/null -w '%{http_code}' -m 5 -X POST)
  # Like post.lua: a content type only with a body.
  [[ -z "$body" ]] || args+=(-H 'content-type: application/json' --data "$body")
  while :; do
    code=$(curl "${args[@]}" "$url" || true)
    [[ "$code" == 2* ]] && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      die "the server (pid $pid) exited while waiting for $url"
    fi
    ((SECONDS < deadline)) || die "$url did not answer 2xx within ${timeout}s (last status: $code)"
    sleep 0.2
  done
}

# wrk_post NAME THREADS CONNS DURATION URL BODY: run wrk with bench/post.lua; keep its full
# output in $BENCH_WORK/NAME.txt and set R_REQUESTS R_RPS R_P50 R_P90 R_P99 R_MAX (ms) R_ERRORS.
# Fails on any non-2xx answer, and on socket errors above 1% of requests.
wrk_post() {
  local name="$1" threads="$2" conns="$3" duration="$4" url="$5" body="$6"
  local out="$BENCH_WORK/$name.txt" line
  BENCH_BODY="$body" wrk -t"$threads" -c"$conns" -d"$duration" --timeout 10s --latency \
    -s "$BENCH_DIR/post.lua" "$url" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed ($name)"; }
  line=$(grep '^BENCH ' "$out" | tail -1) || { cat "$out" >&2; die "wrk printed no summary ($name)"; }
  local requests duration_us errors non2xx p50 p90 p99 max
  # Fields in the order post.lua writes them.
  read -r requests duration_us errors non2xx p50 p90 p99 max \
    < <(sed -e 's/^BENCH //' -e 's/[a-z0-9_]*=//g' <<<"$line")
  ((requests > 0)) || { cat "$out" >&2; die "$name: no request completed"; }
  ((non2xx == 0)) || { cat "$out" >&2; die "$name: $non2xx non-2xx answers"; }
  ((errors * 100 <= requests)) || { cat "$out" >&2; die "$name: $errors socket errors"; }
  # shellcheck disable=SC2034  # results for the caller; not all are used by measure
  R_REQUESTS=$requests R_ERRORS=$errors
  R_RPS=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  R_P50=$(awk -v x="$p50" 'BEGIN { printf "%.3f", x / 1000 }')
  # shellcheck disable=SC2034
  R_P90=$(awk -v x="$p90" 'BEGIN { printf "%.3f", x / 1000 }')
  R_P99=$(awk -v x="$p99" 'BEGIN { printf "%.3f", x / 1000 }')
  # shellcheck disable=SC2034
  R_MAX=$(awk -v x="$max" 'BEGIN { printf "%.3f", x / 1000 }')
  log "$name: $requests requests, ${R_RPS} req/s, p50 ${R_P50} ms, p99 ${R_P99} ms, errors $errors"
}

# measure LABEL INGRESS_URL: the whole benchmark against an ingress that serves Bench/noop and
# Bench/steps: warm-up, (a) noop latency with one connection, (b) per-step cost from steps(10)
# and steps(1) with one connection, (c) noop throughput with BENCH_CONNS connections. Prints
# the table on stdout.
measure() {
  local label="$1" base="$2"
  local noop="$base/Bench/noop" steps="$base/Bench/steps" load="${BENCH_CPU_BUSY:-?}"
  log "warm-up ($BENCH_WARMUP per handler)"
  wrk_post warmup-noop 2 8 "$BENCH_WARMUP" "$noop" ""
  wrk_post warmup-steps 1 4 "$BENCH_WARMUP" "$steps" "10"

  log "(a) noop latency, 1 connection, $BENCH_DURATION"
  wrk_post noop-latency 1 1 "$BENCH_DURATION" "$noop" ""
  local noop_p50=$R_P50 noop_p99=$R_P99 noop_seq_rps=$R_RPS

  log "(b) steps(1) and steps(10), 1 connection, $BENCH_DURATION each"
  wrk_post steps-1 1 1 "$BENCH_DURATION" "$steps" "1"
  local s1_p50=$R_P50 s1_p99=$R_P99
  wrk_post steps-10 1 1 "$BENCH_DURATION" "$steps" "10"
  local s10_p50=$R_P50 s10_p99=$R_P99
  local per_step
  per_step=$(awk -v a="$s10_p50" -v b="$s1_p50" 'BEGIN { printf "%.3f", (a - b) / 9 }')

  log "(c) noop throughput, $BENCH_CONNS connections, $BENCH_DURATION"
  wrk_post noop-throughput 2 "$BENCH_CONNS" "$BENCH_DURATION" "$noop" ""
  local tput=$R_RPS tput_p50=$R_P50 tput_p99=$R_P99

  printf '\n%s — %s cores, wrk %s per run, machine busy before %s\n' "$label" "$(nproc)" "$BENCH_DURATION" "$load"
  printf '%-44s %12s\n' "metric" "value"
  printf '%-44s %12s\n' "--------------------------------------------" "------------"
  printf '%-44s %12s\n' "noop latency p50 (ms), 1 conn" "$noop_p50"
  printf '%-44s %12s\n' "noop latency p99 (ms), 1 conn" "$noop_p99"
  printf '%-44s %12s\n' "noop sequential rate (req/s), 1 conn" "$noop_seq_rps"
  printf '%-44s %12s\n' "steps(1) latency p50 / p99 (ms)" "$s1_p50 / $s1_p99"
  printf '%-44s %12s\n' "steps(10) latency p50 / p99 (ms)" "$s10_p50 / $s10_p99"
  printf '%-44s %12s\n' "per-step cost (ms) = (p50(10) - p50(1)) / 9" "$per_step"
  printf '%-44s %12s\n' "noop throughput (req/s), $BENCH_CONNS conns" "$tput"
  printf '%-44s %12s\n' "noop latency under load p50 / p99 (ms)" "$tput_p50 / $tput_p99"
  echo

  if [[ -n "${BENCH_RESULTS:-}" ]]; then
    cat >"$BENCH_RESULTS" <<EOF
label=$label
cpu_busy_before=$load
noop_p50_ms=$noop_p50
noop_p99_ms=$noop_p99
noop_seq_rps=$noop_seq_rps
steps1_p50_ms=$s1_p50
steps1_p99_ms=$s1_p99
steps10_p50_ms=$s10_p50
steps10_p99_ms=$s10_p99
per_step_ms=$per_step
throughput_rps=$tput
throughput_p50_ms=$tput_p50
throughput_p99_ms=$tput_p99
EOF
  fi
}

# Stop what a benchmark started, show the last lines of its logs if it failed, and remove its
# work dir (unless BENCH_KEEP=1). Call from an EXIT trap: finish_bench RC "PID ..." LOG...
finish_bench() {
  local rc=$1 pids=$2 pid f
  shift 2
  for pid in $pids; do stop_group "$pid"; done
  if ((rc != 0)); then
    for f in "$@"; do
      if [[ -f "$BENCH_WORK/$f" ]]; then
        log "last lines of $f:"; tail -20 "$BENCH_WORK/$f" >&2
      fi
    done
  fi
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "kept $BENCH_WORK"; else rm -rf "$BENCH_WORK"; fi
  exit "$rc"
}
