"""Warehouse receiving scans per second and their latency through the real API.

``python -m bench.scans_api [--database sqlite|postgresql] [--seconds 10] [--concurrency 4]``

The server runs as in ``bench.claims_api``: gunicorn, 2 sync workers, 127.0.0.1 on a free port,
a subprocess stopped at the end whatever happens; load comes from a thread pool here, one
``http.client`` connection per thread, ``--warmup`` seconds not counted, then ``--seconds``.
Every request is ``POST /api/v1/warehouse/scans`` with ``{"code": <RMA number>, "station":
"bench-N"}`` (N the client thread) and ``Authorization: Bearer <token>`` of a warehouse user.

Setup: a fresh database (SQLite in WAL mode in a temporary folder, or the PostgreSQL database
``--pg-database``, default ``aftercare_bench_scans``, created on ``--pg-server``, dropped first if
it exists and again at the end), ``flask --app app db upgrade`` and ``flask --app app demo
--purchases N`` as subprocesses, then ``--rmas`` approved claims filed in this process through
``claims.service.file_claim`` (each issues an RMA with a unit awaiting return). ``REDIS_URL``
points at a Redis database flushed before and after, so the label and email jobs only wait in
the outbox, as in production until the relay sends them; no relay or worker runs. The
warehouse user and its API token are created in-process too.

Two phases against the same server:

* ``receive``: each request scans a different RMA whose unit is awaiting return; the expected
  outcome is ``received`` (one conditional UPDATE, a stock movement, a timeline entry, an audit
  event and an email job, plus the ``scans`` row).
* ``repeat``: each request scans an RMA the first phase received (cycling through them); the
  expected outcome is ``already_received`` (double scans are common at a receiving dock).

Per phase: requests completed in the measured window, errors (non-200 or no answer), 200s with
another outcome, scans/s (expected outcomes per measured second) and p50/p95/p99 latency of the
200s against the target p99 < 50 ms. Afterwards, counting warm-up too: units now ``received``
equal the ``received`` answers (and are the very RMAs answered), ``scans`` rows equal the
requests sent, every received unit has exactly one ``unit.received`` audit event, and the audit
chain verifies. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask

from bench.claims_api import (
    Feed,
    RunResult,
    Setup,
    approved_claim_bodies,
    claimed_serials,
    database,
    flask_cli,
    flush_redis,
    gunicorn,
    local_app,
    psql,
    server_env,
)

SCANS_PATH = "/api/v1/warehouse/scans"
TARGET_P99_MS = 50.0
GUNICORN_WORKERS = 2
SCANNER_EMAIL = "scanner@bench.aftercare.dev"
# Not bench.claims_api's ``aftercare_bench``: each run drops its database first, so the two
# benchmarks would wreck each other's data if they ever ran at the same time.
PG_DATABASE = "aftercare_bench_scans"


# --- load generator ------------------------------------------------------------------------------


@dataclass
class ScanRun(RunResult):
    """A ``RunResult`` that also reads each answer's ``outcome``."""

    expect: str = "received"
    unexpected: int = 0  # measured 200s whose outcome was not ``expect``
    outcomes: Counter = field(default_factory=Counter)  # every 200, warm-up included
    received: list[str] = field(default_factory=list)  # RMA numbers answered ``received``

    @property
    def rate(self) -> float:
        good = self.requests - self.errors - self.unexpected
        return good / self.seconds if self.seconds else 0.0

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.exceptions.values())


