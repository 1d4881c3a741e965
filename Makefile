# orch's build. Only a Go toolchain (see go.mod) is needed: every other tool
# a target uses is either part of it or installed by the target itself.

GO       ?= go
BIN      := bin/orch
FUZZTIME ?= 20s
# A bound on a hung test binary, not a measure of speed: cmd/orch, the
# longest package, takes 6-8 minutes alone on a machine that starts a
# process in 2.5 ms, and more than 15 beside stress-ng on both cores
# (make test-busy), which a 15-minute bound failed.
TEST_TIMEOUT ?= 30m
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

# The race detector needs cgo; without a C compiler the tests still run,
# without it, and say so.
RACE := $(if $(filter 1,$(shell $(GO) env CGO_ENABLED 2>/dev/null)),-race,)

.PHONY: all build deps test test-busy soak bench bench-scale fuzz run modules plugins generate docs fmt clean check-go

all: build

check-go:
	@command -v $(GO) >/dev/null 2>&1 || { echo "make: Go is required (https://go.dev/dl/), version $$(sed -n 's/^go //p' go.mod) or later" >&2; exit 1; }

build: check-go
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/orch

# What the tests use from Debian, installed when a command of it is missing
# (each entry is command:package). Add a line when a test needs a new one.
DEB_PACKAGES := \
	dig:dnsutils \
	wrk:wrk \
	etcd:etcd-server \
	etcdctl:etcd-client \
	promtool:prometheus \
	debootstrap:debootstrap \
	avahi-browse:avahi-utils \
	strace:strace \
	tmux:tmux \
	ip:iproute2 \
	chromium:chromium \
	nginx:nginx \
	redis-server:redis-server \
	redis-cli:redis-tools \
	pg_ctlcluster:postgresql \
	psql:postgresql-client \
	python3:python3 \
	dnsperf:dnsperf \
	bpftrace:bpftrace \
	dnsmasq:dnsmasq-base

deps:
	@missing=""; for e in $(DEB_PACKAGES); do \
		command -v $${e%%:*} >/dev/null 2>&1 || missing="$$missing $${e#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make: installing Debian packages the tests use:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# providers/process/execwrap is a module of its own (its import path
# decides when its init runs; its package comment says why): ./... of the
# main module does not reach it, so it is vetted and tested too.
test: check-go deps
	$(GO) vet ./...
	cd providers/process/execwrap && $(GO) vet ./... && $(GO) test -count=1 ./...
	@if [ -z "$(RACE)" ]; then echo "make: cgo is unavailable (no C compiler): testing without -race" >&2; fi
	$(GO) test $(RACE) -count=1 -timeout $(TEST_TIMEOUT) ./...

