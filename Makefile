# LeadMaster. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0)
DEB_VERSION ?= 0.1.0
LDFLAGS := -s -w -X github.com/leadmaster/leadmaster/internal/version.Version=$(VERSION)
GOFLAGS_BUILD := -trimpath -buildmode=pie -ldflags '$(LDFLAGS)'
BINARIES := central-hub session-manager leadmaster-generator
export CGO_ENABLED := 1

.PHONY: build test unit e2e run demo bench lint deb repo clean help

build: ## Build the daemons and the generator into bin/
	@mkdir -p bin
	$(GO) build $(GOFLAGS_BUILD) -o bin/ $(addprefix ./cmd/,$(BINARIES))

test: ## Run every test: unit and integration (SQLite and a throw-away PostgreSQL), then e2e under systemd (root)
	./scripts/test-deps
	./scripts/with-postgres $(GO) test -race -count=1 -timeout 30m $$($(GO) list ./... | grep -v '/internal/fakewa$$')
	@# whatsmeow's own FrameSocket has a data race between Close and a deferred ack's
	@# SendFrame; the fake server's tests host real clients in-process, so they run without -race.
	$(GO) test -count=1 -timeout 10m ./internal/fakewa/
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) e2e; else echo "make test: not root, e2e under systemd skipped (run as root: sudo make e2e)"; fi

unit: ## Run the Go tests only (no PostgreSQL, no systemd)
	$(GO) test -count=1 ./...

e2e: ## Boot a real systemd in a container, apt install the .deb (built by the script), drive the units (root)
	./packaging/e2e/run

run: ## Run LeadMaster by hand on SQLite under ./var (hub on :3012)
	@./scripts/run

demo: ## Watch QR, link, send, receipt and reply happen against the fake WhatsApp server
	@./scripts/demo

bench: ## Run the benchmarks named in the issues and print the figures
	@./scripts/bench

lint: ## go vet and gofmt
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal)" || { gofmt -l cmd internal; echo "gofmt: files above need formatting"; exit 1; }

deb: ## Build dist/leadmaster_VERSION_ARCH.deb
	./packaging/deb/build $(DEB_VERSION)

repo: deb ## Make a local apt repository in dist/repo from dist/*.deb
	./packaging/deb/mkrepo

clean: ## Remove build output
	rm -rf bin dist build

help: ## List the targets
	@grep -E '^[a-z0-9]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'
