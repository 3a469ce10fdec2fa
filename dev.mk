# Development targets of this repository, included by the generated Makefile.
# `make create-client ...` here builds the runner first, installs it on PATH with the programs
# it drives, and uses it.

AGENCY ?= $(CURDIR)/target/release/agency
CARGO ?= cargo
# Where `build` installs the binary (messages say "run agency ...").
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
# Debian packages of the programs agency drives, and a program each provides.
RUNTIME_PACKAGES := restic:restic logrotate:logrotate nftables:nft docker-compose:docker-compose docker.io:docker
# Searched besides PATH: a user's PATH lacks the sbin dirs that hold logrotate and nft.
SBIN_PATH ?= /usr/sbin:/sbin

$(AGENCY_TASKS) help: build

.PHONY: build compile install runtime-packages test makefile

build: install runtime-packages

# The first build takes minutes: cargo's progress on a terminal, one line otherwise.
compile:
	@if [ -t 2 ]; then \
	    $(CARGO) build --release; \
	else \
	    [ -x target/release/agency ] || echo "building agency, first run (cargo build --release, a few minutes)"; \
	    $(CARGO) build --release --quiet; \
	fi

install: compile
	@if ! cmp -s target/release/agency "$(BINDIR)/agency"; then \
	    if install -D -m 0755 target/release/agency "$(BINDIR)/agency" 2>/dev/null; then \
	        echo "installed $(BINDIR)/agency"; \
	    else \
	        echo "agency is not on PATH: install it with: sudo install -m 0755 $(CURDIR)/target/release/agency $(BINDIR)/agency"; \
	    fi; \
	fi

# Missing programs: installed with apt-get when root, else the one command to run.
runtime-packages:
	@missing=""; \
	for entry in $(RUNTIME_PACKAGES); do \
	    package=$${entry%%:*}; program=$${entry#*:}; \
	    if [ "$$program" = docker-compose ] && docker compose version >/dev/null 2>&1; then continue; fi; \
	    PATH="$$PATH:$(SBIN_PATH)" command -v "$$program" >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
	    echo "agency drives programs this machine lacks; install them with: sudo apt-get install$$missing"; \
	fi

# Tests that judge isolation by real packets, or make this engine a Swarm for a while, run
# alone after the rest: every `docker network create` elsewhere briefly lifts the engine's
# isolation between bridges and slows overlay attachment (docs/networks.md), and a Swarm
# test must be the only one to init and leave the Swarm.
QUIET_ENGINE_TESTS := status::two_clients_are_isolated_by_real_packets status::probe_reaches_a_namespace_beyond_the_host networks::overlay_networks_on_a_single_node_swarm swarm::a_site_stack_runs_as_a_swarm_stack_on_overlay_networks

# The README's test command; CI runs it. tests/setup first installs what the tests need
# (as root; otherwise it names the command) and builds the test images once per machine.
test:
	tests/setup
	cargo test --features fault-injection -- --test-threads=8 $(addprefix --skip ,$(QUIET_ENGINE_TESTS))
	cargo test --features fault-injection --test integration -- --test-threads=1 $(QUIET_ENGINE_TESTS)

makefile: build
	$(AGENCY) -C $(CURDIR) --makefile > Makefile
