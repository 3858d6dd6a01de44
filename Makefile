# The two commands of the README: `make serve` and `make test`. Both install missing system packages first.
SHELL := /bin/bash
DEBS := libssl-dev libjansson-dev libsqlite3-dev libargon2-dev zlib1g-dev libqrencode-dev pkg-config openssl gcc zbar-tools chromium chromium-driver postgresql \
	nginx wrk patchelf libcurl4-openssl-dev
BIN := .build/debug/stagepass
LIB := .build/debug/libStagepassVerifyC.so

.PHONY: deps serve test test-release chaos fuzz format bench-issuance bench-guard release install dist

# Release artefacts (README.md, "Installing"): the Swift runtime and Foundation linked in statically, so the binary
# and the C library need only Debian's runtime libraries. One release build (its own scratch path, .build-release, so
# it never waits for or invalidates the debug build in .build) serves install, dist, the install test and the guard
# benchmark. Foundation's static URLSession links libcurl (libcurl4-openssl-dev at build time).
VERSION := $(shell cat VERSION)
ARCH := $(shell uname -m)
PREFIX ?= /usr/local
RELEASE_FLAGS := -c release -Xswiftc -static-stdlib --scratch-path .build-release
RELEASE_DIR = $(shell swift build $(RELEASE_FLAGS) --show-bin-path)
# INSTALL_FROM=DIR installs another build's products instead (make test installs the debug build it just made, so
# the suite does not need a second, release build of every dependency; that build keeps the Swift runtime dynamic).
INSTALL_FROM ?=
INSTALL_BUILD := $(if $(INSTALL_FROM),,release)
INSTALL_DIR = $(if $(INSTALL_FROM),$(INSTALL_FROM),$(RELEASE_DIR))
DIST_NAME := stagepass-$(VERSION)-linux-$(ARCH)

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
	# The install test installs this debug build into a temporary prefix (STAGEPASS_INSTALL_FROM); `make
	# test-release` runs it on the static-runtime release build.
	STAGEPASS_BIN=$(abspath $(BIN)) STAGEPASS_VERIFY_LIB=$(abspath $(LIB)) STAGEPASS_INSTALL_FROM=$(abspath .build/debug) \
		python3 -m pytest -q Tests/interop -m "not slow"
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

# The install test on the static-runtime release build (slow: a release build of every dependency).
test-release: release
	STAGEPASS_BIN=$(RELEASE_DIR)/stagepass STAGEPASS_VERIFY_LIB=$(RELEASE_DIR)/libStagepassVerifyC.so \
		python3 -m pytest -q Tests/interop/test_install.py

# `stagepass guard` under wrk against the single-thread full-verify rate of the same run (Specs/benchmarks.md,
# "Forward-auth guard"). Extra flags: make bench-guard BENCH_ARGS="--seconds 20".
bench-guard: release
	Benchmarks/guard/run.sh --no-build $(BENCH_ARGS)

release: deps
	swift build $(RELEASE_FLAGS) --product stagepass
	swift build $(RELEASE_FLAGS) --product StagepassVerifyC

# make install PREFIX=/opt/stagepass [DESTDIR=/staging]: bin/stagepass, lib/libstagepass_verify.so,
# include/stagepass_verify.h, lib/pkgconfig/stagepass-verify.pc.
install: $(INSTALL_BUILD)
	Packaging/install.sh "$(INSTALL_DIR)" "$(DESTDIR)$(PREFIX)" "$(VERSION)"

# dist/stagepass-VERSION-linux-ARCH.tar.gz: the same tree under one top-level directory.
dist: $(INSTALL_BUILD)
	rm -rf "dist/$(DIST_NAME)" "dist/$(DIST_NAME).tar.gz"
	Packaging/install.sh "$(INSTALL_DIR)" "$(abspath dist)/$(DIST_NAME)" "$(VERSION)"
	tar -C dist --owner=0 --group=0 --numeric-owner -czf "dist/$(DIST_NAME).tar.gz" "$(DIST_NAME)"
	rm -rf "dist/$(DIST_NAME)"
	@echo "dist/$(DIST_NAME).tar.gz"

# Formats every Swift file in place (.swift-format; Sources/.swift-format adds the no-force-unwrap rules).
format:
	swift format -i -r Sources Tests Fuzz/Sources Package.swift
