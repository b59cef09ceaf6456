# Secrets Store CSI driver in Swift. `make help` lists the targets.
SHELL := /bin/bash
SWIFT ?= swift
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= debug
BIN := .build/$(CONFIG)/secrets-store-csi-driver

APT_PACKAGES := libuv1-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler \
  libssl-dev libcurl4-openssl-dev libyaml-dev python3-venv nghttp2-client pkg-config util-linux umoci
PY_PACKAGES := grpcio==1.85.3 grpcio-tools==1.85.1 protobuf h2 pytest pyyaml jsonschema

.PHONY: help deps build release image-rootfs test unit-test integration-test protos protos-check demo bench bench-rtt bench-rtt-run clean

help:
	@echo "make deps              install Debian packages and the Python test virtualenv (idempotent)"
	@echo "make build             debug build of the driver and tests"
	@echo "make release           release build"
	@echo "make test              everything CI runs: protos check, unit tests, integration tests"
	@echo "make protos            regenerate the protoc-c code from Protos/"
	@echo "make image-rootfs      the runtime image as a rootfs tree and an OCI layout tarball (.build/image), no container engine"
	@echo "make demo              publish, rotate and remove a secrets volume end to end (reference provider, no cluster)"
	@echo "make bench             the standard load scenarios (csi-load, release build) and unary RTT: pass/fail, .build/bench/report.html"
	@echo "                       BENCH_BASELINE=dir compares with an earlier run, BENCH_ONLY=a-c1,b-burst250 picks scenarios"
	@echo "make bench-rtt         unary RTT only (NodeGetInfo over a unix socket, csi-bench and h2load)"
	@echo "make fuzz              every fuzz target (Fuzz/) until FUZZ_RUNS executions or FUZZ_SECONDS; a table of executions"
	@echo "make fuzz-smoke        a short pass of every fuzz target, replaying the committed seeds (CI)"
	@echo "make test-asan         the Swift unit tests under AddressSanitizer (.build-asan)"
	@echo "make test-tsan         the Swift unit tests under ThreadSanitizer (.build-tsan)"

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c 'import grpc, grpc_tools, h2, pytest, yaml, jsonschema' 2>/dev/null || $(PY) -m pip install -q $(PY_PACKAGES)
	@./scripts/install-kube-tools.sh $(VENV)/bin

# Every target that builds stamps the version first (scripts/stamp-version.sh).
build:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build -c $(CONFIG)

release:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build -c release

protos:
	./scripts/gen-protos.sh Sources/CProtobufC

