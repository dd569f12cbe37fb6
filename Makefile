# dmarc-milter — build, test, benchmark, fuzz.
# `make test` is the one command that runs every test (README, .ci/run).

GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 30s
BENCHTIME ?= 1s
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build run test deps check fmt-check fmt vet unit fuzz fuzz-smoke bench loadbench compare reportcost soak check-rfc clean
.PHONY: deb release man screenshots webbench

all: build

## build: the static binary (pure Go: CGO off, as in the .deb).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/dmarc-milter ./cmd/dmarc-milter

run: build
	./bin/dmarc-milter serve

## test: installs the test bed's Debian packages (as root), then formatting, vet, every test
## (unit and integration against a real Postfix) under the race detector, and a short fuzz smoke.
test: deps check fuzz-smoke unit

## deps: install what the tests need (Postfix, Dovecot, ...) from Debian's packages when root.
deps:
	@if [ -x scripts/install-deps.sh ]; then scripts/install-deps.sh; fi

check: fmt-check vet check-rfc

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -shuffle=on -count=1 -timeout 15m $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## fuzz: run every fuzz target for FUZZTIME each (make fuzz FUZZTIME=5m).
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

## fuzz-smoke: every fuzz target for a few seconds (part of make test).
fuzz-smoke:
	@./scripts/fuzz.sh 3s

## bench: every Go benchmark with allocations.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

## loadbench: dmarc-milter alone under cmd/milterbench, 1 and 4 messages per session (no root, about 2 min).
loadbench:
	bench/loadbench.sh

## compare: side by side with OpenDKIM+OpenDMARC, 1 and 4 messages per session (root; installs the peers; about 20 min; not in CI).
compare:
	bench/compare.sh

## reportcost: CPU per message with report recording on vs off, alternated (about 6 min; not in CI).
reportcost:
	bench/reportcost.sh

## soak: 32 concurrent sessions for DURATION (default 10m; not in CI).
soak:
	scripts/soak.sh

## screenshots: the dashboard's screenshots in docs/img/ (headless chromium; by hand, not in CI).
screenshots:
	scripts/screenshots.sh

## webbench: dashboard page times over a year of generated data, SQLite and PostgreSQL (long; not in CI).
webbench:
	scripts/webbench.sh

## check-rfc: every RFC section cited in the code has a row in docs/standards.md.
check-rfc:
	scripts/check-rfc.sh

## deb: dist/dmarc-milter_VERSION_amd64.deb, reproducibly (docs/install.md).
deb:
	scripts/build-deb.sh amd64

## release: static linux/amd64 and linux/arm64 binaries, their .debs and SHA256SUMS in dist/.
release:
	scripts/release.sh

## man: regenerate docs/man/ and packaging/debian/dmarc-milter.toml (tests fail when they are stale).
man:
	$(GO) test -count=1 -run '^TestManPage$$' ./cmd/dmarc-milter -update
	$(GO) test -count=1 -run '^TestManPageAndPackagedConfig$$' ./internal/config -update

clean:
	rm -rf bin
