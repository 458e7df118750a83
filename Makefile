# slsrelay — the only entry point for CI (.ci/run calls `make test`).
GO        ?= go
PKGS      ?= ./...
RACE      ?= -race
TIMEOUT   ?= 20m
CPU       ?=
FUZZTIME  ?= 30s
SHORTFUZZ ?= 3s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time, not the clock's: the same commit builds the same binary.
DATE      ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
BIN       := bin/slsrelay
FPBIN     := bin/slsrelay-failpoints
CHAOS_RUN ?= TestChaos
CHAOS_TIMEOUT ?= 90m
CHAOS_REPORT ?= docs/RELIABILITY.md
# Each scenario's last result is kept here; the report merges them, so
# `make chaos CHAOS_RUN=TestChaos_CrashLoop` reruns one scenario and updates
# its row.
CHAOS_ROWS ?= docs/reliability

.PHONY: all build build-failpoints test test-alerts chaos chaos-short demo bench bench-micro fuzz lint vulncheck clean image release third-party

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/slsrelay

# The binary with crash points compiled in (internal/failpoint), for chaos.
build-failpoints:
	$(GO) build -tags failpoints -ldflags "$(LDFLAGS)" -o $(FPBIN) ./cmd/slsrelay

# make test also runs the short version of every fault-campaign scenario
# (TestChaos_*, side by side, a few minutes) against the failpoints binary.
# They run in their own go test without -race: the relay under test is a
# subprocess either way, and the race detector would only slow the
# in-process emulator and receivers. CHAOS_SHORT= (empty) leaves them out.
CHAOS_SHORT ?= 1
test: build $(if $(CHAOS_SHORT),build-failpoints) test-alerts
	$(GO) vet $(PKGS)
	$(GO) -C bench vet ./...
	$(GO) -C deploy vet ./...
	SLSRELAY_BIN=$(CURDIR)/$(BIN) $(GO) test $(RACE) -timeout $(TIMEOUT) $(if $(CPU),-cpu $(CPU)) -skip '^TestChaos_' $(PKGS)
	SLSRELAY_BIN=$(CURDIR)/$(BIN) $(GO) -C bench test $(RACE) -timeout $(TIMEOUT) ./...
	SLSRELAY_BIN=$(CURDIR)/$(BIN) $(GO) -C deploy test -timeout $(TIMEOUT) ./...
	$(if $(CHAOS_SHORT),SLSRELAY_BIN=$(CURDIR)/$(BIN) SLSRELAY_FAILPOINT_BIN=$(CURDIR)/$(FPBIN) $(GO) test -count=1 -timeout $(TIMEOUT) -run '^TestChaos_' ./cmd/slsrelay)
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(SHORTFUZZ)

# The shipped Prometheus alert rules: syntax and behaviour on synthetic
# series (promtool, Debian package prometheus; .ci/run installs it). Without
# promtool this skips with a message, except under CI=true.
test-alerts:
	@if ! command -v promtool >/dev/null; then \
	  if [ "$$CI" = true ]; then echo "test-alerts: promtool not installed (apt-get install prometheus)"; exit 1; fi; \
	  echo "test-alerts: promtool not installed (apt-get install prometheus); alert rules not checked"; exit 0; fi; \
	promtool check rules deploy/prometheus/alerts.yaml && cd deploy/prometheus && promtool test rules alerts_test.yaml

chaos-short: build build-failpoints
	SLSRELAY_BIN=$(CURDIR)/$(BIN) SLSRELAY_FAILPOINT_BIN=$(CURDIR)/$(FPBIN) $(GO) test -count=1 -timeout 30m -run '^TestChaos_' ./cmd/slsrelay

# The full fault campaign (cmd/slsrelay chaos_*_test.go, up to an hour): runs
# every TestChaos_* scenario in full mode, writes $(CHAOS_REPORT) and prints
# its summary line and "chaos: unexpected loss N" last. make test runs the short version of each scenario.
chaos: build-failpoints
	@mkdir -p bin; CHAOS=full CHAOS_REPORT=$(CURDIR)/$(CHAOS_REPORT) CHAOS_ROWS=$(CURDIR)/$(CHAOS_ROWS) SLSRELAY_FAILPOINT_BIN=$(CURDIR)/$(FPBIN) \
	  $(GO) test -count=1 -timeout $(CHAOS_TIMEOUT) -run '$(CHAOS_RUN)' ./cmd/slsrelay > bin/chaos.log 2>&1; st=$$?; \
	  grep -v '^chaos:' bin/chaos.log | tail -n 40; \
	  grep '^chaos:' $(CHAOS_REPORT); exit $$st

