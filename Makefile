# Needs only python3 and make. Everything else is installed into $(VENV).
#
#   make test                                   # newest SQLAlchemy allowed by pyproject.toml
#   make test VENV=.venv-sa20 EXTRA_REQS='sqlalchemy>=2.0,<2.1'
#   make test PYTEST_ARGS='-x -k history'
#   make check                                  # ruff, mypy, import-linter
#   make conformance                            # SQLAlchemy-Continuum's own test suite
#   make conformance CONFORMANCE_ARGS='--db sqlite -- -k revert'
#   make conformance CONFORMANCE_ARGS='--db postgres-native'   # native versioning
#   make soak                                   # long replay proof + writers (not in CI)
#   make mutation                               # mutation testing of capture/ and read/ (not in CI)
#   make mutation MUTATE=capture/plan.py        # only these modules (or packages: MUTATE=read)

PYTHON ?= python3
VENV ?= .venv
# Extra pip requirement specs, space separated, installed together with '.[dev]'.
EXTRA_REQS ?=
PYTEST_ARGS ?=
CONFORMANCE_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Quote each spec for the shell ('<' and '>' would otherwise be redirections).
QUOTED_REQS := $(foreach req,$(EXTRA_REQS),'$(req)')

.DEFAULT_GOAL := test
.PHONY: install demo test check conformance bench soak mutation clean FORCE

install: $(STAMP)

# Rewritten only when EXTRA_REQS differs from what is recorded, so that its mtime (and so the
# stamp below) changes only then.
$(VENV)/.extra: FORCE
	@mkdir -p $(VENV)
	@printf '%s\n' '$(EXTRA_REQS)' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv -f $@.tmp $@; fi

$(STAMP): pyproject.toml $(VENV)/.extra
	@if [ -f $@ ] && [ $(VENV)/.extra -nt $@ ]; then \
		echo "EXTRA_REQS changed: recreating $(VENV)"; \
		$(PYTHON) -m venv --clear $(VENV) && \
		printf '%s\n' '$(EXTRA_REQS)' > $(VENV)/.extra; \
	else \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]' $(QUOTED_REQS)
	@touch $@

demo: $(STAMP)
	$(BIN)/python -m sqlalchemy_chronicle demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check src tests conformance
	$(BIN)/mypy
	$(BIN)/lint-imports

# Downloads SQLAlchemy-Continuum 2.0.0's sdist and runs its tests, import renamed, on SQLite,
# PostgreSQL and MariaDB (see conformance/run.py).
conformance: $(STAMP)
	$(BIN)/python conformance/run.py $(CONFORMANCE_ARGS)

bench: $(STAMP)
	@if [ -d benchmarks ]; then \
		$(BIN)/python -m pip install --quiet -e '.[dev,bench]' $(QUOTED_REQS) && \
		$(BIN)/python -m benchmarks; \
	else \
		echo "bench: no benchmarks/ directory yet, nothing to run"; \
	fi

# Not in CI: the replay proof with many examples, then writers on PostgreSQL and MariaDB
# (CHRONICLE_PG_URL / CHRONICLE_MYSQL_URL). SOAK_ARGS go to benchmarks/soak.py.
SOAK_EXAMPLES ?= 2000
SOAK_ARGS ?= --threads 8 --tasks 8 --seconds 300
soak: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]' $(QUOTED_REQS)
	CHRONICLE_HYPOTHESIS_PROFILE=soak CHRONICLE_HYPOTHESIS_EXAMPLES=$(SOAK_EXAMPLES) \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/capture/test_replay_proof.py
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# Not in CI: mutmut (the `mutation` extra) mutates capture/ and read/ ([tool.mutmut] in
# pyproject.toml) and runs, per mutant, the tests that reach its function, on SQLite only.
# MUTATE narrows it to modules or packages under src/sqlalchemy_chronicle (their mutants are
# then all run again); without it, results kept in mutants/ from an earlier run are reused.
# The summary per module is printed at the end; survivors: `$(BIN)/mutmut results`, one
# mutant's diff: `$(BIN)/mutmut show NAME`.
MUTATE ?=
MUTATION_JOBS ?= 2
# Each test's SQLite file goes to pytest's tmp_path: on a tmpfs the run is about 3x faster.
MUTATION_TMPDIR ?= $(if $(wildcard /dev/shm),/dev/shm,$(TMPDIR))
MUTANT_GLOBS := $(foreach m,$(MUTATE),'sqlalchemy_chronicle.$(subst /,.,$(basename $(m))).*')
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,mutation]' $(QUOTED_REQS)
	CHRONICLE_TEST_DBS=sqlite TMPDIR=$(MUTATION_TMPDIR) nice -n 15 $(BIN)/mutmut run --max-children $(MUTATION_JOBS) \
		$(MUTANT_GLOBS)
	$(BIN)/python tests/mutation_summary.py $(MUTATE)

clean:
	rm -rf $(VENV) .venv-* build dist .mypy_cache .ruff_cache .pytest_cache .import_linter_cache \
		conformance/.download conformance/.work mutants
	find . -path ./.git -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune \
		-exec rm -rf {} +
