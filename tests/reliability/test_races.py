"""Races on PostgreSQL, through the real HTTP API, repeated ``RACE_ROUNDS`` times (default 3).

Every round starts from empty tables, fires its requests from threads released together by a
barrier against one app (one test client per thread, each request in its own context as a real
server would run it), then checks the rows: exact counts, distinct numbers, one audit event per
change and an intact audit chain. ``make races`` runs 20 rounds; the last test prints a line per
race (``pytest -s`` not needed).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from audit.models import AuditEvent
from audit.service import verify_chain
from catalog.importing import run_import
from claims.models import Claim, IdempotencyRecord
from common import jobs
from common.extensions import db
from inventory.models import Scan, StockMovement, Unit
from partners.models import RepairEvent
from rma.models import Rma
from rma.numbers import parse_rma_number
from tests.conftest import TEST_REDIS_URL, _empty_tables, requires_postgres
from tests.factories import (
    PURCHASE_HEADER,
    TEST_ACTOR,
    bearer,
    claim_body,
    csv_bytes,
    load_catalog,
    partner_key,
    purchase_row,
    register_purchase,
    staff_token,
)
from tests.reliability.report import Collector
from tests.test_partner_repairs import ship_units_to

pytestmark = [pytest.mark.postgres, requires_postgres]

RACE_ROUNDS = int(os.environ.get("RACE_ROUNDS", "3"))
REPORT = Collector("races")
Outcome = Any  # a test response, or the exception a request raised


def hammer(app: Flask, n: int, send: Callable[[Any, int], Any]) -> list[Outcome]:
    """Run ``send(client, i)`` in ``n`` threads released at once; keep responses and errors."""
    barrier = threading.Barrier(n, timeout=120)
    outcomes: list[Outcome] = [None] * n

    def run(i: int) -> None:
        client = app.test_client()
        try:
            barrier.wait()
            outcomes[i] = send(client, i)
        except BaseException as exc:  # noqa: BLE001 - counted and reported as an error
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def failures(outcomes: list[Outcome]) -> list[str]:
    """Exceptions and 5xx answers: what must never happen under a race."""
    bad = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            bad.append(repr(outcome))
        elif outcome.status_code >= 500:
            bad.append(f"{outcome.status_code} {outcome.get_data(as_text=True)[:200]}")
    return bad


def scalar_count(model: Any, *where: Any) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def announcements() -> int:
    """Outbox rows announcing a decision: one per claim filed (its job writes the email)."""
    return scalar_count(jobs.OutboxJob, jobs.OutboxJob.job_name == "claims.announce")


def audit_count(action: str) -> int:
    return scalar_count(AuditEvent, AuditEvent.action == action)


def fresh_round(app: Flask) -> None:
    """Empty every table and load the catalog again: each round proves the race from scratch."""
    _empty_tables(app)
    with app.app_context():
        load_catalog()


def chain_ok() -> int:
    result = verify_chain()
    assert result.ok, result.problem
    return result.events_checked


# Requests that arrive together queue for a database connection, as they would for a worker
# of a real server; the default 30 s pool timeout would turn a long queue into errors.
RACE_ENGINE_OPTIONS = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20,
                       "pool_timeout": 120}


@pytest.fixture
def race_app(make_app) -> Iterator[Flask]:
    """One app for all threads; jobs go to a private rq queue when Redis is there, as in
    production, so a request holds one connection and 200 can be in flight together."""
    if not TEST_REDIS_URL:
        yield make_app(SQLALCHEMY_ENGINE_OPTIONS=RACE_ENGINE_OPTIONS)
        return
    app = make_app(SQLALCHEMY_ENGINE_OPTIONS=RACE_ENGINE_OPTIONS, REDIS_URL=TEST_REDIS_URL,
                   RQ_DEFAULT_QUEUE=f"races-{uuid.uuid4().hex[:8]}")
    yield app
    with app.app_context():
        jobs.queue_for(app).empty()


def test_fifty_concurrent_claims_for_one_serial_leave_one_open_claim(race_app):
    started = time.perf_counter()
    for _round in range(RACE_ROUNDS):
        fresh_round(race_app)
        with race_app.app_context():
            register_purchase("RACE-ONE")
        outcomes = hammer(race_app, 50, lambda c, i: c.post("/api/v1/claims",
                                                           json=claim_body("RACE-ONE")))
        errors = failures(outcomes)
        REPORT.add("50 claims, one serial", rounds=1, requests=50, errors=len(errors))
        assert not errors, errors
        statuses = sorted(o.status_code for o in outcomes)
        assert statuses == [200] * 49 + [201], statuses
        assert len({o.json["claim_number"] for o in outcomes}) == 1
        assert all(o.json["duplicate"] == (o.status_code == 200) for o in outcomes)
        with race_app.app_context():
            counts = (scalar_count(Claim), scalar_count(Rma), announcements(),
                      audit_count("claim.filed"), audit_count("rma.issued"))
            assert counts == (1, 1, 1, 1, 1), "claims, rmas, announcements, filed, issued"
            checked = chain_ok()
        REPORT.add("50 claims, one serial", winners=1, rows_verified=5 + checked)
    REPORT.add("50 claims, one serial", seconds=time.perf_counter() - started)


def test_two_hundred_concurrent_rma_issues_are_all_distinct(race_app):
    started = time.perf_counter()
    serials = [f"RMA{i:03d}" for i in range(200)]
    for _round in range(RACE_ROUNDS):
        fresh_round(race_app)
        with race_app.app_context():
            report = run_import("purchases", csv_bytes(
                PURCHASE_HEADER, *(purchase_row(s, bought=_recent()) for s in serials)),
                actor=TEST_ACTOR)
            assert report.rejected == 0, report.errors
        outcomes = hammer(race_app, 200, lambda c, i: c.post("/api/v1/claims",
                                                            json=claim_body(serials[i])))
        errors = failures(outcomes)
        REPORT.add("200 RMA issues", rounds=1, requests=200, errors=len(errors))
        assert not errors, errors
        assert [o.status_code for o in outcomes] == [201] * 200
        answered = [o.json["rma_number"] for o in outcomes]
        assert len(set(answered)) == 200
        with race_app.app_context():
            numbers = db.session.scalars(select(Rma.rma_number)).all()
            assert len(numbers) == 200 == len(set(numbers))
            assert set(numbers) == set(answered)
            assert all(parse_rma_number(n).outcome == "ok" for n in numbers)
            assert scalar_count(Claim) == 200 and audit_count("rma.issued") == 200
            checked = chain_ok()
        REPORT.add("200 RMA issues", winners=200, rows_verified=len(numbers) + 200 + checked)
    REPORT.add("200 RMA issues", seconds=time.perf_counter() - started)


def _recent():
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC).date() - timedelta(days=100)


def test_twenty_concurrent_scans_of_one_label_receive_it_once(race_app):
    started = time.perf_counter()
    for _round in range(RACE_ROUNDS):
        fresh_round(race_app)
        with race_app.app_context():
            register_purchase("RACE-SCAN")
            number = race_app.test_client().post(
                "/api/v1/claims", json=claim_body("RACE-SCAN")).json["rma_number"]
            headers = bearer(staff_token("warehouse"))

        def scan(client: Any, i: int, headers: dict = headers, number: str = number) -> Any:
            return client.post("/api/v1/warehouse/scans", headers=headers,
                               json={"code": number, "station": f"s{i}"})

        outcomes = hammer(race_app, 20, scan)
        errors = failures(outcomes)
        REPORT.add("20 scans, one label", rounds=1, requests=20, errors=len(errors))
        assert not errors, errors
        assert all(o.status_code == 200 for o in outcomes)
        kinds = sorted(o.json["outcome"] for o in outcomes)
        assert kinds == ["already_received"] * 19 + ["received"], kinds
        with race_app.app_context():
            counts = (audit_count("unit.received"), scalar_count(StockMovement),
                      scalar_count(Scan), scalar_count(Unit, Unit.status == "received"))
            assert counts == (1, 1, 20, 1), "received events, movements, scans, units"
            checked = chain_ok()
        REPORT.add("20 scans, one label", winners=1, rows_verified=23 + checked)
    REPORT.add("20 scans, one label", seconds=time.perf_counter() - started)


PARTNER_WRITERS = 8


def test_concurrent_partner_updates_with_one_version_let_exactly_one_win(race_app):
    started = time.perf_counter()
    for _round in range(RACE_ROUNDS):
        fresh_round(race_app)
        with race_app.app_context():
            _, key = partner_key("RACE")
            number = ship_units_to(race_app.test_client(), "RACE", ["RACE-P"])[0]
        path = f"/api/v1/partner/units/{number}"

        def move(client: Any, i: int, key: str = key, path: str = path) -> Any:
            target = "received_at_partner"
            return client.patch(path, json={"status": target, "note": f"writer {i}"},
                                headers={**bearer(key), "If-Match": '"1"'})

        outcomes = hammer(race_app, PARTNER_WRITERS, move)
        errors = failures(outcomes)
        REPORT.add("partner updates, stale version", rounds=1, requests=PARTNER_WRITERS + 1,
                   errors=len(errors))
        assert not errors, errors
        statuses = sorted(o.status_code for o in outcomes)
        assert statuses.count(200) == 1, statuses
        assert set(statuses) <= {200, 409, 412}, statuses
        winner = next(o for o in outcomes if o.status_code == 200)
        assert winner.headers["ETag"] == '"2"'
        # The loser's retry with the version it read is still refused, without a write.
        with race_app.app_context():
            stale = race_app.test_client().patch(
                path, json={"status": "diagnosing"}, headers={**bearer(key), "If-Match": '"1"'})
            assert stale.status_code == 412 and stale.json["version"] == 2
            moved = scalar_count(RepairEvent, RepairEvent.to_status == "received_at_partner")
            later = scalar_count(RepairEvent, RepairEvent.to_status == "diagnosing")
            changes = audit_count("repair.status_changed")
            assert (moved, later, changes) == (1, 0, 1), "moves, stale moves, audit events"
            checked = chain_ok()
        REPORT.add("partner updates, stale version", winners=1, rows_verified=3 + checked)
    REPORT.add("partner updates, stale version", seconds=time.perf_counter() - started)


def test_concurrent_requests_sharing_an_idempotency_key_file_once(race_app):
    started = time.perf_counter()
    same, other = 12, 4
    for _round in range(RACE_ROUNDS):
        fresh_round(race_app)
        with race_app.app_context():
            register_purchase("IDEM-A")
            register_purchase("IDEM-B")
        key = {"Idempotency-Key": f"order-{_round}"}

        def send(client: Any, i: int, key: dict = key) -> Any:
            serial = "IDEM-A" if i < same else "IDEM-B"
            return client.post("/api/v1/claims", json=claim_body(serial), headers=key)

        outcomes = hammer(race_app, same + other, send)
        errors = failures(outcomes)
        REPORT.add("Idempotency-Key", rounds=1, requests=same + other + 1, errors=len(errors))
        assert not errors, errors
        with race_app.app_context():
            claim = db.session.scalar(select(Claim))
            winner_serial = claim.serial_number
        for i, outcome in enumerate(outcomes):
            serial = "IDEM-A" if i < same else "IDEM-B"
            if serial == winner_serial:
                assert outcome.status_code in (200, 201), outcome.json
                assert outcome.json["claim_number"] == claim.claim_number
            else:
                assert outcome.status_code == 422, outcome.json
                assert "Idempotency-Key" in outcome.json["errors"]
        # A replay after the race answers exactly what the first request was answered.
        replay = race_app.test_client().post("/api/v1/claims", json=claim_body(winner_serial),
                                             headers=key)
        assert replay.status_code == 201 and replay.json["claim_number"] == claim.claim_number
        with race_app.app_context():
            counts = (scalar_count(Claim), scalar_count(IdempotencyRecord),
                      announcements(), audit_count("claim.filed"))
            assert counts == (1, 1, 1, 1), "claims, idempotency records, announcements, filed"
            checked = chain_ok()
        REPORT.add("Idempotency-Key", winners=1, rows_verified=4 + checked)
    REPORT.add("Idempotency-Key", seconds=time.perf_counter() - started)


def test_zz_print_race_figures(capsys):
    """Last in the module: one line per race, printed past pytest's capture."""
    with capsys.disabled():
        print()
        for line in REPORT.lines():
            print(line)
    REPORT.write()
    assert all(f.errors == 0 for f in REPORT.cases.values())
