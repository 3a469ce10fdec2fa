# Development targets of this repository, included by the generated Makefile.
# `make create-client ...` here builds the runner first and uses it.

AGENCY ?= $(CURDIR)/target/release/agency

$(AGENCY_TASKS): build

.PHONY: build test makefile

build:
	@cargo build --release --quiet

# Tests that judge isolation by real packets, or attach to a Swarm overlay, run alone after
# the rest: every `docker network create` elsewhere briefly lifts the engine's isolation
# between bridges and slows overlay attachment (docs/networks.md).
QUIET_ENGINE_TESTS := status::two_clients_are_isolated_by_real_packets status::probe_reaches_a_namespace_beyond_the_host networks::overlay_networks_on_a_single_node_swarm

# The README's test command; CI runs it.
test:
	cargo test --features fault-injection -- --test-threads=8 $(addprefix --skip ,$(QUIET_ENGINE_TESTS))
	cargo test --features fault-injection --test integration -- --test-threads=1 $(QUIET_ENGINE_TESTS)

makefile: build
	$(AGENCY) -C $(CURDIR) --makefile > Makefile