def run_scans(
    name: str,
    port: int,
    feed: Feed,
    token: str,
    *,
    expect: str,
    concurrency: int,
    warmup: float,
    seconds: float,
) -> ScanRun:
    """``concurrency`` threads scan RMA numbers from ``feed``: ``warmup`` s, then ``seconds``."""
    result = ScanRun(name, seconds, expect=expect)
    lock = threading.Lock()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {token}",
    }
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    def worker(number: int) -> None:
        station = f"bench-{number}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        statuses: Counter = Counter()
        exceptions: Counter = Counter()
        outcomes: Counter = Counter()
        received: list[str] = []
        requests = errors = unexpected = 0
        exhausted = False
        try:
            while time.perf_counter() < stop_at:
                code = feed.take()
                if code is None:
                    exhausted = True
                    break
                body = json.dumps({"code": code, "station": station}).encode()
                sent = time.perf_counter()
                status: int | None = None
                outcome: str | None = None
                try:
                    conn.request("POST", SCANS_PATH, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    status = response.status
                    statuses[status] += 1
                    if status == 200:
                        answer = json.loads(payload)
                        outcome = answer.get("outcome")
                        outcomes[outcome] += 1
                        if outcome == "received":
                            received.append(answer.get("rma_number"))
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    exceptions[type(exc).__name__] += 1
                    conn.close()
                done = time.perf_counter()
                if measure_from <= done <= stop_at:
                    requests += 1
                    if status != 200 or outcome is None:
                        errors += 1
                    else:
                        latencies.append(done - sent)
                        unexpected += outcome != expect
        finally:
            conn.close()
            with lock:
                result.latencies.extend(latencies)
                result.statuses.update(statuses)
                result.exceptions.update(exceptions)
                result.outcomes.update(outcomes)
                result.received.extend(received)
                result.requests += requests
                result.errors += errors
                result.unexpected += unexpected
                result.exhausted |= exhausted

    threads = [
        threading.Thread(target=worker, args=(n,), name=f"scan-{n}", daemon=True)
        for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup + seconds + 60)
    return result


# --- database and setup in-process ---------------------------------------------------------------


@contextmanager
def scans_database(kind: str, pg_server: str, pg_name: str) -> Iterator[Setup]:
    """``bench.claims_api.database`` with the PostgreSQL database's name as a parameter."""
    if kind == "sqlite":
        with database(kind, pg_server) as setup:
            yield setup
        return
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", pg_name):
        raise SystemExit(f"--pg-database {pg_name!r}: use lower-case letters, digits and _")
    with tempfile.TemporaryDirectory(prefix="aftercare-bench-") as tmp:
        url = f"{pg_server.rstrip('/')}/{pg_name}"
        psql(pg_server, f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
        psql(pg_server, f"CREATE DATABASE {pg_name}")
        try:
            yield Setup(kind, url, url, Path(tmp))
        finally:
            psql(pg_server, f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")


def file_approved_claims(app: Flask, limit: int) -> int:
    """File up to ``limit`` approved claims through the real use case (jobs left in the outbox)."""
    from claims.service import ClaimInput, file_claim
    from claims.settings import claim_settings
    from common.actors import Actor
    from common.extensions import db

    taken = claimed_serials(app)
    bodies = [json.loads(body) for body in approved_claim_bodies(app)]
    bodies = [body for body in bodies if body["serial_number"] not in taken][:limit]
    started = time.perf_counter()
    filed = 0
    with app.app_context():
        settings = claim_settings(app.config)
        for body in bodies:
            result = file_claim(
                ClaimInput(
                    serial_number=body["serial_number"],
                    email=body["email"],
                    fault_category=body["fault_category"],
                    description=body["description"],
                ),
                actor=Actor.customer(body["email"]),
                settings=settings,
                source="api",
            )
            filed += result.created and result.rma_number is not None
            db.session.expunge_all()
        db.session.remove()
    elapsed = time.perf_counter() - started
    print(
        f"  {filed} approved claims filed in-process in {elapsed:.1f} s "
        f"({filed / elapsed if elapsed else 0:.0f}/s)",
        flush=True,
    )
    return filed


def scanner_token(app: Flask) -> str:
    """A warehouse user and a personal API token for it; the token's secret."""
    from auth.service import create_api_token, create_user
    from common.actors import Actor
    from common.extensions import db

    actor = Actor.system("bench")
    with app.app_context():
        create_user(
            email=SCANNER_EMAIL,
            role="warehouse",
            password=secrets.token_urlsafe(24),
            actor=actor,
            hash_profile="fast-insecure-for-tests",
        )
        secret = create_api_token(email=SCANNER_EMAIL, actor=actor, name="bench").secret
        db.session.remove()
    return secret


def awaiting_return(app: Flask) -> list[str]:
    """RMA numbers whose unit is awaiting return and whose RMA is still open."""
    from sqlalchemy import select

    from common.extensions import db
    from inventory.models import Unit
    from rma.models import Rma

    with app.app_context():
        numbers = list(
            db.session.scalars(
                select(Rma.rma_number)
                .join(Unit, Unit.rma_id == Rma.id)
                .where(Unit.status == "awaiting_return", Rma.status.not_in(("closed", "cancelled")))
                .order_by(Unit.id)
            )
        )
        db.session.remove()
    return numbers


# --- checks and report ---------------------------------------------------------------------------


def counts(app: Flask) -> dict[str, int]:
    from sqlalchemy import func, select

    from audit.models import AuditEvent
    from common.extensions import db
    from inventory.models import Scan, Unit

    with app.app_context():
        count = db.session.scalar
        result = {
            "received_units": count(select(func.count(Unit.id)).where(Unit.status == "received")),
            "scans": count(select(func.count(Scan.id))),
            "events": count(
                select(func.count(AuditEvent.id)).where(AuditEvent.action == "unit.received")
            ),
        }
        db.session.remove()
    return result


def verify(app: Flask, before: dict[str, int], runs: list[ScanRun]) -> bool:
    """Rows written agree with the answers given (warm-up included)."""
    from sqlalchemy import func, select

    from audit.models import AuditEvent
    from audit.service import verify_chain
    from common.extensions import db
    from inventory.models import Unit
    from rma.models import Rma

    after = counts(app)
    answered = [number for run in runs for number in run.received]
    received_answers = sum(run.outcomes["received"] for run in runs)
    sent = sum(run.sent for run in runs)
    with app.app_context():
        received_numbers = set(
            db.session.scalars(
                select(Rma.rma_number)
                .join(Unit, Unit.rma_id == Rma.id)
                .where(Unit.status == "received")
            )
        )
        per_unit = Counter(
            dict(
                db.session.execute(
                    select(AuditEvent.entity_id, func.count(AuditEvent.id))
                    .where(AuditEvent.action == "unit.received")
                    .group_by(AuditEvent.entity_id)
                ).all()
            )
        )
        chain = verify_chain()
        db.session.remove()
    new_units = after["received_units"] - before["received_units"]
    new_scans = after["scans"] - before["scans"]
    new_events = after["events"] - before["events"]
    units_ok = (
        new_units == received_answers == len(answered) == len(set(answered))
        and set(answered) <= received_numbers
    )
    scans_ok = new_scans == sent
    doubled = sorted(number for number, n in per_unit.items() if n != 1)
    events_ok = new_events == received_answers and not doubled and set(per_unit) == received_numbers
    print(
        f"units:   'received' answers {received_answers} ({len(set(answered))} distinct RMAs); "
        f"units newly received {new_units} -> {'OK' if units_ok else 'MISMATCH'}"
    )
    print(
        f"scans:   requests sent {sent}; new scans rows {new_scans} -> "
        f"{'OK' if scans_ok else 'MISMATCH'}"
    )
    print(
        f"audit:   new unit.received events {new_events} for {len(received_numbers)} received "
        f"units, {len(doubled)} units without exactly one -> {'OK' if events_ok else 'MISMATCH'}"
        + (f" (e.g. {doubled[:5]})" if doubled else "")
    )
    print(
        f"chain:   {chain.events_checked} audit events checked -> "
        f"{'OK' if chain.ok else f'BROKEN at seq {chain.first_broken_seq}: {chain.problem}'}"
    )
    return units_ok and scans_ok and events_ok and chain.ok


def print_table(runs: list[ScanRun]) -> None:
    print(
        f"{'phase':<10}{'expected':>18}{'requests':>10}{'errors':>8}{'other':>7}"
        f"{'scans/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  p99 < {TARGET_P99_MS:g} ms"
    )
    for r in runs:
        p99 = r.percentile(0.99)
        met = "yes" if p99 < TARGET_P99_MS else "NO"
        print(
            f"{r.name:<10}{r.expect:>18}{r.requests:>10}{r.errors:>8}{r.unexpected:>7}"
            f"{r.rate:>10.1f}{r.percentile(0.50):>9.1f}{r.percentile(0.95):>9.1f}{p99:>9.1f}"
            f"  {met}"
        )
    for r in runs:
        others = {code: n for code, n in r.statuses.items() if code != 200}
        wrong = {outcome: n for outcome, n in r.outcomes.items() if outcome != r.expect}
        if others or r.exceptions or wrong:
            print(
                f"  {r.name}: non-200 statuses {others}, exceptions {dict(r.exceptions)}, "
                f"other outcomes {wrong} (warm-up included)"
            )
        if r.exhausted:
            print(
                f"  {r.name}: ran out of RMAs before the time was up (raise --rmas): "
                "the rate above is too low"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument(
        "--workers", type=int, default=GUNICORN_WORKERS, help="gunicorn sync workers"
    )
    parser.add_argument("--purchases", type=int, default=20_000, help="demo purchases to load")
    parser.add_argument(
        "--rmas",
        type=int,
        default=5_000,
        help="approved claims to file in-process (RMAs awaiting return; the demo adds a few)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="a Redis database this run may flush",
    )
    parser.add_argument(
        "--pg-server",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name",
    )
    parser.add_argument(
        "--pg-database",
        default=PG_DATABASE,
        help="database created (dropped first if it exists) and dropped at the end",
    )
    parser.add_argument("--seed", type=int, default=1, help="shuffles the order of the RMAs")
    args = parser.parse_args(argv)

    ok = True
    with scans_database(args.database, args.pg_server, args.pg_database) as setup:
        env = server_env(setup, args.redis_url)
        label = "SQLite (WAL)" if setup.kind == "sqlite" else "PostgreSQL"
        print(
            f"warehouse scans API: {label}, gunicorn -w {args.workers} -k sync, "
            f"{args.concurrency} client threads, {args.seconds:g} s per phase after "
            f"{args.warmup:g} s warm-up",
            flush=True,
        )
        flush_redis(args.redis_url)
        app: Flask | None = None
        try:
            flask_cli(env, "db", "upgrade")
            flask_cli(env, "demo", "--purchases", str(args.purchases))
            app = local_app(setup, args.redis_url)
            file_approved_claims(app, args.rmas)
            token = scanner_token(app)
            numbers = awaiting_return(app)
            random.Random(args.seed).shuffle(numbers)
            print(f"  {len(numbers)} RMAs awaiting return", flush=True)
            before = counts(app)
            load: dict[str, Any] = {
                "concurrency": args.concurrency,
                "warmup": args.warmup,
                "seconds": args.seconds,
            }
            with gunicorn(
                "app:create_app()", env, setup.workdir / "scans-gunicorn.log", args.workers
            ) as port:
                receive = run_scans(
                    "receive", port, Feed(numbers), token, expect="received", **load
                )
                again = list(receive.received) or numbers[:1]
                repeat = run_scans(
                    "repeat",
                    port,
                    Feed(make=lambda index: again[index % len(again)]),
                    token,
                    expect="already_received",
                    **load,
                )
            print()
            print_table([receive, repeat])
            print()
            ok = verify(app, before, [receive, repeat])
        finally:
            if app is not None:
                with app.app_context():
                    from common.extensions import db

                    db.engine.dispose()
            flush_redis(args.redis_url)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
