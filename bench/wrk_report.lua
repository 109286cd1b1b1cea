-- wrk script for bench/loadtest.py: one request shape, a bounded request count, JSON report.
-- Usage: wrk -s wrk_report.lua URL -- MAX_REQUESTS_PER_THREAD METHOD COOKIE BODY
-- (COOKIE and BODY may be "-" for none). Each thread stops by itself after
-- MAX_REQUESTS_PER_THREAD responses; wrk's own -d stops it after the duration in any case.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")

-- Monotonic seconds: wrk's own duration is the -d value even when threads stop early.
local function now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  max_requests = tonumber(args[1]) or 0  -- per thread; 0: until the duration ends
  method = args[2] or "GET"
  local cookie = args[3]
  local body = args[4]
  wrk.method = method
  if cookie and cookie ~= "-" then
    wrk.headers["Cookie"] = cookie
  end
  wrk.headers["Accept"] = "text/html"
  if body and body ~= "-" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
  ok = 0
  other = 0
  first_other = 0
  started = now()
  last = started
end

function response(status, headers, body)
  last = now()
  if status == 200 then
    ok = ok + 1
  else
    other = other + 1
    if first_other == 0 then
      first_other = status
    end
  end
  if max_requests > 0 and ok + other >= max_requests then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total_ok, total_other, first = 0, 0, 0
  local t0, t1 = nil, nil
  for _, thread in ipairs(threads) do
    total_ok = total_ok + (thread:get("ok") or 0)
    total_other = total_other + (thread:get("other") or 0)
    local f = thread:get("first_other") or 0
    if first == 0 and f ~= 0 then
      first = f
    end
    local s, l = thread:get("started"), thread:get("last")
    if s and (t0 == nil or s < t0) then t0 = s end
    if l and (t1 == nil or l > t1) then t1 = l end
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write("WRK-JSON ")
  io.write(string.format(
    '{"tool":"wrk","requests":%d,"ok":%d,"non_ok":%d,"first_non_ok_status":%d,' ..
    '"socket_errors":%d,"duration_s":%.6f,"latency_ms":{"p50":%.4f,"p90":%.4f,"p99":%.4f,' ..
    '"mean":%.4f,"max":%.4f}}\n',
    summary.requests, total_ok, total_other, first, errors,
    (t0 and t1 and t1 > t0) and (t1 - t0) or summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000))
end
