# Pelanggan: every README command is a target here. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 8000
export OPENBLAS_NUM_THREADS ?= 1

.DEFAULT_GOAL := help
.PHONY: help demo port-free test lint format bench loadtest evaluate clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

demo: port-free $(STAMP) ## synthetic data, training, embedded Redis, serve on 127.0.0.1 (PORT=8000)
	$(BIN)/recsys demo --port $(PORT)

port-free: # before the install: is 127.0.0.1:$(PORT) free? (system Python, standard library)
	@$(PYTHON) pelanggan/ports.py 127.0.0.1 $(PORT)

test: $(STAMP) ## run the test suite (real Redis: embedded, or RECSYS_TEST_REDIS_URL)
	$(BIN)/python -m pytest -q

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy recsys training feature_store serving pelanggan

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

evaluate: $(STAMP) ## offline evaluation on the shared purchase data (split 2011-06-01)
	$(BIN)/recsys evaluate --events ../shared/data/online_retail_2010-12_2011-08.csv.gz \
	    --split-date 2011-06-01 --out evaluation

bench: $(STAMP) ## latency, throughput and quality benchmarks on the shared data (prints figures)
	$(BIN)/python -m benchmarks.run_all

loadtest: $(STAMP) ## Locust, headless, 60 s against a running demo on 127.0.0.1 (PORT=8000)
	$(BIN)/locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 60s \
	    --host http://127.0.0.1:$(PORT) --only-summary

clean: ## remove the environment, the demo and caches
	rm -rf $(VENV) .demo evaluation .pytest_cache .ruff_cache .mypy_cache
