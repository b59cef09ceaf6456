# Secrets Store CSI driver in Swift. `make help` lists the targets.
SHELL := /bin/bash
SWIFT ?= swift
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= debug
BIN := .build/$(CONFIG)/secrets-store-csi-driver

APT_PACKAGES := libuv1-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler \
  libssl-dev openssl libcurl4-openssl-dev libyaml-dev python3-venv python3-h2 nghttp2-client pkg-config util-linux umoci valgrind strace
PY_PACKAGES := grpcio==1.85.3 grpcio-tools==1.85.1 protobuf h2 pytest pyyaml jsonschema

.PHONY: help deps build release image-rootfs test unit-test integration-test protos protos-check manifests manifests-check demo bench bench-rtt bench-rtt-run chaos chaos-quick bench-rotation clean callgrind pair-cost hot-symbols

help:
	@echo "make deps              install Debian packages and the Python test virtualenv (idempotent)"
	@echo "make build             debug build of the driver and tests"
	@echo "make release           release build"
	@echo "make test              everything CI runs: protos check, unit tests, integration tests, fuzz smoke pass"
	@echo "make protos            regenerate the protoc-c code from Protos/"
	@echo "make manifests         regenerate the operator's embedded templates from deploy/"
	@echo "make image-rootfs      the runtime image as a rootfs tree and an OCI layout tarball (.build/image), no container engine"
	@echo "make demo              publish, rotate and remove a secrets volume end to end (reference provider, no cluster)"
	@echo "make bench             the standard load scenarios (csi-load, release build) and unary RTT: pass/fail, .build/bench/report.html"
	@echo "                       BENCH_BASELINE=dir compares with an earlier run, BENCH_ONLY=a-c1,b-burst250 picks scenarios,"
	@echo "                       fails when a target is missed unless BENCH_NO_FAIL=1"
	@echo "make chaos             the chaos run (release build): >= 10 000 publishes and unpublishes while the driver and the"
	@echo "                       provider are SIGKILLed, answers come late and hostile; counts what went wrong (CHAOS_ARGS=...)"
	@echo "make chaos-quick       the same, short, on the debug build (what Tests/integration/test_chaos.py runs)"
	@echo "make bench-rtt         unary RTT only (NodeGetInfo over a unix socket, csi-bench and h2load)"
	@echo "make bench-rotation    rotation by the timer at node scale (Benchmarks/rotation.py, release build, ~10 min):"
	@echo "                       1 000 volumes on a 2 min interval, coalescing off and on side by side: provider calls"
	@echo "                       per interval, driver CPU, change propagation, on-demand refresh, 250-pod burst p99"
	@echo "                       while refreshing; ROTATION_ARGS=--quick for a short run"
	@echo "make callgrind         instructions per publish+unpublish pair (release driver under valgrind's callgrind),"
	@echo "                       top functions; PAIR_COST_ARGS adds options (Benchmarks/pair_cost.py)"
	@echo "make pair-cost         the driver's CPU time per publish+unpublish pair and its system calls per pair (strace)"
	@echo "make hot-symbols       regenerate the release driver's link order (the functions a node runs, first;"
	@echo "                       Benchmarks/hot_symbols.py under callgrind), then make release relinks with it"
	@echo "make kube-control-plane  build kube-apiserver and kube-controller-manager v1.20.2 (Debian source) and install"
	@echo "                       etcd, for Tests/integration/test_real_kube.py; cached in KUBE_CACHE_DIR, slow only once"
	@echo "make fuzz              every fuzz target (Fuzz/) until FUZZ_RUNS executions or FUZZ_SECONDS; a table of executions"
	@echo "make fuzz-smoke        a short pass of every fuzz target, replaying the committed seeds"
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
	@# A real kube-apiserver and kube-controller-manager for the tests that use them (minutes on a
	@# fresh machine, cached after): a failed build only makes those tests skip, with the reason.
	@if [ "$(KUBE_CONTROL_PLANE)" != 0 ]; then \
	  nice ./scripts/build-kube-control-plane.sh $(KUBE_CACHE_DIR) >/tmp/sscd-kube-build.log 2>&1 \
	    || echo "warning: building the real Kubernetes control plane failed (see /tmp/sscd-kube-build.log); tests that need it will be skipped"; \
	fi

