"""Partners move their units through repair: allowed transitions only, optimistic locking,
and never another partner's unit."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from claims.models import TimelineEntry
from common.extensions import db
from inventory.models import Unit
from partners import repair_states as states
from partners.models import RepairEvent
from tests.conftest import requires_postgres
from tests.factories import (
    bearer,
    claim_body,
    load_catalog,
    partner_key,
    register_purchase,
    staff_token,
)


def ship_units_to(client, partner_code: str, serials: list[str]) -> list[str]:
    """File, receive, route and ship units to a partner; returns their RMA numbers."""
    warehouse = bearer(staff_token("warehouse"))
    numbers = []
    for serial in serials:
        register_purchase(serial)
        number = client.post("/api/v1/claims", json=claim_body(serial)).json["rma_number"]
        client.post("/api/v1/warehouse/scans", json={"code": number}, headers=warehouse)
        client.post(f"/api/v1/warehouse/units/{number}/route", headers=warehouse,
                    json={"partner_code": partner_code, "reason": "test routing"})
        numbers.append(number)
    shipment = client.post("/api/v1/warehouse/shipments", headers=warehouse,
                           json={"partner_code": partner_code, "rma_numbers": numbers}).json
    sent = client.post(f"/api/v1/warehouse/shipments/{shipment['shipment_number']}/send",
                       headers=warehouse)
    assert sent.status_code == 200, sent.json
    return numbers


@pytest.fixture
def setup(client):
    load_catalog()
    mine, my_key = partner_key("MINE")
    other, other_key = partner_key("OTHER")
    numbers = ship_units_to(client, "MINE", ["R1", "R2"])
    theirs = ship_units_to(client, "OTHER", ["R3"])
    return {"mine": bearer(my_key), "other": bearer(other_key), "numbers": numbers,
            "theirs": theirs}


def patch(client, headers, number, status, version, note=None):
    extra = {"If-Match": f'"{version}"'} if version is not None else {}
    return client.patch(f"/api/v1/partner/units/{number}", headers={**headers, **extra},
                        json={"status": status, **({"note": note} if note else {})})


def test_partner_lists_only_its_own_units(client, setup):
    listed = client.get("/api/v1/partner/units", headers=setup["mine"]).json
    assert sorted(u["rma_number"] for u in listed) == sorted(setup["numbers"])
    assert all(u["status"] == "in_transit" and u["allowed_next"] == ["received_at_partner"]
               for u in listed)
    theirs = setup["theirs"][0]
    assert client.get(f"/api/v1/partner/units/{theirs}", headers=setup["mine"]
                      ).status_code == 404
    assert patch(client, setup["mine"], theirs, "received_at_partner", 1).status_code == 404


def test_full_repair_path_with_etags_and_customer_updates(client, setup):
    number = setup["numbers"][0]
    read = client.get(f"/api/v1/partner/units/{number}", headers=setup["mine"])
    assert read.headers["ETag"] == '"1"'
    version = 1
    for status in ("received_at_partner", "diagnosing", "repairing", "repaired",
                   "shipped_back"):
        response = patch(client, setup["mine"], number, status, version, note=f"to {status}")
        assert response.status_code == 200, response.json
        version += 1
        assert response.headers["ETag"] == f'"{version}"'
    unit = db.session.scalar(select(Unit).where(Unit.expected_serial == "R1"))
    assert unit.status == "shipped_back"
    events = db.session.scalars(select(RepairEvent.to_status).order_by(RepairEvent.id)).all()
    assert events[-5:] == ["received_at_partner", "diagnosing", "repairing", "repaired",
                           "shipped_back"]
    steps = db.session.scalars(select(TimelineEntry.kind).where(
        TimelineEntry.claim_id == unit.rma.claim_id)).all()
    assert {"at_partner", "repairing", "repaired", "shipped_back"} <= set(steps)


@pytest.mark.parametrize("current", list(states.TRANSITIONS))
def test_can_move_follows_the_transition_table(current):
    for target in states.STATUSES:
        assert states.can_move(current, target) == (target in states.TRANSITIONS[current])


def test_illegal_transition_via_the_api(client, setup):
    number = setup["numbers"][0]
    response = patch(client, setup["mine"], number, "repaired", 1)
    assert response.status_code == 409
    assert response.json["allowed"] == ["received_at_partner"]
    assert response.json["current_status"] == "in_transit" and response.json["status"] == 409


def test_stale_version_is_412_and_missing_if_match_is_428(client, setup):
    number = setup["numbers"][0]
    assert patch(client, setup["mine"], number, "received_at_partner", 1).status_code == 200
    stale = patch(client, setup["mine"], number, "diagnosing", 1)
    assert stale.status_code == 412 and stale.json["version"] == 2
    missing = patch(client, setup["mine"], number, "diagnosing", None)
    assert missing.status_code == 428
    bad = client.patch(f"/api/v1/partner/units/{number}", json={"status": "diagnosing"},
                       headers={**setup["mine"], "If-Match": "not-a-version"})
    assert bad.status_code == 422


def test_staff_cannot_use_the_partner_endpoints(client, setup):
    admin = bearer(staff_token("admin"))
    assert client.get("/api/v1/partner/units", headers=admin).status_code == 403


@requires_postgres
def test_two_concurrent_updates_one_wins_the_other_is_stale(make_app):
    app = make_app()
    with app.app_context():
        load_catalog()
        _, key = partner_key("RACE")
        client = app.test_client()
        number = ship_units_to(client, "RACE", ["RACE-R"])[0]
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def update() -> None:
        c = app.test_client()
        barrier.wait()
        statuses.append(c.patch(f"/api/v1/partner/units/{number}", json={
            "status": "received_at_partner"}, headers={**bearer(key), "If-Match": '"1"'}
        ).status_code)

    threads = [threading.Thread(target=update) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [412] * 7
    with app.app_context():
        assert db.session.scalar(select(RepairEvent.to_status).order_by(
            RepairEvent.id.desc())) == "received_at_partner"
        count = len(db.session.scalars(select(RepairEvent).where(
            RepairEvent.to_status == "received_at_partner")).all())
        assert count == 1


def _login(client, email: str) -> None:
    from tests.conftest import csrf_token_from
    from tests.factories import PASSWORD

    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": email, "password": PASSWORD,
                                "csrf_token": csrf_token_from(page)})


def test_partner_portal_shows_own_units_and_moves_them(client, setup):
    from tests.conftest import csrf_token_from
    from tests.factories import make_user

    make_user("partner", email="tech@mine.example", partner_code="MINE")
    _login(client, "tech@mine.example")
    page = client.get("/partner/units").get_data(as_text=True)
    for number in setup["numbers"]:
        assert number in page
    assert setup["theirs"][0] not in page
    number = setup["numbers"][0]
    moved = client.post(f"/partner/units/{number}", data={
        "csrf_token": csrf_token_from(page), "version": "1", "status": "received_at_partner"})
    assert moved.status_code == 302
    stale = client.post(f"/partner/units/{number}", data={
        "csrf_token": csrf_token_from(page), "version": "1", "status": "diagnosing"},
        follow_redirects=True)
    assert "changed by someone else" in stale.get_data(as_text=True)
    foreign = client.post(f"/partner/units/{setup['theirs'][0]}", data={
        "csrf_token": csrf_token_from(page), "version": "1", "status": "received_at_partner"},
        follow_redirects=True)
    assert "no unit" in foreign.get_data(as_text=True)


def test_staff_cannot_open_the_partner_portal(client, setup):
    from tests.factories import make_user

    make_user("admin", email="boss@example.test")
    _login(client, "boss@example.test")
    assert client.get("/partner/units").status_code == 403
