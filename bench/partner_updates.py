"""Partner repair status updates per second and their latency through the real API.

``python -m bench.partner_updates [--database sqlite|postgresql] [--seconds 8] [--concurrency 4]``

The server runs as in ``bench.claims_api``: gunicorn, 2 sync workers, 127.0.0.1 on a free port,
a subprocess stopped at the end whatever happens; load comes from client threads here, one
``http.client`` connection per thread, ``--warmup`` seconds not counted, then ``--seconds``.
Every request is ``PATCH /api/v1/partner/units/<rma>`` with ``{"status": ...}``, ``If-Match:
"<version>"`` and ``Authorization: Bearer <partner API key>``.

Setup: a fresh database (SQLite in WAL mode in a temporary folder, or the PostgreSQL database
``--pg-database``, default ``aftercare_bench_partner``, created on ``--pg-server``, dropped first
if it exists and again at the end), ``flask --app app db upgrade`` and ``flask --app app demo
--purchases N`` as subprocesses. Then, in this process through the real use cases, with
``REDIS_URL`` on a Redis database flushed before and after (jobs only wait in the outbox, as
they do in production until the relay sends them; no relay or worker runs): ``--units``
approved claims filed (``claims.service.file_claim``), each unit received
(``inventory.service.record_scan``), routed to the partner ``--partner``
(``inventory.shipments.route_unit``) and all of them sent in one shipment
(``create_shipment`` + ``send_shipment``), which opens one repair per unit at version 1, status
``in_transit``. A partner API key is issued with ``partners.service.issue_partner_key``.

Workload: each client thread takes a unit no other thread touches and walks it through
``received_at_partner`` -> ``diagnosing`` -> ``repairing`` -> ``repaired`` -> ``shipped_back``
(five PATCHes, the version starting at 1 and going up by one per update; each answer's ETag
must name the next version), then takes the next unit. A unit whose update fails is left where
it is. Errors are non-200 answers, connection errors and 200s with a wrong ETag.

Printed: updates/s (200s completed in the measured window per second), p50/p95/p99 latency of
those 200s, errors. Then, counting warm-up too: new ``repair_events`` rows equal the successful
updates, new ``repair.status_changed`` audit events equal them, the repairs' versions went up by
exactly that many, and the audit chain verifies (``audit.service.verify_chain``). Exit status 1
when a check fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from flask import Flask

from bench.claims_api import Feed, RunResult, flask_cli, flush_redis, gunicorn, local_app
from bench.scans_api import awaiting_return, file_approved_claims, scans_database, server_env

UNITS_PATH = "/api/v1/partner/units/"
WALK = ("received_at_partner", "diagnosing", "repairing", "repaired", "shipped_back")
GUNICORN_WORKERS = 2
PARTNER = "NORDFIX"  # one of the demo partners
# Its own database name: each run drops it first, so benchmarks must not share one.
PG_DATABASE = "aftercare_bench_partner"


# --- load generator ------------------------------------------------------------------------------


@dataclass
class UpdateRun(RunResult):
    """A ``RunResult`` that also counts every successful update, warm-up included."""

    succeeded: int = 0  # 200s with the expected ETag, warm-up included
    units_done: int = 0  # units walked all the way to shipped_back
    bad_etags: int = 0


def run_updates(
    port: int, feed: Feed, key: str, *, concurrency: int, warmup: float, seconds: float
) -> UpdateRun:
    """``concurrency`` threads walk units from ``feed``: ``warmup`` s, then ``seconds`` counted."""
    result = UpdateRun("update", seconds)
    lock = threading.Lock()
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        statuses: Counter = Counter()
        exceptions: Counter = Counter()
        requests = errors = succeeded = units_done = bad_etags = 0
        exhausted = False
        try:
            while time.perf_counter() < stop_at:
                rma = feed.take()
                if rma is None:
                    exhausted = True
                    break
                version = 1
                for target in WALK:
                    if time.perf_counter() >= stop_at:
                        break
                    headers = {
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "Authorization": f"Bearer {key}",
                        "If-Match": f'"{version}"',
                    }
                    body = json.dumps({"status": target}).encode()
                    sent = time.perf_counter()
                    ok = False
                    try:
                        conn.request("PATCH", UNITS_PATH + rma, body=body, headers=headers)
                        response = conn.getresponse()
                        response.read()
                        statuses[response.status] += 1
                        if response.status == 200:
                            if response.getheader("ETag") == f'"{version + 1}"':
                                ok = True
                            else:
                                bad_etags += 1
                    except (OSError, http.client.HTTPException) as exc:
                        exceptions[type(exc).__name__] += 1
                        conn.close()
                    done = time.perf_counter()
                    if ok:
                        succeeded += 1
                        version += 1
                    if measure_from <= done <= stop_at:
                        requests += 1
                        if ok:
                            latencies.append(done - sent)
                        else:
                            errors += 1
                    if not ok:
                        break  # leave this unit where it is; take the next one
                else:
                    units_done += 1
        finally:
            conn.close()
            with lock:
                result.latencies.extend(latencies)
                result.statuses.update(statuses)
                result.exceptions.update(exceptions)
                result.requests += requests
                result.errors += errors
                result.succeeded += succeeded
                result.units_done += units_done
                result.bad_etags += bad_etags
                result.exhausted |= exhausted

    threads = [
        threading.Thread(target=worker, name=f"partner-{n}", daemon=True)
        for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=warmup + seconds + 60)
    return result


# --- setup in-process ----------------------------------------------------------------------------


def units_at_partner(app: Flask, numbers: list[str], partner: str) -> list[str]:
    """Receive, route to ``partner`` and ship the units of ``numbers``; the RMAs shipped."""
    from common.actors import Actor
    from common.extensions import db
    from inventory.service import record_scan
    from inventory.shipments import create_shipment, route_unit, send_shipment

    actor = Actor.system("bench")
    started = time.perf_counter()
    routed: list[str] = []
    with app.app_context():
        for number in numbers:
            scan = record_scan(code=number, actor=actor, station="bench")
            if scan.outcome != "received":
                raise RuntimeError(f"scan of {number}: {scan.outcome}")
            route_unit(rma_number=number, actor=actor, partner_code=partner, reason="bench")
            routed.append(number)
            db.session.expunge_all()
        shipment = create_shipment(
            partner_code=partner, direction="to_partner", rma_numbers=routed, actor=actor
        )
        send_shipment(shipment_number=shipment.shipment_number, actor=actor)
        db.session.remove()
    elapsed = time.perf_counter() - started
    print(
        f"  {len(routed)} units received, routed to {partner} and shipped in {elapsed:.1f} s",
        flush=True,
    )
    return routed


def partner_key(app: Flask, partner: str) -> str:
    from common.actors import Actor
    from common.extensions import db
    from partners.service import issue_partner_key

    with app.app_context():
        secret = issue_partner_key(
            partner_code=partner, actor=Actor.system("bench"), name="bench"
        ).secret
        db.session.remove()
    return secret


def in_transit(app: Flask, partner: str) -> list[str]:
    """RMA numbers of the partner's repairs that are in transit at version 1."""
    from sqlalchemy import select

    from common.extensions import db
    from inventory.models import Unit
    from partners.models import Partner, Repair
    from rma.models import Rma

    with app.app_context():
        numbers = list(
            db.session.scalars(
                select(Rma.rma_number)
                .join(Unit, Unit.rma_id == Rma.id)
                .join(Repair, Repair.unit_id == Unit.id)
                .join(Partner, Partner.id == Repair.partner_id)
                .where(Partner.code == partner, Repair.status == "in_transit")
                .where(Repair.version == 1)
                .order_by(Repair.id)
            )
        )
        db.session.remove()
    return numbers


