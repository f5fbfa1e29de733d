# Entry points; the README's two commands are `make up` and `make test`.
.PHONY: setup up test lint typecheck bench-micro bench-service faults

setup:
	bash scripts/setup.sh

up: setup
	.venv/bin/viz up

# Static checks first (seconds), then the whole suite against real engines.
test: setup
	.venv/bin/ruff check viz tests
	.venv/bin/mypy viz
	npm --prefix tracker test
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check viz tests bench loadtest

typecheck: setup
	.venv/bin/mypy viz

bench-micro: setup
	.venv/bin/python -m pytest bench/micro --benchmark-only -q

# Benchmarks are not tests: run them on a quiet machine; they append to bench/RESULTS.md.
bench-service: setup
	bash scripts/bench-deps.sh
	.venv/bin/python bench/service/run.py --results-md bench/RESULTS.md

# The fault suite at the outside review's rates and durations (400 ev/s, 30 s broker stall,
# 60 s PostgreSQL outage; ~9 min). The short profile runs in `make test`. Accounting by event id
# goes to bench/results/faults-long/*.json; copy the summary lines into bench/RESULTS.md.
faults: setup
	VIZ_FAULT_PROFILE=long VIZ_FAULT_RESULTS=bench/results/faults-long \
		.venv/bin/python -m pytest tests/faults -s -q --timeout 3600
