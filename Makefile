# make test  - install everything (apt + .venv), lint, type-check, run the whole test suite
# make lint  - ruff + mypy only (no installs)
# make run   - install runtime deps and start the milter (pass options with ARGS=...)
# make bench - install the benchmarks' tools and run them all (about 10 minutes; see bench/)
# make demo  - install what it needs, then fax a sample mail through the whole loop on this
#              machine and leave both mails as files (scripts/demo; pass options with ARGS=...)
BIN := .venv/bin

.PHONY: test lint run bench demo

test:
	scripts/install-deps --test
	$(MAKE) --no-print-directory lint
	@# pytest exits 5 when it collected nothing: a suite that ran no test must not pass.
	$(BIN)/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: FAILED: pytest collected no tests" >&2; fi; \
	exit $$rc

lint:
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/infra bench

run:
	scripts/install-deps
	$(BIN)/faxmail-milter $(ARGS)

bench:
	bench/install-deps
	bench/run $(ARGS)

demo:
	scripts/install-deps --test
	scripts/asterisk-chroot ensure >/dev/null
	scripts/demo $(ARGS)
