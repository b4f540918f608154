# fedprop's build. Every target works on a fresh clone with Go 1.26; `make proto` also needs
# Debian's protobuf-compiler (`apt-get install protobuf-compiler`).

GO        ?= go
BIN       := bin/fedprop
TOOLBIN   := $(CURDIR)/.tools
PROTO_DIR := proto/fedprop/v1
BENCHTIME ?= 1s
FUZZTIME  ?= 30s
DEMO_OUT  ?= out/demo

.PHONY: all build test vet fmt-check demo proto proto-check bench lint fuzz clean

all: build

## build: the single static fedprop binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/fedprop

## test: vet, formatting and the whole test suite under the race detector
test: vet fmt-check
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## demo: the simulator on the built-in synthetic bank data (no server to install)
demo: build
	$(BIN) sim --config configs/sim-synthetic.yaml --out $(DEMO_OUT)

## proto: regenerate the committed gRPC code with protoc and the plugins pinned in go.mod
proto:
	@mkdir -p $(TOOLBIN)
	$(GO) build -o $(TOOLBIN)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
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

## lint: go vet plus formatting (staticcheck and gosec join with the security issue)
lint: vet fmt-check

## fuzz: every fuzz target for FUZZTIME each
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$t"; \
			$(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin $(TOOLBIN) out
