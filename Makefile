# slsrelay — the only entry point for CI (.ci/run calls `make test`).
GO        ?= go
PKGS      ?= ./...
RACE      ?= -race
TIMEOUT   ?= 12m
CPU       ?=
FUZZTIME  ?= 30s
SHORTFUZZ ?= 3s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
BIN       := bin/slsrelay

.PHONY: all build test demo bench fuzz lint clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/slsrelay

test: build
	$(GO) vet $(PKGS)
	SLSRELAY_BIN=$(CURDIR)/$(BIN) $(GO) test $(RACE) -timeout $(TIMEOUT) $(if $(CPU),-cpu $(CPU)) $(PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(SHORTFUZZ)

demo: build
	./$(BIN) demo

bench: build
	SLSRELAY_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(PKGS)

# Every fuzz target, FUZZTIME each (go test -fuzz takes one target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed; skipped"; fi

clean:
	rm -rf bin
