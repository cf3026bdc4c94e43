-- wrk script of bench/ingest.py: POST pre-signed webhook bodies, each thread its own share.
--
-- wrk -s bench/ingest.lua URL -- <bodies file> <wrk threads>
-- The file holds one "<signature> <body>" line per request (compact JSON has no newline);
-- thread t of n takes lines t, t+n, t+2n ... so no two requests of a run carry the same body
-- while the file lasts (bench/ingest.py writes more lines than a run can send, and checks).
-- done() prints one JSON line: requests, non-2xx answers, socket errors, latency percentiles.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local signatures, bodies, n, i = {}, {}, 0, 0
non2xx = 0

function init(args)
  local path, nthreads = args[1], tonumber(args[2])
  local k = 0
  for line in io.lines(path) do
    if k % nthreads == tid then
      local signature, body = line:match("^(%x+) (.*)$")
      n = n + 1
      signatures[n], bodies[n] = signature, body
    end
    k = k + 1
  end
end

function request()
  i = i % n + 1
  return wrk.format("POST", "/webhook", {
    ["Content-Type"] = "application/json",
    ["x-metriport-signature"] = signatures[i],
  }, bodies[i])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
