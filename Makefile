# privnix build, test and run targets. `make` builds every binary into bin/.
GO      ?= go
BIN     ?= $(CURDIR)/bin
CMDS    := $(notdir $(wildcard cmd/*))
# The children confine themselves with syscall.AllThreadsSyscall, which a cgo
# binary cannot use: they are built without cgo. privnixd and privnix need cgo
# to resolve users and groups through the system's NSS (LDAP, SSSD).
CHILDREN := $(filter privnix-frontend privnix-storeproc privnix-build privnix-fetch,$(CMDS))
PREFIX  ?= /usr/local
LIBEXEC ?= $(PREFIX)/libexec/privnix
# Where `make run` keeps its private store.
RUNDIR  ?= $(CURDIR)/run

.PHONY: all build test test-unit lint check-deps run install install-units fuzz bench clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=1 $(GO) build -trimpath -o $(BIN)/ ./cmd/privnixd ./cmd/privnix
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ $(addprefix ./cmd/,$(CHILDREN))

# Everything: unit, fuzz seeds, integration with the real Nix client. Needs root
# (tests start the monitor as root and run clients as the test users).
test: build
	scripts/setup-test-host.sh
	PRIVNIX_BIN=$(BIN) $(GO) test -count=1 -timeout 14m -p 2 ./...

test-unit:
	$(GO) test -short ./...

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

# Regenerates the checked-in dependency manifests (cmd/*/deps.txt) after a
# reviewed change; test/deps fails while they differ from the build.
check-deps:
	PRIVNIX_UPDATE_DEPS=1 $(GO) test -count=1 ./test/deps
	git diff --stat -- 'cmd/*/deps.txt'

# Runs privnixd in the foreground on a private store under $(RUNDIR).
run: build
	scripts/run-private.sh $(BIN) $(RUNDIR)

install: build
	install -d -m 0755 $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(LIBEXEC)
	install -m 0755 $(BIN)/privnixd $(BIN)/privnix $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(filter-out $(BIN)/privnixd $(BIN)/privnix,$(addprefix $(BIN)/,$(CMDS))) $(DESTDIR)$(LIBEXEC)/
	$(MAKE) install-units

UNITDIR ?= /etc/systemd/system
install-units:
	UNITDIR=$(UNITDIR) DESTDIR=$(DESTDIR) systemd/install.sh

FUZZTIME ?= 30s
fuzz:
	scripts/fuzz-all.sh $(FUZZTIME)

bench: build
	scripts/bench.sh

clean:
	rm -rf $(BIN)
