# hitsong: everything a machine needs is installed by these targets, into .venv.
#
#   make demo   set up, then run the whole demo (data -> features -> training -> registry -> dashboard)
#   make test   set up (with the test extras and a headless browser), then run the test suite
#
# Torch: on this kind of machine `pip install torch==2.13.0` takes a CPU build that lies on disk.
# A GPU user asks for a CUDA build instead, e.g.
#   make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
PORT ?= 8501
MLFLOW_PORT ?= 5000

.PHONY: install install-test deps-browser deps-postgres demo test lint server dashboard bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Marker files make re-runs cheap: `make test` twice installs once.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	# tinysoundfont's metadata asks for pyaudio (needs portaudio headers to build); it renders
	# without it, so it is installed on its own without dependencies.
	$(BIN)/pip install -q --no-deps "tinysoundfont>=0.3.7,<0.4"
	$(BIN)/pip install -q -e .
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install-test: $(VENV)/.installed-test deps-browser deps-postgres

# Debian packages of the test suite: Chromium for the end-to-end browser tests (Playwright drives
# it; it never downloads a browser of its own) and PostgreSQL for the team-backend tests (a
# throwaway cluster started by the tests as an unprivileged user). Root or sudo; skipped when present.
CHROMIUM_CHECK ?= /usr/bin/chromium
POSTGRES_CHECK ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) /usr/lib/postgresql/15/bin/initdb)
deps-browser:
	bash scripts/apt-install.sh $(CHROMIUM_CHECK) chromium chromium-driver

deps-postgres:
	bash scripts/apt-install.sh $(POSTGRES_CHECK) postgresql

demo: install
	$(BIN)/hitsong demo run --port $(PORT) --mlflow-port $(MLFLOW_PORT)

# Lint and types first (ruff, mypy: scripts/lint.sh), then the suite.
test: install-test
	BIN=$(BIN) bash scripts/lint.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	BIN=$(BIN) bash scripts/lint.sh

server: install
	$(BIN)/hitsong server --port $(MLFLOW_PORT)

dashboard: install
	$(BIN)/hitsong dashboard --port $(PORT)

# Each benchmark measures against its own baseline in the same run and prints a table for
# BENCHMARKS.md (ingest at full size takes long: it generates 50 M events once, then caches).
BENCHES ?= bench_features bench_tagger bench_training bench_predict bench_demo bench_ingest
bench: install-test
	for b in $(BENCHES); do $(BIN)/python -m benchmarks.$$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
