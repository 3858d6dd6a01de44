#!/usr/bin/env bash
# Durable issuance under load (Specs/benchmarks.md, "Durable issuance").
#
#   Benchmarks/issuance/run.sh [--backends sqlite,postgres,postgres-2] [--runs N] [--seconds S] [--threads T]
#                              [--connections C] [--no-build] [--workdir DIR] [--json FILE] [--database URL]
#
# Builds the release binary, then (bench.py), per backend: starts `stagepass serve` on a free loopback port with a
# fresh data directory (sqlite), on a PostgreSQL server the script starts itself (postgres), or as two replicas on
# that server (postgres-2); signs a user in with password + TOTP, runs wrk (2 threads, 64 connections, 10 s by
# default) against the RFC 8693 token exchange and against /healthz, checks that every response was 200, that
# `stagepass audit verify` finds the chain intact and that the audit log holds a `token.issue` record for every 200;
# prints tokens/s, p50 and p99 of both and their ratio, and the medians per backend.
set -euo pipefail
cd "$(dirname "$0")/../.."

build=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi
python3 -c 'import pytest, cryptography' 2>/dev/null || python3 -m pip install -q pytest cryptography

if [ "$build" = 1 ]; then
    swift build -c release --product stagepass
fi
bin="$(swift build -c release --show-bin-path)/stagepass"
[ -x "$bin" ] || { echo "no release binary at $bin (drop --no-build)" >&2; exit 2; }

# The data directories go on the real disk (not a tmpfs) unless --workdir says otherwise: the commit's fsync is part
# of what is measured.
exec python3 Benchmarks/issuance/bench.py --bin "$bin" --workdir "${BENCH_WORKDIR:-/var/tmp}" "${args[@]}"
