# reprise — make help lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
TOOLS := $(CURDIR)/bin/tools

# Pinned code generators for `make proto`.
BUF_VERSION                   := v1.75.0
PROTOC_GEN_GO_VERSION         := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION    := v1.6.2
# The vtprotobuf runtime version grpc already requires (go.mod): a lower one
# would make `go get` downgrade grpc.
PROTOC_GEN_GO_VTPROTO_VERSION := v0.6.1-0.20240319094008-0393e58bdf10

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/agent, bin/collector, bin/replayer
	$(GO) build -o $(BIN)/agent ./agent
	$(GO) build -o $(BIN)/collector ./collector
	$(GO) build -o $(BIN)/replayer ./replayer

.PHONY: generate
generate: ## Rebuild the eBPF objects and their Go bindings with clang (bpf2go)
	$(GO) generate ./bpf/...

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(TOOLS)/protoc-gen-go-vtproto:
	GOBIN=$(TOOLS) $(GO) install github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@$(PROTOC_GEN_GO_VTPROTO_VERSION)

.PHONY: proto
proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go-vtproto ## Lint the protobuf API and regenerate its Go code
	cd proto && $(TOOLS)/buf lint && $(TOOLS)/buf generate

.PHONY: check-generated
check-generated: generate proto ## Fail if generated code differs from what is committed
	@git diff --exit-code --stat -- bpf proto || { echo "generated code is stale: run make generate proto and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- bpf proto); \
	  if [ -n "$$untracked" ]; then echo "untracked generated files: $$untracked"; exit 1; fi

.PHONY: deps
deps: ## Install the Debian packages the demo and the tests use, if missing (root)
	@./scripts/deps.sh

.PHONY: test
test: deps ## Run every test with -race (privileged capture tests need root)
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: test-privileged
test-privileged: deps ## Run only the tests that load eBPF programs (root)
	REPRISE_REQUIRE_PRIVILEGED=1 $(GO) test -race -count=1 -timeout 10m ./agent/capture/ ./agent/pipeline/ ./agent/fidelity/

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 30s)
	./scripts/fuzz.sh

.PHONY: bench
bench: ## Run the Go benchmarks
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-capture
bench-capture: ## Throughput, latency, CPU and completeness with and without the agent (root; wrk)
	./scripts/bench-capture.sh

.PHONY: bench-collector
bench-collector: ## Ingest rate, sanitizer throughput and query latency of the embedded store
	./scripts/bench-collector.sh

.PHONY: bench-postgres
bench-postgres: ## Ingest rate into PostgreSQL with one and two collectors, against SQLite (postgresql)
	./scripts/bench-postgres.sh

.PHONY: bench-replay
bench-replay: ## Replay throughput and rate accuracy, compared with vegeta
	./scripts/bench-replay.sh

.PHONY: lint
lint: $(TOOLS)/buf ## gofmt, go vet and buf lint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd proto && $(TOOLS)/buf lint

.PHONY: images
images: deps ## Build the reprise/agent, collector and replayer images with no registry (root; starts dockerd if needed; TAG=latest)
	./deploy/image/images.sh

.PHONY: demo
demo: deps ## Capture, store, query and replay on this machine (root)
	./scripts/demo.sh

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN) .demo