# Every target that builds stamps the version first (scripts/stamp-version.sh).
build:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build -c $(CONFIG)

# The Swift runtime linked statically (-static-stdlib): measured with 1 000 live volumes,
# 24.1 MiB resident instead of 26.1, idle 21.1 instead of 22.5 (docs/performance.md).
RELEASE_FLAGS ?= --static-swift-stdlib

release:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build -c release $(RELEASE_FLAGS)

protos:
	./scripts/gen-protos.sh Sources/CProtobufC

# Fails when the committed protoc-c output differs from what Protos/ generates.
protos-check:
	@tmp=$$(mktemp -d); ./scripts/gen-protos.sh $$tmp >/dev/null; \
	for f in $$tmp/*.c $$tmp/include/*.h; do \
	  rel=$${f#$$tmp/}; cmp -s $$f Sources/CProtobufC/$$rel || { echo "stale generated file: Sources/CProtobufC/$$rel (run make protos)"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "protoc-c output is up to date"

manifests:
	./scripts/gen-operator-manifests.sh

# Fails when the operator's embedded templates differ from deploy/ (one source of truth).
manifests-check:
	@tmp=$$(mktemp); ./scripts/gen-operator-manifests.sh $$tmp; \
	cmp -s $$tmp Sources/OperatorCore/Manifests.generated.swift || { echo "stale generated file: Sources/OperatorCore/Manifests.generated.swift (run make manifests)"; rm -f $$tmp; exit 1; }; \
	rm -f $$tmp; echo "operator manifests are up to date"

unit-test:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build --build-tests
	@# A hang must fail the run, not hold CI: the whole suite takes well under a minute.
	timeout --kill-after=10 900 $(SWIFT) test --skip-build

integration-test: build
	DRIVER_BIN=$(abspath $(BIN)) REFERENCE_PROVIDER_BIN=$(abspath .build/$(CONFIG)/csi-reference-provider) \
	  LOAD_BIN=$(abspath .build/$(CONFIG)/csi-load) OPERATOR_BIN=$(abspath .build/$(CONFIG)/secrets-store-csi-driver-operator) \
	  timeout --kill-after=10 2400 $(PY) -m pytest -q Tests/integration

# The fuzz smoke pass comes last: a crash in any target (or a committed seed that crashes)
# fails the run. Its sanitized build is a package of its own in .build-fuzz.
test: deps protos-check manifests-check unit-test integration-test fuzz-smoke

IMAGE_OUT ?= .build/image

# The runtime image without a container engine: the release binary, its shared libraries
# and CA certificates as a rootfs tree, a rootfs tarball and an OCI image layout tarball
# (umoci), in $(IMAGE_OUT). deploy/Containerfile builds the same tree with podman/docker.
image-rootfs: deps release
	./scripts/image-rootfs.sh .build/release/secrets-store-csi-driver $(IMAGE_OUT) .build/release/secrets-store-csi-driver-operator

demo: deps build
	$(PY) scripts/demo.py --driver $(abspath $(BIN)) --provider $(abspath .build/$(CONFIG)/csi-reference-provider)

BENCH_OUT ?= .build/bench
BENCH_BASELINE ?=
BENCH_ONLY ?=
BENCH_NO_FAIL ?=

# Standard scenarios (Benchmarks/bench.py) then unary RTT. A missed target (errors and
# unverified volumes included) fails the target after the RTT run, unless BENCH_NO_FAIL=1.
bench: deps release
	@rc=0; $(PY) Benchmarks/bench.py --bin-dir $(abspath .build/release) --out-dir $(abspath $(BENCH_OUT)) \
	  $(if $(BENCH_BASELINE),--baseline $(abspath $(BENCH_BASELINE))) $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) \
	  $(if $(BENCH_NO_FAIL),--no-fail) || rc=$$?; \
	$(MAKE) --no-print-directory bench-rtt-run || { [ $$rc -ne 0 ] || rc=1; }; \
	exit $$rc

CHAOS_OUT ?= .build/chaos
CHAOS_ARGS ?=

# Benchmarks/chaos.py: fails when any count (wrong volumes, files outside targets, targets or
# mounts left, unexplained failures) is above 0. Results in $(CHAOS_OUT)/chaos.json.
chaos: deps release
	@mkdir -p $(CHAOS_OUT)
	$(PY) Benchmarks/chaos.py --out $(abspath $(CHAOS_OUT))/chaos.json $(CHAOS_ARGS)

chaos-quick: deps build
	@mkdir -p $(CHAOS_OUT)
	$(PY) Benchmarks/chaos.py --quick --out $(abspath $(CHAOS_OUT))/chaos-quick.json $(CHAOS_ARGS)

bench-rtt: deps release bench-rtt-run

ROTATION_ARGS ?=

bench-rotation: deps release
	$(PY) Benchmarks/rotation.py --bin-dir $(abspath .build/release) --out-dir $(abspath $(BENCH_OUT))/rotation $(ROTATION_ARGS)

# What one publish+unpublish pair costs the driver (Benchmarks/pair_cost.py). callgrind counts
# instructions, which do not depend on the machine's load: the number to quote for a change.
PAIR_COST_ARGS ?=
callgrind: release
	@command -v valgrind >/dev/null || { echo "make callgrind: needs valgrind (apt-get install valgrind)"; exit 1; }
	$(PY) Benchmarks/pair_cost.py --bin-dir $(abspath .build/release) --mode callgrind --keep-dir $(abspath $(BENCH_OUT))/callgrind $(PAIR_COST_ARGS)

pair-cost: release
	$(PY) Benchmarks/pair_cost.py --bin-dir $(abspath .build/release) --mode cpu $(PAIR_COST_ARGS)
	@if command -v strace >/dev/null; then $(PY) Benchmarks/pair_cost.py --bin-dir $(abspath .build/release) --mode strace $(PAIR_COST_ARGS); \
	else echo "make pair-cost: strace is not installed, no system call counts"; fi

# The release driver's link order: the functions a node-like run executes, placed first so
# that less of its code is resident (Package.swift, docs/performance.md).
hot-symbols: release
	@command -v valgrind >/dev/null || { echo "make hot-symbols: needs valgrind (apt-get install valgrind)"; exit 1; }
	$(PY) Benchmarks/hot_symbols.py --bin-dir $(abspath .build/release)

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

# A real control plane for the tests (Tests/integration/real_kube.py). The binaries are cached
# outside the repository, so only a fresh machine pays for the build (minutes); a cached run
# returns at once. Needs root for apt-get.
KUBE_CACHE_DIR ?= /var/cache/secrets-store-csi-driver/kube-v1.20.2
# KUBE_CONTROL_PLANE=0 skips building it in `make deps`.
KUBE_CONTROL_PLANE ?= 1
.PHONY: kube-control-plane
kube-control-plane:
	./scripts/build-kube-control-plane.sh $(KUBE_CACHE_DIR)

clean:
	rm -rf .build $(VENV)

# Fuzzing (libFuzzer): a package of its own in Fuzz/, built with -sanitize=fuzzer,address in
# .build-fuzz (release, every module instrumented). `make fuzz` runs each target until
# FUZZ_RUNS executions or FUZZ_SECONDS, whichever comes first, and prints executions per
# target; `make fuzz-smoke` runs a short pass of each that also replays every committed
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

# The unit tests under AddressSanitizer / ThreadSanitizer (root, as `make unit-test`). Reports
# that are not ours to fix are suppressed, each with its reason, in Tests/lsan.supp and Tests/tsan.supp.
test-asan:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build --build-tests --sanitize=address --scratch-path $(ASAN_SCRATCH)
	LSAN_OPTIONS="suppressions=$(abspath Tests/lsan.supp) $(LSAN_OPTIONS)" \
	  $(SWIFT) test --skip-build --sanitize=address --scratch-path $(ASAN_SCRATCH)

test-tsan:
	@./scripts/stamp-version.sh >/dev/null
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path $(TSAN_SCRATCH)
	TSAN_OPTIONS="suppressions=$(abspath Tests/tsan.supp) $(TSAN_OPTIONS)" \
	  $(SWIFT) test --skip-build --sanitize=thread --scratch-path $(TSAN_SCRATCH)
