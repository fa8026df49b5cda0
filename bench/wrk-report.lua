-- Emits wrk's summary as one JSON line (prefixed WRK_JSON) so that bench/report.py reads exact
-- numbers (latency in microseconds) instead of parsing wrk's human units ("1.23ms", "45.6k").
-- Defining only done() keeps wrk on its fast path: the request is still built once, not per call.
-- With WRK_DELAY_MS set, each connection waits that long after each answer before its next request
-- (a paced load below saturation, so that p99 measures latency rather than queueing).

local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace then
   delay = function() return pace end
end

done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max))
end
