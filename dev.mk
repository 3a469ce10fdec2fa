# Development targets of this repository, included by the generated Makefile.
# `make create-client ...` here builds the runner first and uses it.

AGENCY ?= $(CURDIR)/target/release/agency

$(AGENCY_TASKS): build

.PHONY: build test makefile

build:
	@cargo build --release --quiet

# The README's test command; CI runs it.
test:
	cargo test --features fault-injection -- --test-threads=8

makefile: build
	$(AGENCY) -C $(CURDIR) --makefile > Makefile
