# vdflat: `make demo` shows it working, `make test` runs every test.
GO       ?= go
FUZZTIME ?= 10000x
SAMPLES  ?= ../shared/samples

.PHONY: all build demo test lint unit cross fuzz deps bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o vdflat .

# Installs what it needs (Debian/Ubuntu, as root), builds, mounts a sample
# image, shows the flattened disk with real tools, and unmounts.
demo: deps build
	./scripts/demo.sh $(SAMPLES)

test: deps lint unit cross fuzz

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 30m ./...

# Static binaries for every supported platform.
cross:
	CGO_ENABLED=0 GOOS=linux   GOARCH=amd64 $(GO) build -trimpath -o dist/vdflat-linux-amd64 .
	CGO_ENABLED=0 GOOS=linux   GOARCH=arm64 $(GO) build -trimpath -o dist/vdflat-linux-arm64 .
	CGO_ENABLED=0 GOOS=freebsd GOARCH=amd64 $(GO) build -trimpath -o dist/vdflat-freebsd-amd64 .

# Every fuzz target for FUZZTIME executions each (a count: see scripts/fuzz.sh).
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

deps:
	./scripts/deps.sh

bench:
	./bench/run.sh

clean:
	rm -rf vdflat dist
