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

# make loadtest HOST=http://127.0.0.1:8000 USERS=50 DURATION=60s (RESULTS=loadtest-results)
HOST     ?= http://127.0.0.1:$(PORT)
USERS    ?= 50
SPAWN    ?= 10
DURATION ?= 60s
RESULTS  ?= loadtest-results
loadtest: $(STAMP) ## Locust, headless, against HOST (a running demo); CSV and HTML into RESULTS
	@mkdir -p $(RESULTS)
	@$(BIN)/locust -f benchmarks/locustfile.py --headless -u $(USERS) -r $(SPAWN) \
	    -t $(DURATION) --host $(HOST) --only-summary \
	    --csv $(RESULTS)/locust --html $(RESULTS)/report.html; rc=$$?; \
	echo "results: $(RESULTS)/report.html, $(RESULTS)/locust_stats.csv, _failures.csv"; \
	if [ $$rc -ne 0 ]; then \
	    echo "make loadtest: locust exited $$rc: the failure ratio went over" \
	        "RECSYS_LOADTEST_MAX_FAIL_RATIO (default 0.01; fallback answers and purchased items" \
	        "still shown count as failures), or the sample ids could not be read from $(HOST)." \
	        "See $(RESULTS)/locust_failures.csv. On 2 shared cores Locust and the server compete:" \
	        "lower USERS or set RECSYS_LOADTEST_THINK=1 (the default think times)." >&2; \
	fi; exit $$rc

clean: ## remove the environment, the demo and caches
	rm -rf $(VENV) .demo evaluation .pytest_cache .ruff_cache .mypy_cache
