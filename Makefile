# The two commands of the README: `make serve` and `make test`. Both install missing system packages first.
SHELL := /bin/bash
DEBS := libssl-dev libjansson-dev libsqlite3-dev libargon2-dev zlib1g-dev libqrencode-dev pkg-config openssl gcc zbar-tools chromium chromium-driver postgresql
BIN := .build/debug/stagepass
LIB := .build/debug/libStagepassVerifyC.so

.PHONY: deps serve test chaos fuzz format bench-issuance

FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 3

deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@python3 -c 'import cryptography, joserfc, pytest, yaml, selenium' 2>/dev/null || python3 -m pip install -q cryptography joserfc pytest pyyaml selenium

serve: deps
	swift build --product stagepass
	$(BIN) serve

test: deps
	swift format lint --strict -r Sources Tests Fuzz/Sources Package.swift
	swift build
	swift build --build-tests
	# One test at a time: the PostgreSQL store blocks its calling thread while PostgresNIO runs on the Swift
	# cooperative pool, so two tests blocking both threads of a 2-core machine at once would stall it.
	swift test --skip-build --no-parallel
	STAGEPASS_BIN=$(abspath $(BIN)) STAGEPASS_VERIFY_LIB=$(abspath $(LIB)) python3 -m pytest -q Tests/interop -m "not slow"
	Fuzz/build.sh >/dev/null && Fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# The fault suite (Specs/benchmarks.md, "Faults"): slow and idle clients, signals, hashing storms, SIGKILL, full disks.
# Each test prints what it measured; `make test` runs its smoke subset (the tests not marked slow).
chaos: deps
	swift build --product stagepass
	STAGEPASS_BIN=$(abspath $(BIN)) python3 -m pytest -q -s Tests/interop -m chaos

# libFuzzer targets (Fuzz/README.md), one after another for FUZZ_SECONDS each: make fuzz FUZZ_SECONDS=600
fuzz: deps
	swift build --target StagepassBroker
	Fuzz/build.sh
	nice Fuzz/run.sh $(FUZZ_SECONDS)

# Durable issuance under load (Specs/benchmarks.md, "Durable issuance"): release build, wrk against the token
# exchange and /healthz, audit checked afterwards; SQLite, PostgreSQL with one broker and with two replicas.
# Extra flags: make bench-issuance BENCH_ARGS="--runs 5".
bench-issuance: deps
	Benchmarks/issuance/run.sh --backends sqlite,postgres,postgres-2 $(BENCH_ARGS)

# Formats every Swift file in place (.swift-format; Sources/.swift-format adds the no-force-unwrap rules).
format:
	swift format -i -r Sources Tests Fuzz/Sources Package.swift