# Benchmarks, then every fuzz target for $(FUZZTIME) each. The scale
# benchmarks (cmd/orch BenchmarkScale: create, plan, change and destroy of
# 1,000 sleep daemons through the built binary, against terraform's plans
# of 1,000 terraform_data when terraform is on PATH) run at 10,000 too with
# ORCH_BENCH_10K=1 (several minutes): make bench ORCH_BENCH_10K=1, or only
# them: make bench-scale ORCH_BENCH_10K=1 (or ORCH_BENCH_SCALE=1000,5000).
# cmd/orch BenchmarkUpStopVsProcessCompose compares orch up with
# process-compose when one is on PATH or named by ORCH_BENCH_PROCESS_COMPOSE
# (docs/architecture.md, Numbers, says how it was built here);
# ORCH_BENCH_STOP_PARTS=1 also splits each stop at its last daemon's exit;
# ORCH_BENCH_NO_CGROUP=1 also measures orch where it can write no cgroup.
bench: check-go
	ORCH_BENCH_10K=$(ORCH_BENCH_10K) $(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...
	@$(MAKE) --no-print-directory fuzz

# The fault tests at the size of their issue (18): orch apply of 200
# daemons SIGKILLed at each step of a start and at random moments, and
# orch up SIGKILLed in 10 reloads of them (make test runs 60 daemons and 4
# reloads).
soak: check-go
	ORCH_SOAK=1 ORCH_KILL_ROUNDS=10 $(GO) test -count=1 -timeout 60m -run 'KilledMidStart|KilledDuringReload' -v ./cmd/orch

bench-scale: check-go
	ORCH_BENCH_10K=$(ORCH_BENCH_10K) ORCH_BENCH_SCALE=$(ORCH_BENCH_SCALE) $(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 60m -v ./cmd/orch

# Every func FuzzXxx in a *_test.go file, found with grep, one at a time
# (go test -fuzz takes one target in one package).
fuzz: check-go
	@set -e; \
	files=$$(grep -rlE --include='*_test.go' --exclude-dir=.git --exclude-dir=testdata --exclude-dir=bin '^func Fuzz[A-Za-z0-9_]*\(' . || true); \
	if [ -z "$$files" ]; then echo "no fuzz targets"; exit 0; fi; \
	for file in $$files; do \
		dir=$$(dirname "$$file"); \
		for name in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$file"); do \
			echo "==> $$dir $$name ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir"; \
		done; \
	done

# The example configuration end to end: `orch up` in the foreground
# (edit examples/quickstart/main.hcl while it runs; Ctrl-C stops it all).
run: build
	./$(BIN) up examples/quickstart

# The example WebAssembly modules (examples/modules), built with the stock
# toolchain as WASI reactors; `orch up examples/modules` runs them.
MODULES := $(wildcard examples/modules/*/main.go)
modules: check-go
	@for m in $(MODULES); do \
		d=$$(dirname $$m); n=$$(basename $$d); \
		echo "GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o $$d/$$n.wasm ./$$d"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $$d/$$n.wasm ./$$d || exit 1; \
	done

# The example plugins (examples/plugins), native executables served over
# go-plugin; `orch up examples/plugins/provider` runs the provider plugin.
plugins: check-go
	$(GO) build -o examples/plugins/bin/orch-provider-files ./examples/plugins/provider/orch-provider-files
	$(GO) build -o examples/plugins/bin/orch-module-eventlog ./examples/plugins/module/orch-module-eventlog

# Regenerate the plugin protocol's Go code (checked in) from its .proto.
# Needs protoc (Debian: apt-get install -y protobuf-compiler); the two Go
# code generators are installed here, pinned, into bin/tools.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.1
PROTO_DIR          := providers/plugin/proto
generate: check-go
	@command -v protoc >/dev/null 2>&1 || { echo "make: protoc is required (Debian: apt-get install -y protobuf-compiler)" >&2; exit 1; }
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin/tools $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH="$(CURDIR)/bin/tools:$$PATH" protoc -I $(PROTO_DIR) \
		--go_out=$(PROTO_DIR) --go_opt=paths=source_relative \
		--go-grpc_out=$(PROTO_DIR) --go-grpc_opt=paths=source_relative \
		$(PROTO_DIR)/orchplugin.proto

# Man pages, one per command (orch.1, orch-plan.1, ...), generated from the
# commands themselves (cobra/doc) into bin/man; read one with
# man -l bin/man/orch-plan.1, or install them under a MANPATH directory.
# docs/cli.md is written by hand and checked against the commands by the
# tests of cmd/orch.
docs: check-go
	$(GO) run ./cmd/orch/cli/gendocs -out bin/man -version $(VERSION)

fmt: check-go
	$(GO) fmt ./...

clean:
	rm -rf bin

# The whole suite while another process keeps both cores busy, as the
# tests must pass on a loaded machine (stress-ng, from Debian, installed
# when missing). RUNS times in a row.
RUNS ?= 3
test-busy: check-go
	@command -v stress-ng >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq stress-ng; }
	@stress-ng --cpu 2 --timeout 3h --quiet & pid=$$!; \
	trap 'kill $$pid 2>/dev/null' EXIT; \
	for i in $$(seq 1 $(RUNS)); do echo "==> make test under load, run $$i of $(RUNS)"; $(MAKE) --no-print-directory test || exit 1; done
