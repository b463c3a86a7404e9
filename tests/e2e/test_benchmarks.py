"""The benchmarks still run end to end (their figures are checked by people reading them, not here).

The dispatcher benchmark is left out: its PostGIS anchor needs the packages `make bench` installs on top of the
test set-up; its calls path runs here alone (`bench calls`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_the_quick_benchmarks_run_and_report_every_figure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ingest", "jt808", "analytics", "console", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("machine: "), "every run states the machine its figures come from"
    assert "CPU probe" in done.stdout.splitlines()[0]
    for figure in ("HTTP POST /v1/telemetry", "kuaijing.telemetry.raw consumer", "decode 0x0200 frame",
                   "gateway end to end", "report / anchor", "dashboard p99 / anchor", "2,000 units moving 1/s",
                   "ratio moving/anchor", "ingest RSS after its"):  # fmt: skip
        assert figure in done.stdout, (figure, done.stdout[-3000:])


@pytest.mark.timeout(400)
def test_the_calls_path_search_runs_for_the_dispatcher_and_its_anchor() -> None:
    """Both searches ran, each after its untimed warm-up, and every call of their first step was answered 201, with
    the server's CPU a request beside it; the rates they found are timings of a machine that is busy with the rest
    of the suite meanwhile (in CI even the anchor's p99 at 25/s came near the 50 ms bound), so they are printed, not
    asserted."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "calls", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=360,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("POST /v1/calls, highest rate with p99 under 50 ms: "), done.stdout[-3000:]
    assert "was answered" not in done.stdout, "a call the bench made was not closed after its step"
    for server in ("  anchor, bare FastAPI", "  dispatcher, 10,000 units"):
        [at] = [i for i, line in enumerate(lines) if line.startswith(server)]
        warm_up, first_step = lines[at + 1 : at + 3]
        assert warm_up.startswith("    warm-up, untimed: "), done.stdout[-3000:]
        assert "25/s:" in first_step, done.stdout[-3000:]
        assert " 0 failed, server CPU " in first_step, done.stdout[-3000:]
        assert first_step.endswith(" ms a request"), done.stdout[-3000:]


@pytest.mark.timeout(600)
def test_the_quick_soak_loses_nothing_and_prints_its_figures() -> None:
    """`python -m bench soak --quick`: the mixed load for 60 s; it exits non-zero when an acknowledged ping is
    missing from history."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in ("ack p99 http", "live-map p99", "lag {", "RSS MB", "lost (acknowledged, not in history): 0;",
                   "RSS over the steady phase", "highest rate sustained"):  # fmt: skip
        assert figure in done.stdout, (figure, done.stdout[-3000:])
