-- wrk script: POST the JSON body in $BENCH_BODY (may be empty: no body, no content type) to the URL wrk was given, and
-- print one machine-readable line at the end for bench/lib.sh to parse:
--   BENCH requests=N duration_us=N errors=N non2xx=N p50_us=N p90_us=N p99_us=N max_us=N
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
if wrk.body ~= "" then
  -- Only with a body: Restate answers 400 to a JSON content type with an empty body for a
  -- handler that takes no input.
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d errors=%d non2xx=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max))
end