# Fails when the committed protoc-c output differs from what Protos/ generates.
protos-check:
	@tmp=$$(mktemp -d); ./scripts/gen-protos.sh $$tmp >/dev/null; \
	for f in $$tmp/*.c $$tmp/include/*.h; do \
	  rel=$${f#$$tmp/}; cmp -s $$f Sources/CProtobufC/$$rel || { echo "stale generated file: Sources/CProtobufC/$$rel (run make protos)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "protoc-c output is up to date"

unit-test:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

integration-test: build
	DRIVER_BIN=$(abspath $(BIN)) REFERENCE_PROVIDER_BIN=$(abspath .build/$(CONFIG)/csi-reference-provider) \
	  LOAD_BIN=$(abspath .build/$(CONFIG)/csi-load) $(PY) -m pytest -q Tests/integration

test: deps protos-check unit-test integration-test

IMAGE_OUT ?= .build/image

# The runtime image without a container engine: the release binary, its shared libraries
# and CA certificates as a rootfs tree, a rootfs tarball and an OCI image layout tarball
# (umoci), in $(IMAGE_OUT). deploy/Containerfile builds the same tree with podman/docker.
image-rootfs: deps release
	./scripts/image-rootfs.sh .build/release/secrets-store-csi-driver $(IMAGE_OUT)

demo: deps build
	$(PY) scripts/demo.py --driver $(abspath $(BIN)) --provider $(abspath .build/$(CONFIG)/csi-reference-provider)

BENCH_OUT ?= .build/bench
BENCH_BASELINE ?=
BENCH_ONLY ?=

# Standard scenarios (Benchmarks/bench.py) then unary RTT; target misses are reported, not fatal.
bench: deps release
	$(PY) Benchmarks/bench.py --bin-dir $(abspath .build/release) --out-dir $(abspath $(BENCH_OUT)) \
	  $(if $(BENCH_BASELINE),--baseline $(abspath $(BENCH_BASELINE))) $(if $(BENCH_ONLY),--only $(BENCH_ONLY))
	$(MAKE) --no-print-directory bench-rtt-run

bench-rtt: deps release bench-rtt-run

bench-rtt-run:
	$(PY) Benchmarks/unary_rtt.py --driver $(abspath .build/release/secrets-store-csi-driver) \
	  --bench-bin $(abspath .build/release/csi-bench) --json $(abspath $(BENCH_OUT))/unary_rtt.json

MICRO := Benchmarks/micro
MICRO_THRESHOLDS := $(abspath $(MICRO))/Thresholds
MICRO_ARGS ?=

# Micro-benchmarks of the hot paths (package-benchmark, a package of its own: release build,
# root for the tmpfs). Not part of `make test`: timings are for people, not for CI.
# MICRO_ARGS passes options on, e.g. MICRO_ARGS="--target TransportBenchmarks --filter 'unary.*'".
.PHONY: micro-bench micro-bench-check
micro-bench:
	$(SWIFT) package --package-path $(MICRO) benchmark --no-progress $(MICRO_ARGS)

# Runs them and fails when a p90 is worse than Benchmarks/micro/Thresholds by more than its
# tolerance (Benchmarks/micro/Sources/MicroSupport). Better than the thresholds passes, with a note.
micro-bench-check:
	@out=$$(mktemp); \
	$(SWIFT) package --package-path $(MICRO) benchmark thresholds check --path $(MICRO_THRESHOLDS) --no-progress $(MICRO_ARGS) 2>&1 | tee $$out; \
	rc=$${PIPESTATUS[0]}; \
	if [ $$rc -ne 0 ] && grep -q "is BETTER than the defined thresholds" $$out && ! grep -q "is WORSE than" $$out; then \
	  echo "micro-bench-check: better than the thresholds; to record the new numbers see $(MICRO)/README.md"; rc=0; \
	fi; \
	rm -f $$out; exit $$rc

clean:
	rm -rf .build $(VENV)

# Fuzzing (libFuzzer): a package of its own in Fuzz/, built with -sanitize=fuzzer,address in
# .build-fuzz (release, every module instrumented). `make fuzz` runs each target until
# FUZZ_RUNS executions or FUZZ_SECONDS, whichever comes first, and prints executions per
# target; `make fuzz-smoke` (CI) runs a short pass of each that also replays every committed
# seed. Found inputs accumulate in .build-fuzz/work.
FUZZ := Fuzz
FUZZ_SCRATCH := $(abspath .build-fuzz)
FUZZ_TARGETS := FuzzH2Server FuzzMessages FuzzProviderResponse FuzzSecretProviderClass FuzzVolumeContext FuzzKubeJSON
FUZZ_RUNS ?= 1000000
FUZZ_SECONDS ?= 900
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_BUILD_FLAGS := -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing
# Sanitizer builds: the unit tests in scratch paths of their own (each a full rebuild).
ASAN_SCRATCH := $(abspath .build-asan)
TSAN_SCRATCH := $(abspath .build-tsan)

.PHONY: fuzz fuzz-smoke fuzz-build test-asan test-tsan
fuzz-build:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build --package-path $(FUZZ) --scratch-path $(FUZZ_SCRATCH) $(FUZZ_BUILD_FLAGS)

fuzz: fuzz-build
	@$(FUZZ)/scripts/run-fuzzers.sh $(FUZZ_SCRATCH)/release $(FUZZ_SCRATCH)/work $(FUZZ_SECONDS) $(FUZZ_RUNS) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@$(FUZZ)/scripts/run-fuzzers.sh $(FUZZ_SCRATCH)/release $(FUZZ_SCRATCH)/smoke $(FUZZ_SMOKE_SECONDS) -1 $(FUZZ_TARGETS)

# The unit tests under AddressSanitizer / ThreadSanitizer (root, as `make unit-test`).
test-asan:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build --build-tests --sanitize=address --scratch-path $(ASAN_SCRATCH)
	LSAN_OPTIONS="suppressions=$(abspath Tests/lsan.supp) $(LSAN_OPTIONS)" \
	  $(SWIFT) test --skip-build --sanitize=address --scratch-path $(ASAN_SCRATCH)

test-tsan:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path $(TSAN_SCRATCH)
	$(SWIFT) test --skip-build --sanitize=thread --scratch-path $(TSAN_SCRATCH)