# --- checks and report ---------------------------------------------------------------------------


def counts(app: Flask) -> dict[str, int]:
    from sqlalchemy import func, select

    from audit.models import AuditEvent
    from common.extensions import db
    from partners.models import Repair, RepairEvent

    with app.app_context():
        count = db.session.scalar
        result = {
            "repair_events": count(select(func.count(RepairEvent.id))),
            "audit": count(
                select(func.count(AuditEvent.id)).where(
                    AuditEvent.action == "repair.status_changed"
                )
            ),
            "versions": count(select(func.coalesce(func.sum(Repair.version - 1), 0))),
            "shipped_back": count(
                select(func.count(Repair.id)).where(Repair.status == "shipped_back")
            ),
        }
        db.session.remove()
    return result


def verify(app: Flask, before: dict[str, int], run: UpdateRun) -> bool:
    from audit.service import verify_chain
    from common.extensions import db

    after = counts(app)
    delta = {name: after[name] - before[name] for name in after}
    with app.app_context():
        chain = verify_chain()
        db.session.remove()
    checks = {
        "repair_events": delta["repair_events"] == run.succeeded,
        "audit": delta["audit"] == run.succeeded,
        "versions": delta["versions"] == run.succeeded,
        "shipped_back": delta["shipped_back"] == run.units_done,
    }
    print(
        f"updates: successful {run.succeeded} (warm-up included); new repair_events rows "
        f"{delta['repair_events']} -> {'OK' if checks['repair_events'] else 'MISMATCH'}"
    )
    print(
        f"audit:   new repair.status_changed events {delta['audit']} -> "
        f"{'OK' if checks['audit'] else 'MISMATCH'}"
    )
    print(
        f"repairs: versions up by {delta['versions']}; units shipped back {delta['shipped_back']} "
        f"(walked to the end: {run.units_done}) -> "
        f"{'OK' if checks['versions'] and checks['shipped_back'] else 'MISMATCH'}"
    )
    print(
        f"chain:   {chain.events_checked} audit events checked -> "
        f"{'OK' if chain.ok else f'BROKEN at seq {chain.first_broken_seq}: {chain.problem}'}"
    )
    return all(checks.values()) and chain.ok


