# Entry points; the README's two commands are `make up` and `make test`.
.PHONY: setup up test lint typecheck bench-micro

setup:
	bash scripts/setup.sh

up: setup
	.venv/bin/viz up

test: setup
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check viz tests bench

typecheck: setup
	.venv/bin/mypy viz

bench-micro: setup
	.venv/bin/python -m pytest bench/micro --benchmark-only -q
