"""Routing received units, shipments to partners and back, and the manifest."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from common.extensions import db
from inventory import routing
from inventory.models import StockMovement, Unit
from tests.factories import (
    bearer,
    claim_body,
    load_catalog,
    make_partner,
    register_purchase,
    staff_token,
)
from tests.test_labels import needs_tools, rasterise, scan, tools, write_pdf  # noqa: F401

P = routing.PartnerLoad


@pytest.mark.parametrize(
    ("remedy", "grade", "mismatch", "country", "expected"),
    [
        ("repair", "A", False, "SE", (routing.REPAIR_AT_PARTNER, "SEFIX")),
        ("repair", None, False, "ES", (routing.REPAIR_AT_PARTNER, "ESFIX")),
        ("repair", "B", False, "DE", (routing.REPAIR_AT_PARTNER, "DEFIX")),  # same country
        ("repair", "B", False, "FR", (routing.REPAIR_AT_PARTNER, "ESFIX")),  # lightest load
        ("repair", "scrap", False, "SE", (routing.SCRAP, None)),
        ("repair", "A", True, "SE", (routing.HOLD_FOR_INSPECTION, None)),
        ("replace", "A", False, "SE", (routing.REPLACE_FROM_STOCK, None)),
        ("replace", "C", False, "SE", (routing.RETURN_TO_VENDOR, None)),
        ("refund", "B", False, "SE", (routing.REFURBISH_TO_STOCK, None)),
        ("refund", "C", False, "SE", (routing.RETURN_TO_VENDOR, None)),
    ],
)
def test_default_routes(remedy, grade, mismatch, country, expected):
    partners = [P("SEFIX", "SE", 5), P("ESFIX", "ES", 1), P("DEFIX", "DE", 9)]
    route = routing.default_route(remedy=remedy, grade=grade, serial_mismatch=mismatch,
                                  customer_country=country, partners=partners)
    assert (route.disposition, route.partner_code) == expected
    assert route.why


def test_repair_without_partners_is_held():
    route = routing.default_route(remedy="repair", grade="A", serial_mismatch=False,
                                  customer_country="SE", partners=[])
    assert route.disposition == routing.HOLD_FOR_INSPECTION


@pytest.fixture
def received(client):
    """Two received units whose customers are in Sweden; two partners."""
    load_catalog()
    make_partner("SEFIX", country="SE")
    make_partner("ESFIX", country="ES")
    numbers = []
    for serial in ("U1", "U2"):
        register_purchase(serial)
        body = claim_body(serial, return_address={"country": "SE", "city": "Lund"})
        numbers.append(client.post("/api/v1/claims", json=body).json["rma_number"])
    token = bearer(staff_token("warehouse"))
    for number in numbers:
        client.post("/api/v1/warehouse/scans", json={"code": number, "grade": "A"},
                    headers=token)
    return numbers, token


def test_route_follows_the_rules_and_overrides_need_a_reason(client, received):
    (first, second), token = received
    suggestion = client.get(f"/api/v1/warehouse/units/{first}/route", headers=token).json
    assert suggestion["disposition"] == "repair_at_partner"
    assert suggestion["partner_code"] == "SEFIX"
    routed = client.post(f"/api/v1/warehouse/units/{first}/route", json={}, headers=token)
    assert routed.status_code == 200 and routed.json["status"] == "routed"
    refused = client.post(f"/api/v1/warehouse/units/{second}/route",
                          json={"partner_code": "ESFIX"}, headers=token)
    assert refused.status_code == 422 and "reason" in refused.json["errors"]
    override = client.post(f"/api/v1/warehouse/units/{second}/route", headers=token,
                           json={"partner_code": "ESFIX", "reason": "SEFIX lacks the part"})
    assert override.status_code == 200
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "unit.routed")
                               .order_by(AuditEvent.seq)).all()[-1]
    assert event.data["override"] is True and event.reason == "SEFIX lacks the part"
    assert event.data["suggested"]["partner_code"] == "SEFIX"


def test_scrapping_moves_the_unit_to_scrap(client, received):
    (first, _), token = received
    response = client.post(f"/api/v1/warehouse/units/{first}/route", headers=token,
                           json={"disposition": "scrap", "reason": "battery swollen"})
    assert response.json["status"] == "scrapped" and response.json["location"] == "scrap"
    assert db.session.scalars(select(StockMovement.to_location).order_by(
        StockMovement.id)).all()[-1] == "scrap"


def test_unit_not_yet_received_cannot_be_routed(client, app):
    load_catalog()
    make_partner("SEFIX", country="SE")
    register_purchase("U9")
    number = client.post("/api/v1/claims", json=claim_body("U9")).json["rma_number"]
    response = client.post(f"/api/v1/warehouse/units/{number}/route", json={},
                           headers=bearer(staff_token("warehouse")))
    assert response.status_code == 409


def test_shipment_to_a_partner_and_back_with_discrepancies(client, received):
    (first, second), token = received
    for number in (first, second):
        client.post(f"/api/v1/warehouse/units/{number}/route", json={}, headers=token)
    shipment = client.post("/api/v1/warehouse/shipments", headers=token,
                           json={"partner_code": "SEFIX", "rma_numbers": [first]}).json
    number = shipment["shipment_number"]
    assert number.startswith("S") and len(number) == 10
    added = client.post(f"/api/v1/warehouse/shipments/{number}/items", headers=token,
                        json={"rma_number": second})
    assert added.status_code == 200 and len(added.json["items"]) == 2
    twice = client.post(f"/api/v1/warehouse/shipments/{number}/items", headers=token,
                        json={"rma_number": second})
    assert twice.status_code == 409
    sent = client.post(f"/api/v1/warehouse/shipments/{number}/send", headers=token)
    assert sent.status_code == 200 and sent.json["status"] == "sent"
    assert client.post(f"/api/v1/warehouse/shipments/{number}/send",
                       headers=token).status_code == 409
    units = db.session.scalars(select(Unit)).all()
    assert {u.status for u in units} == {"shipped_to_partner"}
    assert {u.location for u in units} == {f"transit:{number}"}
    back = client.post("/api/v1/warehouse/shipments", headers=token, json={
        "partner_code": "SEFIX", "direction": "from_partner", "rma_numbers": [first]}).json
    back_number = back["shipment_number"]
    expected = client.post(f"/api/v1/warehouse/shipments/{back_number}/scans", headers=token,
                           json={"code": first}).json
    assert expected["outcome"] == "received"
    again = client.post(f"/api/v1/warehouse/shipments/{back_number}/scans", headers=token,
                        json={"code": first}).json
    assert again["outcome"] == "already_received"
    surprise = client.post(f"/api/v1/warehouse/shipments/{back_number}/scans", headers=token,
                           json={"code": second}).json
    assert surprise["outcome"] == "unexpected"
    report = client.post(f"/api/v1/warehouse/shipments/{back_number}/close",
                         headers=token).json
    assert report["missing"] == [] and report["unexpected"] == [second]
    assert sorted(report["received"]) == sorted([first, second])


def test_closing_reports_missing_units(client, received):
    (first, second), token = received
    for number in (first, second):
        client.post(f"/api/v1/warehouse/units/{number}/route", json={}, headers=token)
    out = client.post("/api/v1/warehouse/shipments", headers=token,
                      json={"partner_code": "SEFIX", "rma_numbers": [first, second]}).json
    client.post(f"/api/v1/warehouse/shipments/{out['shipment_number']}/send", headers=token)
    back = client.post("/api/v1/warehouse/shipments", headers=token, json={
        "partner_code": "SEFIX", "direction": "from_partner",
        "rma_numbers": [first, second]}).json
    client.post(f"/api/v1/warehouse/shipments/{back['shipment_number']}/scans", headers=token,
                json={"code": first})
    report = client.post(f"/api/v1/warehouse/shipments/{back['shipment_number']}/close",
                         headers=token).json
    assert report["missing"] == [second] and report["unexpected"] == []
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "shipment.closed"))
    assert event.data["missing"] == [second]


def test_a_unit_routed_elsewhere_cannot_be_packed(client, received):
    (first, _), token = received
    client.post(f"/api/v1/warehouse/units/{first}/route", json={}, headers=token)
    shipment = client.post("/api/v1/warehouse/shipments", headers=token,
                           json={"partner_code": "ESFIX"}).json
    refused = client.post(f"/api/v1/warehouse/shipments/{shipment['shipment_number']}/items",
                          headers=token, json={"rma_number": first})
    assert refused.status_code == 409


@needs_tools
def test_manifest_barcodes_decode(client, received, tmp_path):
    (first, second), token = received
    for number in (first, second):
        client.post(f"/api/v1/warehouse/units/{number}/route", json={}, headers=token)
    shipment = client.post("/api/v1/warehouse/shipments", headers=token,
                           json={"partner_code": "SEFIX", "rma_numbers": [first, second]}).json
    pdf = client.get(f"/api/v1/warehouse/shipments/{shipment['shipment_number']}/manifest.pdf",
                     headers=token)
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    codes = scan(rasterise(write_pdf(tmp_path, pdf.data, "manifest")))
    assert sorted(codes) == sorted([shipment["shipment_number"], first, second])
