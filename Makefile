# The two commands of the README: `make demo` runs the system with a simulated city, `make test` runs every gate and
# test. `make up` runs the system for real use, with no simulated data.
.PHONY: demo up test lint typecheck pytest bench bootstrap lock image

VENV := .venv/bin

bootstrap:
	@deploy/bootstrap.sh

demo: bootstrap
	$(VENV)/kuaijing demo

up: bootstrap
	$(VENV)/kuaijing up

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	$(VENV)/mypy

# Two pytest-xdist workers, each with its own Kafka and PostgreSQL: most of an integration test's time is waiting
# on them or on a service process, so two share two cores well (here `make test` took 27-31 min in one process, 23.5-25.9 with two).
# The fault tests kill processes and time recovery, so they run after, alone. The coverage floor counts the
# in-process suite of both runs (the e2e subprocesses are not traced): a little under what it measures today, so a
# sizeable untested addition fails the gate.
pytest:
	$(VENV)/pytest -n 2 -m "not faults" --cov=shared --cov=services --cov-report=
	$(VENV)/pytest -m faults --cov=shared --cov=services --cov-append --cov-report=term:skip-covered --cov-fail-under=85

test: bootstrap lint typecheck pytest

bench:
	@deploy/bootstrap.sh --bench
	$(VENV)/python -m bench

# Pin every dependency (the image installs deploy/requirements.lock; bootstrap installs with the dev lock as
# constraints). Run after changing a dependency in pyproject.toml; tests/unit/test_lock.py fails until then.
lock:
	$(VENV)/uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 -q -o deploy/requirements.lock
	$(VENV)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --python-platform x86_64-manylinux_2_28 -q -o deploy/requirements-dev.lock