demo: build
	./$(BIN) demo

# The seven benchmarks of docs/PERFORMANCE.md (bench/cmd/slsbench, a module
# of its own so that its plotting dependencies stay out of the relay's):
# rewrites the report and its plot and prints the summary line last.
# BENCH_FLAGS adds flags, e.g. '-runs 1 -only e2e'.
BENCH_FLAGS ?=
bench: build
	$(GO) -C bench build -o $(CURDIR)/bin/slsbench ./cmd/slsbench
	bin/slsbench -relay $(CURDIR)/$(BIN) -runs 3 -events 1000000 -report docs/PERFORMANCE.md $(BENCH_FLAGS)

# The packages' go test -bench micro-benchmarks.
bench-micro: build
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
	$(GO) -C bench vet ./...
	$(GO) -C deploy vet ./...
	$(GO) mod tidy -diff
	$(GO) -C bench mod tidy -diff
	$(GO) -C deploy mod tidy -diff
	@if command -v staticcheck >/dev/null; then staticcheck $(PKGS); else echo "staticcheck not installed; skipped"; fi
	@if command -v hadolint >/dev/null; then hadolint Dockerfile; else echo "hadolint not installed; skipped (deploy/ TestDockerfile checks the image's rules)"; fi

# Known vulnerabilities in the code paths the relay calls. Not part of lint:
# govulncheck needs its vulnerability database from the network
# (GOVULNDB, default vuln.go.dev), which not every build machine reaches.
GOVULNCHECK ?= $(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0
vulncheck:
	$(GOVULNCHECK) ./...

# docs/THIRD_PARTY.md, the licences of every module compiled into the
# relay, regenerated from the module graph (deploy/thirdparty_test.go; the
# same test fails in make test when the committed file is stale).
third-party:
	$(GO) -C deploy test -count=1 -run '^TestThirdPartyLicences$$' . -update

# The container image (Dockerfile). CONTAINER=podman works too.
CONTAINER ?= docker
IMAGE     ?= slsrelay:$(VERSION)
image:
	$(CONTAINER) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t $(IMAGE) .

# Release archives in dist/: slsrelay_<version>_linux_<arch>.tar.gz with the
# static binary (version, commit and date stamped in), LICENSE, README,
# docs/THIRD_PARTY.md and the systemd unit; a CycloneDX SBOM of each binary;
# SHA256SUMS over all of them. Reproducible: -trimpath, the commit's date
# (also the SBOM's timestamp), sorted tar entries with fixed owners and
# times, gzip without a time stamp.
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64
DIST      ?= dist
CYCLONEDX ?= $(GO) run github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(RELEASE_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; name=slsrelay_$(VERSION)_$${os}_$${arch}; dir=$(DIST)/$$name; \
	  echo "release $$name"; mkdir -p $$dir; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $$dir/slsrelay ./cmd/slsrelay; \
	  cp LICENSE README.md docs/THIRD_PARTY.md deploy/systemd/slsrelay.service $$dir/; \
	  tar -C $(DIST) --sort=name --owner=0 --group=0 --numeric-owner --mtime='$(DATE)' -cf - $$name | gzip -9n > $(DIST)/$$name.tar.gz; \
	  $(CYCLONEDX) bin -json -noserial -version $(VERSION) -output $(DIST)/$$name.cdx.json $$dir/slsrelay; \
	  sed -i '0,/"timestamp": "[^"]*"/s//"timestamp": "$(DATE)"/' $(DIST)/$$name.cdx.json; \
	  rm -rf $$dir; \
	done
	cd $(DIST) && sha256sum *.tar.gz *.cdx.json > SHA256SUMS && cat SHA256SUMS

clean:
	rm -rf bin $(DIST)
