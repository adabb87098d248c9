# Infrastructure targets, included by the top-level Makefile (which defines
# VENV and the $(VENV)/.ready stamp that creates the virtualenv).
#
#   make lint-infra   cfn-lint and checkov on infra/template.yaml
#   make package      arm64 Lambda zips of the five functions in target/lambda/
#   make lambda-sizes the zips' sizes; fails when one is over MAX_ZIP_BYTES

# Pinned so that a new rule in either linter cannot fail a build unannounced.
CFN_LINT_VERSION := 1.58.0
CHECKOV_VERSION := 3.3.30
CARGO_LAMBDA_VERSION := 1.9.2
# The newest Zig the pinned cargo-lambda (cargo-zigbuild 0.23) is built for.
ZIGLANG_VERSION := 0.15.2

INFRA_TEMPLATE := infra/template.yaml
LAMBDA_BINARIES := ingest api dispatcher replay scheduler
LAMBDA_TARGET := aarch64-unknown-linux-gnu
LAMBDA_DIR := target/lambda
# Each zip is held to 4 MB: a small package keeps a cold start's download short.
MAX_ZIP_BYTES := 4000000

.PHONY: lint-infra package lambda-sizes

$(VENV)/.infra-tools: $(VENV)/.ready
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		cfn-lint==$(CFN_LINT_VERSION) checkov==$(CHECKOV_VERSION)
	touch $@

# --skip-download: checkov otherwise fetches guideline links from its vendor's
# service, which is unreachable offline and changes nothing in the verdict.
lint-infra: $(VENV)/.infra-tools
	$(VENV)/bin/cfn-lint $(INFRA_TEMPLATE)
	$(VENV)/bin/checkov -f $(INFRA_TEMPLATE) --framework cloudformation \
		--quiet --compact --skip-download

# cargo-lambda cross-compiles with Zig. It finds Zig as `python3 -m ziglang`
# through PATH, so the venv's bin/ (whose python3 has ziglang) goes first.
package: $(VENV)/.ready
	@command -v cargo-lambda >/dev/null 2>&1 || \
		cargo install cargo-lambda --version $(CARGO_LAMBDA_VERSION) --locked
	$(VENV)/bin/pip install --quiet --disable-pip-version-check ziglang==$(ZIGLANG_VERSION)
	rustup target add $(LAMBDA_TARGET)
	PATH="$(abspath $(VENV))/bin:$$PATH" cargo lambda build --release --arm64 \
		--output-format zip --lambda-dir $(LAMBDA_DIR) \
		$(addprefix --bin ,$(LAMBDA_BINARIES))
	@$(MAKE) --no-print-directory lambda-sizes

lambda-sizes:
	@over=0; for bin in $(LAMBDA_BINARIES); do \
		zip="$(LAMBDA_DIR)/$$bin/bootstrap.zip"; \
		bytes=$$(wc -c < "$$zip") || exit 1; \
		printf '%-11s %8s bytes  %s\n' "$$bin" "$$bytes" "$$zip"; \
		if [ "$$bytes" -gt $(MAX_ZIP_BYTES) ]; then \
			echo "$$zip is over $(MAX_ZIP_BYTES) bytes" >&2; over=1; \
		fi; \
	done; exit $$over