def print_result(run: UpdateRun) -> None:
    print(
        f"{'requests':>10}{'errors':>8}{'updates/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'units done':>12}"
    )
    print(
        f"{run.requests:>10}{run.errors:>8}{run.rate:>11.1f}{run.percentile(0.50):>9.1f}"
        f"{run.percentile(0.95):>9.1f}{run.percentile(0.99):>9.1f}{run.units_done:>12}"
    )
    others = {code: n for code, n in run.statuses.items() if code != 200}
    if others or run.exceptions or run.bad_etags:
        print(
            f"  non-200 statuses {others}, exceptions {dict(run.exceptions)}, "
            f"200s with a wrong ETag {run.bad_etags} (warm-up included)"
        )
    if run.exhausted:
        print("  ran out of units before the time was up (raise --units): the rate is too low")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument(
        "--workers", type=int, default=GUNICORN_WORKERS, help="gunicorn sync workers"
    )
    parser.add_argument("--purchases", type=int, default=8_000, help="demo purchases to load")
    parser.add_argument(
        "--units", type=int, default=1_200, help="units to put at the partner (5 updates each)"
    )
    parser.add_argument("--partner", default=PARTNER, help="demo partner code")
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/10",
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
    args = parser.parse_args(argv)

    ok = True
    with scans_database(args.database, args.pg_server, args.pg_database) as setup:
        env = server_env(setup, args.redis_url)
        label = "SQLite (WAL)" if setup.kind == "sqlite" else "PostgreSQL"
        print(
            f"partner unit updates API: {label}, gunicorn -w {args.workers} -k sync, "
            f"{args.concurrency} client threads, {args.seconds:g} s after {args.warmup:g} s "
            "warm-up",
            flush=True,
        )
        flush_redis(args.redis_url)
        app: Flask | None = None
        try:
            flask_cli(env, "db", "upgrade")
            flask_cli(env, "demo", "--purchases", str(args.purchases))
            app = local_app(setup, args.redis_url)
            file_approved_claims(app, args.units)
            units_at_partner(app, awaiting_return(app)[: args.units], args.partner)
            key = partner_key(app, args.partner)
            numbers = in_transit(app, args.partner)
            print(f"  {len(numbers)} repairs in transit to {args.partner}", flush=True)
            before = counts(app)
            load: dict[str, Any] = {
                "concurrency": args.concurrency,
                "warmup": args.warmup,
                "seconds": args.seconds,
            }
            with gunicorn(
                "app:create_app()", env, setup.workdir / "partner-gunicorn.log", args.workers
            ) as port:
                run = run_updates(port, Feed(numbers), key, **load)
            print()
            print_result(run)
            print()
            ok = verify(app, before, run)
        finally:
            if app is not None:
                with app.app_context():
                    from common.extensions import db

                    db.engine.dispose()
            flush_redis(args.redis_url)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
