# vdflat: `make demo` shows it working, `make test` runs every test.
GO       ?= go
FUZZTIME ?= 10000x
SAMPLES  ?= ../shared/samples
PREFIX   ?= /usr/local
DESTDIR  ?=
PLATFORMS = linux/amd64 linux/arm64 freebsd/amd64

.PHONY: all build demo demo-check test lint unit dist dist-check repro install install-check fuzz deps bench clean

all: build

# Static, reproducible: no local paths, no build ID; the commit is recorded.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=auto -ldflags=-buildid= -o vdflat .

# Installs what it needs (Debian/Ubuntu, as root), builds, makes sample
# images, mounts them, shows the flattened disks with real tools, checks
# them against the formats' own tools, and unmounts. Sample images in
# SAMPLES are shown too when that folder exists.
demo: deps build
	./scripts/demo.sh $(SAMPLES)

# The demo as a clone without SAMPLES beside it runs it; its output is
# shown when it fails.
demo-check: build
	mkdir -p build
	./scripts/demo.sh /nonexistent/samples >build/demo.log 2>&1 || { cat build/demo.log; exit 1; }

test: deps lint unit demo-check repro install-check fuzz

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

# Release binaries for every supported platform, with dist/SHA256SUMS.
dist:
	GO=$(GO) ./scripts/dist.sh build dist $(PLATFORMS)

# Every release binary built again from an empty build cache must be
# byte-identical.
dist-check: dist
	GO=$(GO) ./scripts/dist.sh check dist $(PLATFORMS)

# The same for one platform: the others differ only in GOOS/GOARCH, and
# each rebuild from an empty cache costs a full compile.
repro: dist
	GO=$(GO) ./scripts/dist.sh check dist linux/amd64

# The binary, the man page and the completion scripts, all generated from
# the CLI definition.
install: build
	mkdir -p build
	./vdflat man >build/vdflat.1
	./vdflat completion bash >build/vdflat.bash
	./vdflat completion zsh >build/_vdflat
	./vdflat completion fish >build/vdflat.fish
	install -D -m 0755 vdflat $(DESTDIR)$(PREFIX)/bin/vdflat
	install -D -m 0644 build/vdflat.1 $(DESTDIR)$(PREFIX)/share/man/man1/vdflat.1
	install -D -m 0644 build/vdflat.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/vdflat
	install -D -m 0644 build/_vdflat $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_vdflat
	install -D -m 0644 build/vdflat.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/vdflat.fish

install-check:
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	$(MAKE) -s install DESTDIR=$$d PREFIX=/usr && \
	$$d/usr/bin/vdflat --version && \
	man -l $$d/usr/share/man/man1/vdflat.1 | grep -q FlattenedImages && \
	bash -c '. "$$1" && complete -p vdflat' - $$d/usr/share/bash-completion/completions/vdflat && \
	test -s $$d/usr/share/zsh/site-functions/_vdflat && \
	test -s $$d/usr/share/fish/vendor_completions.d/vdflat.fish

# Every fuzz target for FUZZTIME executions each (a count: see scripts/fuzz.sh).
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

deps:
	./scripts/deps.sh

bench:
	./bench/run.sh

clean:
	rm -rf vdflat dist build
