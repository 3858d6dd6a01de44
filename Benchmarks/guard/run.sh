#!/usr/bin/env bash
# The forward-auth guard under load (Specs/benchmarks.md, "Forward-auth guard").
#
#   Benchmarks/guard/run.sh [--no-build] [--bin PATH] [--runs N] [--seconds S] [--threads T] [--connections C]
#
# Release build (`make release`: static Swift runtime, the build `make install` ships). Signs an ES256 token with a
# fresh key (`stagepass dev-sign`) and a status list for it, starts `stagepass guard` on a free loopback port with a
# file JWKS and status list, the requirements of a production deploy and the verified-token cache OFF, and runs wrk
# (2 threads, 64 connections, 10 s by default; same machine) against /auth with the nginx subrequest headers. In the
# same run it measures the single-thread full-verify rate (`stagepass bench verify --alg ES256`) and prints the
# guard's rate as a ratio to it (target >= 0.5); then the same wrk run with the cache on. Every response must be 200
# (wrk's non-2xx count is checked). Each of N runs prints one JSON line; the last line is the medians.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=1 runs=1 seconds=10 threads=2 connections=64 bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0; shift ;;
        --bin) bin=$2; build=0; shift 2 ;;  # another build of stagepass (figures are only recorded for release)
        --runs) runs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

command -v wrk >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
flags=(-c release -Xswiftc -static-stdlib --scratch-path .build-release)
if [ "$build" = 1 ]; then swift build "${flags[@]}" --product stagepass; fi
[ -n "$bin" ] || bin="$(swift build "${flags[@]}" --show-bin-path)/stagepass"
[ -x "$bin" ] || { echo "no release binary at $bin (drop --no-build)" >&2; exit 2; }

work=$(mktemp -d)
guard_pid=""
cleanup() {
    if [ -n "$guard_pid" ]; then kill "$guard_pid" 2>/dev/null || true; wait "$guard_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

issuer=https://stagepass.bench
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key.pem" 2>/dev/null
"$bin" dev-jwks --key "$work/key.pem" > "$work/jwks.json"
now=$(date +%s)
list_uri="$issuer/v1/statuslists/1"
claims=$(python3 - "$issuer" "$now" "$list_uri" <<'PY'
import json, sys
iss, now, uri = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(json.dumps({"iss": iss, "sub": "rita", "aud": "deploy-api", "exp": now + 3600, "iat": now, "nbf": now,
                  "jti": "01JD3Y6Z8Q4W9T2N5K7M3V1XCB", "client_id": "acme/web-deploy", "role": "deployer",
                  "stage": "production", "amr": ["pwd", "hwk"], "auth_time": now - 60, "sid": "s_4b7e2c",
                  "run_id": "run-4711", "act": {"sub": "acme/web-deploy", "run_id": "run-4711"},
                  "status": {"status_list": {"idx": 4711, "uri": uri}}}))
PY
)
list_claims=$(python3 - "$now" "$list_uri" <<'PY'
import base64, json, sys, zlib
now, uri = int(sys.argv[1]), sys.argv[2]
lst = base64.urlsafe_b64encode(zlib.compress(bytes(1 << 14), 9)).rstrip(b"=").decode()
print(json.dumps({"sub": uri, "iat": now, "exp": now + 86400, "ttl": 300,
                  "status_list": {"bits": 1, "lst": lst}}))
PY
)
token=$("$bin" dev-sign --key "$work/key.pem" --alg ES256 --claims "$claims")
"$bin" dev-sign --key "$work/key.pem" --alg ES256 --typ statuslist+jwt --claims "$list_claims" > "$work/status.jwt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_guard() {  # $@: extra flags
    "$bin" guard --listen "127.0.0.1:$port" --trust-forwarded nginx --jwks "$work/jwks.json" --issuer "$issuer" \
        --audience deploy-api --role deployer --stage production --pipeline 'acme/*' \
        --status-list "$work/status.jwt" --status-max-age 86400 --log-level warning "$@" > "$work/guard.log" 2>&1 &
    guard_pid=$!
    for _ in $(seq 1 200); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.05
    done
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -H 'X-Original-Method: POST' \
        -H 'X-Original-URI: /deploy' -H 'X-Forwarded-Proto: https' -H 'X-Forwarded-Host: deploy.example' \
        "http://127.0.0.1:$port/auth")
    [ "$code" = 200 ] || { echo "guard answered $code to the bench token:" >&2; cat "$work/guard.log" >&2; exit 1; }
}
stop_guard() { kill "$guard_pid"; wait "$guard_pid" 2>/dev/null || true; guard_pid=""; }

load() {  # prints requests/s; fails on any non-2xx answer or socket error
    local out
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency \
        -H "Authorization: Bearer $token" -H 'X-Original-Method: POST' -H 'X-Original-URI: /deploy' \
        -H 'X-Forwarded-Proto: https' -H 'X-Forwarded-Host: deploy.example' "http://127.0.0.1:$port/auth")
    if grep -q 'Non-2xx' <<<"$out" || grep -q 'Socket errors' <<<"$out"; then echo "$out" >&2; exit 1; fi
    local rps p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "$rps $p99"
}

results=()
for run in $(seq 1 "$runs"); do
    single=$("$bin" bench verify --json --alg ES256 --seconds 2 | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["results"][0]["full_verify_per_s"])')
    start_guard --no-token-cache
    read -r uncached uncached_p99 < <(load)
    stop_guard
    start_guard
    read -r cached cached_p99 < <(load)
    stop_guard
    line=$(python3 -c 'import json,sys; s,u,up,c,cp,l=sys.argv[1:]; print(json.dumps({"single_thread_full_verify_per_s": int(s), "guard_uncached_per_s": float(u), "guard_uncached_p99": up, "ratio": round(float(u)/int(s), 3), "guard_cached_per_s": float(c), "guard_cached_p99": cp, "load": l}))' \
        "$single" "$uncached" "$uncached_p99" "$cached" "$cached_p99" "$(cut -d' ' -f1-3 /proc/loadavg)")
    echo "$line"
    results+=("$line")
done
printf '%s\n' "${results[@]}" | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda k: statistics.median(r[k] for r in rows)
print(json.dumps({"runs": len(rows), "connections": '"$connections"', "threads": '"$threads"', "seconds": '"$seconds"',
                  "median_single_thread_full_verify_per_s": med("single_thread_full_verify_per_s"),
                  "median_guard_uncached_per_s": med("guard_uncached_per_s"), "median_ratio": med("ratio"),
                  "ratio_range": [min(r["ratio"] for r in rows), max(r["ratio"] for r in rows)],
                  "median_guard_cached_per_s": med("guard_cached_per_s"), "target_ratio": 0.5}))'
