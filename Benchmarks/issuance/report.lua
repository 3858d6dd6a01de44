-- wrk script shared by both runs: counts non-200 responses per thread and prints one JSON line at the end.
-- With BENCH_SESSION set it posts the RFC 8693 token exchange (a `build` stage token for the session); without it,
-- it GETs the URL given on the command line (/healthz).
local session = os.getenv("BENCH_SESSION")
if session ~= nil and session ~= "" then
    wrk.method = "POST"
    wrk.path = "/v1/token"
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
    wrk.body = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
        .. "&subject_token=" .. session
        .. "&subject_token_type=urn%3Astagepass%3Aparams%3Aoauth%3Atoken-type%3Asession"
        .. "&audience=deploy-api&role=builder&stage=build"
end

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    ok = 0
    bad = 0
    first_bad = ""
end

function response(status, headers, body)
    if status == 200 then
        ok = ok + 1
    else
        if bad == 0 then
            first_bad = (tostring(status) .. " " .. string.sub(body or "", 1, 200)):gsub('[%c"\\]', " ")
        end
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local oks, bads, sample = 0, 0, ""
    for _, t in ipairs(threads) do
        oks = oks + t:get("ok")
        bads = bads + t:get("bad")
        local s = t:get("first_bad")
        if sample == "" and s ~= nil then sample = s end
    end
    local e = summary.errors
    io.write(string.format(
        'WRKJSON {"requests": %d, "ok": %d, "non200": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, '
            .. '"p99_us": %d, "max_us": %d, "socket_errors": %d, "first_bad": "%s"}\n',
        summary.requests, oks, bads, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, sample))
end
