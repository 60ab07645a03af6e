"""A short mixed load on the real stack (``bench.load``, the script behind ``make load``).

gunicorn with 2 sync workers, 2 rq workers and the outbox relay serve the session's PostgreSQL
database (``TEST_DATABASE_URL``, already migrated, so ``--schema keep``) and a private rq queue
on ``TEST_REDIS_URL`` (only that queue's keys are removed afterwards, nothing is flushed).
``LOAD_SMOKE_SECONDS`` (default 12) of 6 virtual users, then the script checks every answer
against the rows; this test wants its verdict: no error, no mismatch, a drained outbox. The
tables are emptied afterwards like after any other test. The figures are printed past pytest's
capture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL, _empty_tables, requires_postgres, requires_redis

pytestmark = [pytest.mark.postgres, pytest.mark.redis, requires_postgres, requires_redis]

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("LOAD_SMOKE_SECONDS", "12"))
# Operations that must have run at least once for the run to mean anything.
MUST_RUN = ("POST /api/v1/claims", "POST /claim", "GET /track/<token>",
            "POST .../scans (first)", "PATCH .../partner/units/<rma>",
            "GET /api/v1/fraud/flags")


def test_short_mixed_load_answers_without_errors_and_leaves_exactly_the_rows_answered(
        make_app, database_url, tmp_path, capsys):
    app = make_app()  # the fixture's teardown empties every table the run wrote
    _empty_tables(app)
    report = tmp_path / "load.jsonl"
    command = [
        sys.executable, "-m", "bench.load", "--database-url", database_url, "--schema", "keep",
        "--redis-url", TEST_REDIS_URL, "--no-flush-redis", "--seconds", f"{SECONDS:g}",
        "--users", "6", "--workers", "2", "--rq-workers", "2", "--fraud-partners", "6",
        "--fraud-months", "6", "--drain-seconds", "300", "--json", str(report),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          check=False)
    lines = done.stdout.splitlines()
    start = next((n for n, line in enumerate(lines) if line.startswith("operation")), 0)
    with capsys.disabled():
        print()
        print("\n".join(lines[start:]))
    assert done.returncode == 0, (done.stdout[-8000:], done.stderr[-4000:])
    figures = json.loads(report.read_text().splitlines()[-1])
    assert (figures["errors"], figures["mismatches"]) == (0, 0)
    assert figures["drain"]["drained"] and figures["rows_verified"] > 0
    ran = {name for name, op in figures["operations"].items() if op["ok"]}
    assert set(MUST_RUN) <= ran, f"never answered: {sorted(set(MUST_RUN) - ran)}"
