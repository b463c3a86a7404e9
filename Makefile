# The two commands of the README: `make up` runs the system, `make test` runs every gate and test.
.PHONY: up test lint typecheck pytest bench bootstrap

VENV := .venv/bin

bootstrap:
	@deploy/bootstrap.sh

up: bootstrap
	$(VENV)/kuaijing up

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	$(VENV)/mypy

pytest:
	$(VENV)/pytest

test: bootstrap lint typecheck pytest

bench:
	@deploy/bootstrap.sh --bench
	$(VENV)/python -m bench
