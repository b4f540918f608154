# fedprop's build. Every target works on a fresh clone with Go 1.26; `make proto` also needs
# Debian's protobuf-compiler (`apt-get install protobuf-compiler`).

GO        ?= go
BIN       := bin/fedprop
TOOLBIN   := $(CURDIR)/.tools
PROTO_DIR := proto/fedprop/v1
BENCHTIME ?= 1s
FUZZTIME  ?= 30s
DEMO_OUT  ?= out/demo

.PHONY: all build test vet fmt-check demo tools proto proto-check bench lint fuzz clean

all: build

## build: the single static fedprop binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/fedprop

## test: vet, formatting and the whole test suite under the race detector; it ends with what
## was skipped and why, then a line of counts (internal/testsummary reads go test -json). The
## sim package runs whole simulations (bank-full, 100,000 app clients, he) under the race
## detector: about 12 minutes on 2 cores, past go test's default 10-minute limit.
test: vet fmt-check
	@$(GO) build -o $(TOOLBIN)/testsummary ./internal/testsummary
	bash -o pipefail -c '$(GO) test -race -count=1 -timeout 30m -json ./... 2>&1 | $(TOOLBIN)/testsummary'

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## demo: the simulator on the built-in synthetic bank data (no server to install). It runs the
## simulator package without the full binary's network, CLI and plotting dependencies, so that
## a fresh clone compiles it in well under a minute; `bin/fedprop sim` is the same simulation.
demo:
	$(GO) run ./internal/demo configs/sim-synthetic.yaml $(DEMO_OUT)

## tools: the build tools pinned in tools/go.mod (their own module, so the product's module graph
## holds only what the product runs), built into .tools/
tools:
	@mkdir -p $(TOOLBIN)
	cd tools && $(GO) build -o $(TOOLBIN)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc \
		honnef.co/go/tools/cmd/staticcheck github.com/securego/gosec/v2/cmd/gosec

## proto: regenerate the committed gRPC code with protoc and the plugins pinned in tools/go.mod
proto: tools
	protoc --plugin=protoc-gen-go=$(TOOLBIN)/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(TOOLBIN)/protoc-gen-go-grpc \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		$(PROTO_DIR)/*.proto

## proto-check: fail when the committed generated code differs from what `make proto` makes
proto-check: proto
	@git diff --exit-code -- $(PROTO_DIR) || { echo "generated protobuf code is stale: run make proto and commit"; exit 1; }

## bench: the benchmarks recorded in BENCHMARKS.md
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=$(BENCHTIME) ./...

# gosec exclusions, each with the reason it does not apply. Everything else gosec finds fails
# `make lint`; a finding that is a false positive at one place gets a `#nosec Gxxx -- why`
# comment there instead of a line here.
#   G404        math/rand is used on purpose: seeded, reproducible simulations, cohorts and local
#               training. Secrets (keys, masks, smudging noise, identities) come from crypto/rand.
#   G304, G703  file paths come from the operator (flags and config files), never from the network.
#   G115        the int conversions it reports are of counts, rounds, indices and sizes bounded by
#               config validation and by transport/grpc's checks of every network field, or are
#               deliberate bit-for-bit reinterpretations of seeds.
GOSEC_EXCLUDE := G404,G304,G703,G115
# Exclusions scoped to paths (gosec -exclude-rules, regular expressions on the file path):
#   cmd/fedprop, plot, sim/report.go, sim/sweeptable.go: G301, G306  what the operator asks for (synthetic data, simulation results,
#               plots, pulled models and scores) is written 0755/0644 under the umask, as any
#               command's output; key material and client state are written 0600 explicitly.
#   secagg/persist.go, client/state.go, cmd/fedprop/sim.go: G104  Close on an error path, whose
#               first error is the one returned.
#   coordinator/core.go: G104  hash.Hash.Write, which never returns an error.
GOSEC_EXCLUDE_RULES := .*/cmd/fedprop/.*:G301,G306;.*/sim/report\.go:G301,G306;.*/sim/sweeptable\.go:G301,G306;.*/plot/.*:G301,G306;.*/secagg/persist\.go:G104;.*/client/state\.go:G104;.*/cmd/fedprop/sim\.go:G104;.*/coordinator/core\.go:G104

## lint: go vet, gofmt, staticcheck and gosec (pinned in tools/go.mod), and go.mod tidy
lint: vet fmt-check tools
	$(GO) mod tidy -diff
	cd tools && $(GO) mod tidy -diff
	$(TOOLBIN)/staticcheck ./...
	$(TOOLBIN)/gosec -quiet -exclude-generated -exclude=$(GOSEC_EXCLUDE) -exclude-rules='$(GOSEC_EXCLUDE_RULES)' ./...

## fuzz: list every fuzz target, then run each for FUZZTIME and print the executions per target.
## A crasher is saved under its package's testdata/fuzz/ (commit it: go test then replays it as
## a regression test) and fails the target once every fuzz target has run.
fuzz:
	@set -e; targets=""; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for t in $$($(GO) test -list '^Fuzz' $$dir | grep '^Fuzz'); do targets="$$targets $$dir:$$t"; done; \
	done; \
	echo "fuzz targets ($(FUZZTIME) each):"; for dt in $$targets; do echo "  $$dt"; done; \
	log=$$(mktemp); summary=""; failed=""; \
	for dt in $$targets; do \
		dir=$${dt%%:*}; t=$${dt##*:}; echo "== $$dir $$t"; \
		if $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$dir >$$log 2>&1; then res=ok; else res=FAILED; failed="$$failed $$dt"; fi; \
		tail -n 3 $$log; \
		execs=$$(grep -o 'execs: [0-9]*' $$log | tail -n 1 | cut -d' ' -f2); \
		summary="$$summary$$(printf '%-8s %12s  %s %s' $$res "$${execs:-?}" $$dir $$t)\n"; \
	done; rm -f $$log; \
	printf '\nresult   executions  target\n'; printf "$$summary"; \
	if [ -n "$$failed" ]; then echo "fuzz: crashers found in:$$failed (see testdata/fuzz/ in those packages)"; exit 1; fi

clean:
	rm -rf bin $(TOOLBIN) out

## onnx-runtime: install onnxruntime-node (pinned in release/export/testdata/onnxrt/package-lock.json), the
## ONNX runtime the export tests score exported models with; needs Node.js 20 and npm. Its install
## script only fetches optional GPU binaries, so it is skipped.
.PHONY: onnx-runtime
onnx-runtime:
	cd release/export/testdata/onnxrt && npm ci --ignore-scripts --no-audit --no-fund
