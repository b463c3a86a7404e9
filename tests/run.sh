#!/usr/bin/env bash
# The test suite as `make test` runs it: two pytest processes side by side, each with its own Kafka and PostgreSQL.
# - one test at a time: the fault tests (`-m faults`: each kills a service or a dependency and waits for recovery, so
#   none may run beside another), after the long runs (`-m long`: the image build), which are here so that both
#   processes end at about the same time; its output is printed when it ends;
# - the rest in two pytest-xdist workers: most of an integration test's time is waiting on the broker, the database
#   or a service process.
# Coverage of both is combined and the floor checked on the sum. Extra arguments go to both pytest commands; a
# selection (`-k`) that leaves either with no test fails the run (pytest's exit code 5), as it would in CI.
#   tests/run.sh [PYTEST_ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
venv=.venv/bin
cov=(--cov=shared --cov=services --cov-report=)
durations=(--durations=25) # each process names its slowest tests, so a run shows where the time went
mkdir -p build
rm -f build/coverage.alone build/coverage.rest build/coverage build/alone.log

# Job control on while it starts: the one-at-a-time process gets a process group of its own and keeps SIGINT, which a
# background command otherwise ignores, so that Ctrl-C, passed on by the trap, lets its fixtures stop what they run.
set -m
COVERAGE_FILE=build/coverage.alone "$venv/pytest" -m "faults or long" -p no:xdist "${cov[@]}" "${durations[@]}" "$@" >build/alone.log 2>&1 &
alone=$!
set +m
trap 'kill -INT "$alone" 2>/dev/null; wait "$alone"; exit 130' INT TERM
echo "tests/run.sh: the fault tests and long runs one at a time (pid $alone) beside the rest; their output comes after"

COVERAGE_FILE=build/coverage.rest "$venv/pytest" -n 2 -m "not faults and not long" "${cov[@]}" "${durations[@]}" "$@"
rest=$?
wait "$alone"
alone_rc=$?
trap - INT TERM
echo "tests/run.sh: the fault tests and the long runs (pytest -m \"faults or long\"), exit $alone_rc:"
cat build/alone.log

export COVERAGE_FILE=build/coverage
"$venv/coverage" combine -q --keep build/coverage.rest build/coverage.alone
"$venv/coverage" report --skip-covered --fail-under=85
floor=$?
echo "tests/run.sh: pytest exits $rest (the rest), $alone_rc (faults and long runs); coverage floor exit $floor"
[ "$rest" -eq 0 ] && [ "$alone_rc" -eq 0 ] && [ "$floor" -eq 0 ]
