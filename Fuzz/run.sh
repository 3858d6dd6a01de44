#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS (one after another: one core), starting from the committed seed corpus
# Fuzz/corpus/<target> plus the working corpus kept in .build/fuzz/corpus/<target>. Prints one line per target:
#   <target> <executions> <seconds> ok|CRASH
# and a total; exits 1 when any target crashed (the input is saved under .build/fuzz/artifacts/).
#
#   Fuzz/run.sh SECONDS [TARGET…]      (default: every target Fuzz/build.sh built)
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:?usage: Fuzz/run.sh SECONDS [TARGET...]}"; shift
OUT=.build/fuzz
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then TARGETS=(base64url token jwks statuslist dpop cbor policy); fi
mkdir -p "$OUT/artifacts" "$OUT/logs"
total=0
failed=0
for t in "${TARGETS[@]}"; do
    exe="$OUT/fuzz-$t"
    if [[ ! -x "$exe" ]]; then echo "$t: not built (run Fuzz/build.sh)"; failed=1; continue; fi
    mkdir -p "$OUT/corpus/$t"
    log="$OUT/logs/$t.log"
    # -rss_limit_mb: ASan's shadow memory plus a 16 KiB token well under it; a real leak or bomb still trips it.
    "$exe" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=4096 -print_final_stats=1 \
        -artifact_prefix="$OUT/artifacts/$t-" "$OUT/corpus/$t" "Fuzz/corpus/$t" > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    execs=${execs:-0}
    total=$((total + execs))
    if [[ $rc -eq 0 ]]; then
        echo "$t $execs ${secs:-?} ok"
    else
        echo "$t $execs ${secs:-?} CRASH (exit $rc; see $log)"
        grep -m3 -E "ERROR|violated|Fatal error" "$log" || true
        failed=1
    fi
done
echo "total $total"
exit $failed
