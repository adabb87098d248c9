# hookline's two entry points: `make demo` runs it end to end on this machine,
# `make test` runs every test. Both install what is missing first.

VENV := .venv
# Pinned: the emulator and the reference verifiers the tests and demo rely on.
MOTO_VERSION := 5.2.1
STANDARDWEBHOOKS_VERSION := 1.1.0
SVIX_VERSION := 2.9.1
# The API fuzzer the tests run against the OpenAPI document. pytest, which it
# requires, is held at the last release whose `packaging` bound admits checkov's
# (`packaging<24`, infra/infra.mk), so both live in one venv.
SCHEMATHESIS_VERSION := 4.32.5
PYTEST_VERSION := 9.1.1

# moto_server from the venv is found by `hookline dev` and the tests.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup fuzz-tools browser build build-tests test bench bench-faults bench-calls bench-cpu demo lint fmt clean

# Package installs need root: sudo only when not root already.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

setup: $(VENV)/.ready

$(VENV)/.ready:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		'moto[server]==$(MOTO_VERSION)' \
		standardwebhooks==$(STANDARDWEBHOOKS_VERSION) \
		svix==$(SVIX_VERSION)
	touch $@

# Headless Chromium and its WebDriver, from Debian's packages, for the portal's browser test.
browser: /usr/bin/chromedriver

/usr/bin/chromedriver:
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver

fuzz-tools: $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)

$(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION): $(VENV)/.ready
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		schemathesis==$(SCHEMATHESIS_VERSION) pytest==$(PYTEST_VERSION)
	touch $@

build:
	cargo build --workspace --bins

# End-to-end tests run the debug binaries, so they are built first, together with
# the tests: the tests' dependencies turn on more features of shared crates, and
# one build with them all compiles each crate once rather than twice.
build-tests:
	cargo build --workspace --bins --tests

test: setup fuzz-tools browser build-tests lint-infra
	cargo test --workspace

# Benchmarks print their figures; each is an ignored test, named here.
bench: setup build-tests
	cargo test -p hookline-api --test recovery -- --ignored --nocapture recover_of_ten_thousand
	$(MAKE) bench-faults
	$(MAKE) bench-calls
	$(MAKE) bench-cpu

# The fault test at 2,000 events (AWS failing a tenth of its calls).
bench-faults: setup build-tests
	cargo test -p hookline-tests --test faults -- --ignored --nocapture benchmark_2000

# AWS calls per event, delivery, failed attempt and replayed job; prints the tables in docs/cost.md.
bench-calls: setup build-tests
	cargo test -p hookline-tests --test calls -- --ignored --nocapture

# CPU per event and per delivery, cold init and sizes of the release binaries;
# then the CPU of one AWS SDK call by how long its server takes to answer.
bench-cpu: setup build-tests
	cargo build --release --workspace --bins
	cargo test -p hookline-tests --test cpu -- --ignored --nocapture
	cargo run --release -p hookline-shared --example sdk_call_cpu

demo: setup build
	$(VENV)/bin/python scripts/demo.py

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(VENV) .demo

include infra/infra.mk
