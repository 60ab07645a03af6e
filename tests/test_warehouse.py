"""Receiving scans, unit views, CSV exports and the parts ledger."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from audit.models import AuditEvent
from claims.models import TimelineEntry
from common.actors import Actor
from common.errors import ValidationFailed
from common.extensions import db
from common.models import utcnow
from inventory import service
from inventory.errors import InsufficientStock
from inventory.models import Scan, StockLevel, StockMovement, Unit
from rma.models import Rma
from tests.conftest import csrf_token_from, requires_postgres
from tests.factories import (
    PASSWORD,
    bearer,
    claim_body,
    load_catalog,
    make_user,
    mistyped,
    register_purchase,
    staff_token,
)

ACTOR = Actor("user", "1", "dock@example.test")


@pytest.fixture
def rma_number(client):
    load_catalog()
    register_purchase("SN1")
    return client.post("/api/v1/claims", json=claim_body()).json["rma_number"]


@pytest.fixture
def scanner(app):
    return bearer(staff_token("warehouse"))


def scan(client, headers, code, **extra):
    response = client.post("/api/v1/warehouse/scans", json={"code": code, **extra},
                           headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def test_unit_is_expected_from_the_moment_the_rma_is_issued(app, rma_number):
    unit = db.session.scalar(select(Unit))
    assert (unit.status, unit.location, unit.expected_serial) == ("awaiting_return", "customer",
                                                                  "SN1")


def test_scanning_the_label_receives_the_unit_once(client, scanner, rma_number):
    first = scan(client, scanner, rma_number, station="dock-1")
    assert first["outcome"] == "received" and first["severity"] == "success"
    assert first["sku"] == "PH-1" and first["expected_serial"] == "SN1"
    assert "serial" in first["next_action"].lower()
    second = scan(client, scanner, rma_number)
    assert second["outcome"] == "already_received" and second["severity"] == "warning"
    unit = db.session.scalar(select(Unit))
    assert unit.status == "received" and unit.location == "warehouse:RECEIVING"
    assert unit.received_station == "dock-1"
    assert db.session.scalar(select(func.count(StockMovement.id))) == 1
    actions = db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.action == "unit.received")).all()
    assert actions == ["unit.received"]
    assert db.session.scalar(select(Rma.status)) == "received"
    kinds = db.session.scalars(select(TimelineEntry.kind)).all()
    assert kinds.count("received") == 1


def test_formatted_and_lowercase_labels_are_read(client, scanner, rma_number):
    typed = f"{rma_number[:5]}-{rma_number[5:]}".lower()
    assert scan(client, scanner, typed)["outcome"] == "received"


def test_serial_given_with_the_scan_is_checked(client, scanner, rma_number):
    result = scan(client, scanner, rma_number, serial_number="sn1", grade="B")
    assert result["outcome"] == "received" and result["received_serial"] == "SN1"
    assert result["grade"] == "B"


def test_a_different_unit_is_received_and_flagged(client, scanner, rma_number):
    result = scan(client, scanner, rma_number, serial_number="OTHER-9")
    assert result["outcome"] == "serial_mismatch" and result["severity"] == "warning"
    unit = db.session.scalar(select(Unit))
    assert unit.status == "received" and unit.serial_mismatch
    assert unit.received_serial == "OTHER-9"


def test_serial_scanned_after_the_label_is_recorded_once(client, scanner, rma_number):
    scan(client, scanner, rma_number)
    recorded = scan(client, scanner, rma_number, serial_number="SN1")
    assert recorded["outcome"] == "serial_recorded"
    again = scan(client, scanner, rma_number, serial_number="SN9")
    assert again["outcome"] == "already_received"
    assert db.session.scalar(select(Unit.received_serial)) == "SN1"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("", "malformed"),
        ("R" * 300, "malformed"),
        ("5901234123457", "not_an_rma"),  # an EAN-13 product barcode
        ("SN1", "not_an_rma"),
        ("'; DROP TABLE units; --", "not_an_rma"),
        ("R22222222A", "unknown_or_bad"),
    ],
)
def test_bad_scans_get_a_distinct_answer_and_are_recorded(client, scanner, rma_number, code,
                                                          outcome):
    response = client.post("/api/v1/warehouse/scans", json={"code": code}, headers=scanner)
    if code == "":
        assert response.status_code == 422  # the schema refuses an empty code
        return
    result = response.json
    if outcome == "unknown_or_bad":
        assert result["outcome"] in ("unknown", "bad_check_character")
    else:
        assert result["outcome"] == outcome
    assert result["severity"] == "error" and result["message"]
    assert db.session.scalar(select(Unit.status)) == "awaiting_return"
    assert db.session.scalar(select(func.count(Scan.id))) == 1


def test_mistyped_check_character_is_refused(client, scanner, rma_number):
    result = scan(client, scanner, mistyped(rma_number))
    assert result["outcome"] == "bad_check_character"


def test_valid_but_unknown_rma(client, scanner, rma_number):
    from rma.numbers import new_rma_number

    other = new_rma_number()
    assert scan(client, scanner, other)["outcome"] == "unknown"


def test_closed_rma_is_not_expected(client, scanner, rma_number):
    db.session.execute(update(Rma).values(status="closed"))
    db.session.commit()
    result = scan(client, scanner, rma_number)
    assert result["outcome"] == "not_expected"
    assert db.session.scalar(select(Unit.status)) == "awaiting_return"


def test_customer_sees_the_receipt_and_gets_an_email(client, scanner, rma_number):
    from messaging.models import Message

    scan(client, scanner, rma_number)
    kinds = db.session.scalars(select(Message.kind).order_by(Message.id)).all()
    assert kinds[-1] == "status_update"
    body = db.session.scalar(select(Message.body).order_by(Message.id.desc()))
    assert "arrived at our service centre" in body


def test_units_list_csv_and_aging(client, scanner, rma_number):
    scan(client, scanner, rma_number)
    reader = bearer(staff_token("finance"))
    units = client.get("/api/v1/warehouse/units", headers=reader).json
    assert units[0]["rma_number"] == rma_number and units[0]["days_in_status"] == 0
    assert client.get("/api/v1/warehouse/aging?older_than_days=1", headers=reader).json == []
    db.session.execute(update(Unit).values(status_changed_at=utcnow() - timedelta(days=9)))
    db.session.commit()
    aged = client.get("/api/v1/warehouse/aging?older_than_days=7", headers=reader).json
    assert [u["rma_number"] for u in aged] == [rma_number] and aged[0]["days_in_status"] == 9
    exported = client.get("/api/v1/warehouse/units?format=csv", headers=reader)
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert rows[0]["rma_number"] == rma_number and rows[0]["status"] == "received"


def test_csv_cells_cannot_become_formulas():
    from common.csv_export import safe_cell

    assert [safe_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "ok", None, 3)] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "ok", "", "3"]


def test_moving_a_unit_between_bins_is_in_the_ledger(client, scanner, rma_number):
    scan(client, scanner, rma_number)
    moved = client.post(f"/api/v1/warehouse/units/{rma_number}/move", headers=scanner,
                        json={"to_location": "warehouse:A-01", "note": "shelved"})
    assert moved.status_code == 200 and moved.json["location"] == "warehouse:A-01"
    moves = db.session.scalars(select(StockMovement.to_location).order_by(StockMovement.id)).all()
    assert moves == ["warehouse:RECEIVING", "warehouse:A-01"]
    bad = client.post(f"/api/v1/warehouse/units/{rma_number}/move", headers=scanner,
                      json={"to_location": "moon"})
    assert bad.status_code == 422


# --- parts ledger ------------------------------------------------------------------------------


def test_parts_issued_to_a_partner_are_accounted_for(app):
    load_catalog()
    service.move_parts(part_number="bat-1", quantity=10, from_location="supplier",
                       to_location="warehouse:MAIN", reason="received", actor=ACTOR)
    service.move_parts(part_number="BAT-1", quantity=4, from_location="warehouse:MAIN",
                       to_location="partner:SHOP", reason="issued_to_partner", actor=ACTOR)
    service.move_parts(part_number="BAT-1", quantity=1, from_location="partner:SHOP",
                       to_location="consumed:REPAIR-1", reason="consumed", actor=ACTOR)
    service.move_parts(part_number="BAT-1", quantity=1, from_location="partner:SHOP",
                       to_location="warehouse:CORES", reason="core_returned", actor=ACTOR)
    assert service.level("warehouse:MAIN", "BAT-1") == 6
    assert service.level("partner:SHOP", "BAT-1") == 2
    assert service.level("warehouse:CORES", "BAT-1") == 1
    assert service.verify_levels() == []
    account = service.partner_parts_account("shop")
    assert account == [{"part_number": "BAT-1", "issued": 4, "consumed": 1, "returned": 1,
                        "other_out": 0, "on_hand": 2}]


def test_moving_more_parts_than_on_hand_is_refused_and_writes_nothing(client, app):
    load_catalog()
    service.move_parts(part_number="MB-1", quantity=2, from_location="supplier",
                       to_location="warehouse:MAIN", reason="received", actor=ACTOR)
    with pytest.raises(InsufficientStock):
        service.move_parts(part_number="MB-1", quantity=3, from_location="warehouse:MAIN",
                           to_location="partner:SHOP", reason="issued_to_partner", actor=ACTOR)
    assert service.level("warehouse:MAIN", "MB-1") == 2
    assert db.session.scalar(select(func.count(StockMovement.id))) == 1
    response = client.post("/api/v1/warehouse/stock/movements", headers=bearer(
        staff_token("warehouse")), json={"part_number": "MB-1", "quantity": 5,
                                         "from_location": "warehouse:MAIN",
                                         "to_location": "partner:SHOP",
                                         "reason": "issued_to_partner"})
    assert response.status_code == 409 and response.json["on_hand"] == 2


def test_adjustments_need_a_reason_and_are_audited(app):
    load_catalog()
    service.move_parts(part_number="SCR-1", quantity=5, from_location="supplier",
                       to_location="warehouse:MAIN", reason="received", actor=ACTOR)
    with pytest.raises(ValidationFailed):
        service.adjust_stock(part_number="SCR-1", location="warehouse:MAIN", counted=3,
                             reason=" ", actor=ACTOR)
    service.adjust_stock(part_number="SCR-1", location="warehouse:MAIN", counted=3,
                         reason="stock take: 2 broken", actor=ACTOR)
    assert service.level("warehouse:MAIN", "SCR-1") == 3
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "part.adjusted"))
    assert event.reason == "stock take: 2 broken" and event.data["quantity"] == 2
    assert service.adjust_stock(part_number="SCR-1", location="warehouse:MAIN", counted=3,
                                reason="recount", actor=ACTOR) is None
    assert service.verify_levels() == []


def test_unknown_parts_and_bad_quantities_are_refused(app):
    load_catalog()
    with pytest.raises(ValidationFailed):
        service.move_parts(part_number="NOPE", quantity=1, from_location="supplier",
                           to_location="warehouse:MAIN", reason="received", actor=ACTOR)
    with pytest.raises(ValidationFailed):
        service.move_parts(part_number="MB-1", quantity=0, from_location="supplier",
                           to_location="warehouse:MAIN", reason="received", actor=ACTOR)


LOCATIONS = ["warehouse:MAIN", "warehouse:B", "partner:P1", "partner:P2"]
MOVES = st.lists(
    st.tuples(st.sampled_from(["supplier", *LOCATIONS]),
              st.sampled_from([*LOCATIONS, "consumed:R", "scrap"]),
              st.sampled_from(["MB-1", "BAT-1"]),
              st.integers(min_value=1, max_value=7)),
    min_size=1, max_size=25,
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=MOVES)
def test_levels_always_equal_the_ledger_and_never_go_negative(app, moves):
    db.session.execute(StockMovement.__table__.delete())
    db.session.execute(StockLevel.__table__.delete())
    db.session.commit()
    from catalog.models import Part

    if db.session.scalar(select(func.count(Part.id))) == 0:
        load_catalog()
    model: dict[tuple[str, str], int] = {}
    for source, target, part, quantity in moves:
        if source == target:
            continue
        available = model.get((source, part), 0)
        try:
            service.move_parts(part_number=part, quantity=quantity, from_location=source,
                               to_location=target, reason="moved", actor=ACTOR)
        except InsufficientStock:
            assert service.tracked(source) and available < quantity
            continue
        assert not service.tracked(source) or available >= quantity
        if service.tracked(source):
            model[(source, part)] = available - quantity
        if service.tracked(target):
            model[(target, part)] = model.get((target, part), 0) + quantity
    assert service.verify_levels() == []
    levels = {(lv.location, lv.part_number): lv.quantity
              for lv in db.session.scalars(select(StockLevel))}
    assert all(q >= 0 for q in levels.values())
    assert {k: v for k, v in levels.items() if v} == {k: v for k, v in model.items() if v}


# --- the station page --------------------------------------------------------------------------


def login(client, role: str):
    user = make_user(role)
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": user.email, "password": PASSWORD,
                                "csrf_token": csrf_token_from(page)})


def test_station_page_receives_then_asks_for_the_serial(client, rma_number):
    login(client, "warehouse")
    page = client.get("/warehouse/scan").get_data(as_text=True)
    assert 'autofocus' in page
    first = client.post("/warehouse/scan", data={"csrf_token": csrf_token_from(page),
                                                 "code": rma_number})
    html = first.get_data(as_text=True)
    assert "RECEIVED" in html and "feedback-success" in html
    assert 'name="pending_rma"' in html and "Scan the serial number" in html
    second = client.post("/warehouse/scan", data={"csrf_token": csrf_token_from(html),
                                                  "code": "SN1", "pending_rma": rma_number})
    html = second.get_data(as_text=True)
    assert "SERIAL RECORDED" in html
    assert rma_number in html  # the last-scans list


def test_station_page_is_for_warehouse_staff(client, rma_number):
    login(client, "finance")
    assert client.get("/warehouse/scan").status_code == 403
    assert client.get("/warehouse/units").status_code == 200


@requires_postgres
def test_twenty_concurrent_scans_of_one_label_receive_once(make_app):
    app = make_app()
    with app.app_context():
        load_catalog()
        register_purchase("RACE-SCAN")
        client = app.test_client()
        number = client.post("/api/v1/claims", json=claim_body("RACE-SCAN")).json["rma_number"]
        headers = bearer(staff_token("warehouse"))
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def station(i: int) -> None:
        c = app.test_client()
        barrier.wait()
        response = c.post("/api/v1/warehouse/scans", headers=headers,
                          json={"code": number, "station": f"s{i}"})
        outcomes.append(response.json["outcome"])

    threads = [threading.Thread(target=station, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("received") == 1
    assert outcomes.count("already_received") == 19
    with app.app_context():
        assert db.session.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "unit.received")) == 1
        assert db.session.scalar(select(func.count(StockMovement.id))) == 1
        assert db.session.scalar(select(func.count(Scan.id))) == 20
