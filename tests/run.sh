#!/usr/bin/env bash
# The test suite as `make test` runs it: two pytest processes side by side, each with its own Kafka and PostgreSQL.
# - the fault tests (`-m faults`) in one process, one at a time: each kills a service or a dependency and waits for
#   recovery, so none may run beside another; its output is printed when it ends;
# - the rest in two pytest-xdist workers: most of an integration test's time is waiting on the broker, the database
#   or a service process.
# Coverage of both is combined and the floor checked on the sum. Extra arguments go to both pytest commands.
#   tests/run.sh [PYTEST_ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
venv=.venv/bin
cov=(--cov=shared --cov=services --cov-report=)
mkdir -p build
rm -f build/coverage.faults build/coverage.rest build/coverage build/faults.log

# Job control on while it starts: the fault tests get a process group of their own and keep SIGINT, which a
# background command otherwise ignores, so that Ctrl-C, passed on by the trap, lets their fixtures stop what they run.
set -m
COVERAGE_FILE=build/coverage.faults "$venv/pytest" -m faults -p no:xdist "${cov[@]}" "$@" >build/faults.log 2>&1 &
faults=$!
set +m
trap 'kill -INT "$faults" 2>/dev/null; wait "$faults"; exit 130' INT TERM
echo "tests/run.sh: the fault tests run beside the rest (pid $faults); their output follows the rest's"

COVERAGE_FILE=build/coverage.rest "$venv/pytest" -n 2 -m "not faults" "${cov[@]}" "$@"
rest=$?
wait "$faults"
fault_rc=$?
trap - INT TERM
echo "tests/run.sh: the fault tests (pytest -m faults), exit $fault_rc:"
cat build/faults.log

export COVERAGE_FILE=build/coverage
"$venv/coverage" combine -q --keep build/coverage.rest build/coverage.faults
"$venv/coverage" report --skip-covered --fail-under=85
floor=$?
echo "tests/run.sh: pytest exits $rest (the rest), $fault_rc (the fault tests); coverage floor exit $floor"
[ "$rest" -eq 0 ] && [ "$fault_rc" -eq 0 ] && [ "$floor" -eq 0 ]
