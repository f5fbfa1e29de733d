# Entry points; the README's two commands are `make up` and `make test`.
.PHONY: setup up test lint typecheck bench-micro bench-service

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
