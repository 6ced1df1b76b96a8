# mediapulse — the documented commands. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

EVENTS ?= 20000
KINESIS_STREAM ?= mediapulse-events
KINESIS_SHARDS ?= 4
KINESIS_REGION ?= us-east-1
BENCH_EVENTS ?= 1000000 5000000
# Rate steps stop at the first rate not kept up with: on 2 cores that is 3,000 records/s (docs/benchmarks.md).
BENCH_RATES ?= 1000 2000 3000 4000
BENCH_SECONDS ?= 120
# Batches reach their steady length after a few minutes of a run (docs/benchmarks.md, long runs).
BENCH_WARMUP ?= 180

.PHONY: help install run simulate top report test lint bench bench-parse bench-sustained bench-batch-cost docs clean run-kinesis

help: ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	@command -v javac >/dev/null || [ -x "$${JAVA_HOME:-/nonexistent}/bin/javac" ] || { echo "javac not found: install a Java 17 JDK (openjdk-17-jdk-headless); it compiles the record validator" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==24.3.1"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m streaming.validator_jar
	touch $@

install: $(VENV)/.installed ## create .venv, install the app with its pinned dependencies, build the record validator

data/incoming:
	$(BIN)/mediapulse simulate --out data/incoming --events $(EVENTS)

simulate: install data/incoming ## simulate sample traffic into data/incoming (once)

run: install data/incoming ## simulate sample traffic, process it with --available-now, print top content, write the HTML report
	$(BIN)/mediapulse run --available-now
	$(BIN)/mediapulse top --limit 10
	$(BIN)/mediapulse report --out data/report.html

report: install ## write the HTML report (data/report.html) from the local warehouse and health metrics
	$(BIN)/mediapulse report --out data/report.html

top: install ## print the top-content table from the local warehouse
	$(BIN)/mediapulse top --limit 10

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: install node_modules/.installed ## run the test suite (starts and stops its own local services)
	$(BIN)/python -m pytest -q

lint: install ## ruff over the code; refuse installs from a local path or file URL
	$(BIN)/ruff check streaming sinks bootstrap devtools tests bench scripts
	$(BIN)/python scripts/check_public_installs.py

bench: install ## cold runs on BENCH_EVENTS events vs the bare Spark job, bench-parse, then bench-sustained (docs/benchmarks.md)
	$(BIN)/python bench/pipeline.py --events $(BENCH_EVENTS)
	$(MAKE) --no-print-directory bench-parse
	$(MAKE) --no-print-directory bench-sustained

bench-parse: install ## validation against Spark's JSON reader, warm, in one JVM, on 1 M records
	$(BIN)/python bench/parse.py --events 1000000 --rounds 3

bench-sustained: install ## long-running: files arrive at each of BENCH_RATES events/s for BENCH_WARMUP + BENCH_SECONDS s
	$(BIN)/python bench/sustained.py --rates $(BENCH_RATES) --duration $(BENCH_SECONDS) --warmup $(BENCH_WARMUP) --jobs 2

bench-batch-cost: install ## long-running at a low steady rate: what the micro-batches cost whatever their size
	$(BIN)/python bench/batch_cost.py

run-kinesis: install node_modules/.installed ## the same run through a local Kinesis-API server (started and stopped here)
	rm -rf data/checkpoints/kinesis
	url="$$(scripts/kinesis-local.sh start)"; trap 'scripts/kinesis-local.sh stop' EXIT; \
	export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=$(KINESIS_REGION); \
	$(BIN)/python -m devtools.producer create-stream $(KINESIS_STREAM) --shards $(KINESIS_SHARDS) \
	  --endpoint "$$url" --region $(KINESIS_REGION); \
	$(BIN)/mediapulse simulate --to kinesis --stream $(KINESIS_STREAM) --endpoint "$$url" \
	  --region $(KINESIS_REGION) --events $(EVENTS); \
	$(BIN)/mediapulse run --available-now --set source.kind=kinesis --set source.stream_name=$(KINESIS_STREAM) \
	  --set source.endpoint_url="$$url" --set source.region=$(KINESIS_REGION) \
	  --set checkpoint.path=data/checkpoints/kinesis; \
	$(BIN)/mediapulse top --limit 10

docs: install ## regenerate docs/events.md (event schema) and README's configuration table (config model)
	$(BIN)/mediapulse docs-events --out docs/events.md
	$(BIN)/mediapulse docs-config --update README.md

clean: ## remove local data, checkpoints and the local warehouse
	rm -rf data spark-warehouse
