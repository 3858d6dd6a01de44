#!/usr/bin/env bash
# Builds the libFuzzer targets with the Swift toolchain's clang runtime (swiftc -sanitize=fuzzer,address), outside
# the SwiftPM product set: each library module is compiled from the same Sources/ files into a static archive with
# coverage + AddressSanitizer, then each target in Fuzz/Sources links the archives it needs.
#
#   Fuzz/build.sh [OUT_DIR]        (default .build/fuzz; prints nothing on success but the targets built)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-.build/fuzz}"
mkdir -p "$OUT"
SWIFTC="${SWIFTC:-swiftc}"
COMMON=(-sanitize=fuzzer,address -O -swift-version 6 -package-name stagepass -parse-as-library
        -enable-upcoming-feature ExistentialAny -enable-upcoming-feature MemberImportVisibility
        -I "$OUT" -I Sources/COpenSSL -I Sources/CJansson -I Sources/CZlib)
quiet() { "$@" 2> >(grep -v "Cannot export local symbol" >&2); }

# A module from Sources/<name> (or the files given) as lib<name>.a + <name>.swiftmodule, rebuilt when a source changed.
module() {
    local name=$1; shift
    local files=("$@")
    local lib="$OUT/lib$name.a"
    if [[ -f "$lib" ]] && [[ -z "$(find "${files[@]}" -newer "$lib" 2>/dev/null)" ]]; then return; fi
    quiet "$SWIFTC" "${COMMON[@]}" -enable-testing -emit-library -static -emit-module -module-name "$name" \
        -emit-module-path "$OUT/$name.swiftmodule" "${files[@]}" -o "$lib"
}

# A fuzz target from Fuzz/Sources/<target>.swift + common.swift, linking the given archives (dependents first).
target() {
    local name=$1; shift
    local exe="$OUT/fuzz-$name"
    local srcs=(Fuzz/Sources/"$name".swift Fuzz/Sources/common.swift)
    local extra=()
    while [[ $# -gt 0 && $1 != -- ]]; do extra+=("$1"); shift; done
    [[ $# -gt 0 ]] && shift
    local libs=("$@")
    local deps=("${srcs[@]}" "${extra[@]}")
    for l in "${libs[@]}"; do deps+=("$OUT/lib$l.a"); done
    if [[ -f "$exe" ]] && [[ -z "$(find "${deps[@]}" -newer "$exe" 2>/dev/null)" ]]; then echo "$exe"; return; fi
    local link=()
    for l in "${libs[@]}"; do link+=(-l"$l"); done
    quiet "$SWIFTC" "${COMMON[@]}" "${srcs[@]}" "${extra[@]}" -L "$OUT" "${link[@]}" -lcrypto -ljansson -lz -o "$exe"
    echo "$exe"
}

module StagepassJOSE Sources/StagepassJOSE/*.swift
module StagepassVerify Sources/StagepassVerify/*.swift

target base64url -- StagepassJOSE
target token -- StagepassVerify StagepassJOSE
target jwks -- StagepassVerify StagepassJOSE
target statuslist -- StagepassVerify StagepassJOSE
# The broker's WebAuthn decoders, compiled into the target itself (read-only use of the broker sources).
target cbor Sources/StagepassBroker/Factors/WebAuthn/{CBOR,COSEKey,WebAuthnError}.swift \
    Sources/StagepassBroker/BrokerError.swift -- StagepassJOSE

# The policy loader needs the rest of the broker (Yams, GRDB, Logging): the broker's sources are compiled with
# instrumentation into the target, against the dependencies of the ordinary debug build (not instrumented).
D=.build/debug
CK=.build/checkouts
if [[ ! -d $D/GRDB.build || ! -d $D/Yams.build || ! -d $D/CYaml.build || ! -d $D/Logging.build ]]; then
    swift build --target StagepassBroker >&2
fi
exe="$OUT/fuzz-policy"
broker=$(find Sources/StagepassBroker -name '*.swift')
if [[ ! -f "$exe" ]] || [[ -n "$(find $broker Fuzz/Sources/policy.swift Fuzz/Sources/common.swift "$OUT/libStagepassVerify.a" -newer "$exe")" ]]; then
    quiet "$SWIFTC" "${COMMON[@]}" -module-name FuzzPolicy -I "$D/Modules" -I Sources/CArgon2 \
        -I "$CK/GRDB.swift/Sources/GRDBSQLite" -I "$CK/Yams/Sources/CYaml/include" \
        Fuzz/Sources/policy.swift Fuzz/Sources/common.swift $broker \
        "$D"/GRDB.build/*.o "$D"/Logging.build/*.o "$D"/Yams.build/*.o $(find "$D/CYaml.build" -name '*.o') \
        -L "$OUT" -lStagepassVerify -lStagepassJOSE -lcrypto -ljansson -lz -largon2 -lsqlite3 -o "$exe"
fi
echo "$exe"
