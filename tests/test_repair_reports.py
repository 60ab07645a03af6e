"""Repair reports: BOM checks, consignment stock, claimed amounts, finance approval, payables."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from sqlalchemy import select

from common.actors import Actor
from common.extensions import db
from inventory import service as inventory
from partners.claim_rules import BomEntry, UsedPart, price_report
from tests.factories import bearer, load_catalog, partner_key, staff_token
from tests.test_partner_repairs import patch, ship_units_to

BOM = {"MB-1": BomEntry("MB-1", 1, Decimal("120.00")),
       "BAT-1": BomEntry("BAT-1", 1, Decimal("20.50"))}
COSTS = {"MB-1": Decimal("120.00"), "BAT-1": Decimal("20.50"), "SCR-1": Decimal("60.00")}


def priced(parts, *, labor=45, insist=False, standard=45):
    return price_report(parts=[UsedPart(p, q) for p, q in parts], bom=BOM, catalog_costs=COSTS,
                        labor_minutes=labor, standard_minutes=standard,
                        rate_per_hour=Decimal("60.00"), insist=insist)


def test_claimed_amount_is_parts_at_catalog_cost_plus_labor():
    check = priced([("MB-1", 1), ("bat-1", 1)], labor=45)
    assert check.errors == {} and check.flags == []
    assert check.parts_amount == Decimal("140.50") and check.labor_amount == Decimal("45.00")
    assert check.claimed_amount == Decimal("185.50")


@pytest.mark.parametrize(
    ("parts", "error"),
    [
        ([("SCR-1", 1)], "not in this product's bill of materials"),
        ([("MB-1", 2)], "at most 1 of MB-1"),
        ([("NOPE", 1)], "not in the parts catalog"),
        ([("MB-1", 1), ("MB-1", 1)], "listed twice"),
    ],
)
def test_parts_the_bom_does_not_allow_are_refused(parts, error):
    check = priced(parts)
    assert any(error in message for messages in check.errors.values() for message in messages)


def test_insisting_keeps_the_part_and_flags_it():
    check = priced([("SCR-1", 1), ("MB-1", 2)], insist=True, labor=200)
    assert check.errors == {}
    assert check.flags == ["part_outside_bom:SCR-1", "above_bom_max:MB-1",
                           "labor_above_twice_standard"]
    assert check.parts_amount == Decimal("300.00")


@pytest.fixture
def repairing(client):
    return start_repairing(client)


def start_repairing(client):
    """Partner SHOP repairing one shipped unit, with two MB-1 boards on consignment."""
    load_catalog()
    _, key = partner_key("SHOP")
    number = ship_units_to(client, "SHOP", ["RR-1"])[0]
    headers = bearer(key)
    for version, status in enumerate(("received_at_partner", "diagnosing", "repairing"),
                                     start=1):
        assert patch(client, headers, number, status, version).status_code == 200
    actor = Actor.system("tests")
    inventory.move_parts(part_number="MB-1", quantity=2, from_location="supplier",
                         to_location="partner:SHOP", reason="issued_to_partner", actor=actor)
    return number, headers


def report(client, headers, number, **body):
    payload = {"diagnosis_code": "BOARD_FAIL", "labor_minutes": 45,
               "parts": [{"part_number": "MB-1", "quantity": 1}], **body}
    return client.post(f"/api/v1/partner/units/{number}/report", json=payload, headers=headers)


def test_report_consumes_consignment_stock_and_is_priced(client, repairing):
    number, headers = repairing
    response = report(client, headers, number)
    assert response.status_code == 201, response.json
    assert response.json["claimed_amount"] == "165.00"  # 120.00 part + 45 min at 60/h = 45.00
    assert inventory.level("partner:SHOP", "MB-1") == 1
    assert inventory.verify_levels() == []
    again = report(client, headers, number)
    assert again.status_code == 409


def test_report_without_stock_is_refused_and_writes_nothing(client, repairing):
    number, headers = repairing
    response = report(client, headers, number, parts=[{"part_number": "MB-1", "quantity": 1},
                                                      {"part_number": "BAT-1", "quantity": 1}])
    assert response.status_code == 409 and "BAT-1" in response.json["detail"]
    assert inventory.level("partner:SHOP", "MB-1") == 2
    from partners.models import RepairReport

    assert db.session.scalar(select(RepairReport.id)) is None


def test_doa_needs_evidence_and_negative_labor_is_refused(client, repairing):
    number, headers = repairing
    assert report(client, headers, number, doa=True).status_code == 422
    assert report(client, headers, number, labor_minutes=-5).status_code == 422
    ok = report(client, headers, number, doa=True, doa_evidence="No power out of the box")
    assert ok.status_code == 201 and "doa_declared" in ok.json["flags"]


def test_finance_approves_into_payables_with_csv(client, repairing):
    number, headers = repairing
    report_id = report(client, headers, number).json["id"]
    finance = bearer(staff_token("finance"))
    queue = client.get("/api/v1/finance/repair-reports?status=submitted", headers=finance).json
    assert [r["id"] for r in queue] == [report_id]
    approved = client.post(f"/api/v1/finance/repair-reports/{report_id}/decision",
                           headers=finance, json={"decision": "approve", "note": "OK"})
    assert approved.status_code == 200 and approved.json["status"] == "approved"
    twice = client.post(f"/api/v1/finance/repair-reports/{report_id}/decision",
                        headers=finance, json={"decision": "reject", "note": "changed mind"})
    assert twice.status_code == 409
    lines = client.get("/api/v1/finance/payables?partner_code=SHOP", headers=finance).json
    assert lines == [{"kind": "repair", "report_id": report_id, "partner_code": "SHOP",
                      "rma_number": number,
                      "period": lines[0]["period"], "amount": "165.00"}]
    exported = client.get(f"/api/v1/finance/payables?format=csv&period={lines[0]['period']}",
                          headers=finance).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert rows[0]["amount"] == "165.00" and rows[0]["partner_code"] == "SHOP"


def test_withheld_reports_are_not_payable_until_approved(client, repairing):
    number, headers = repairing
    report_id = report(client, headers, number).json["id"]
    finance = bearer(staff_token("finance"))
    client.post(f"/api/v1/finance/repair-reports/{report_id}/decision", headers=finance,
                json={"decision": "withhold", "note": "under investigation"})
    assert client.get("/api/v1/finance/payables", headers=finance).json == []
    client.post(f"/api/v1/finance/repair-reports/{report_id}/decision", headers=finance,
                json={"decision": "approve", "note": "cleared"})
    assert len(client.get("/api/v1/finance/payables", headers=finance).json) == 1


def test_partners_cannot_report_on_other_partners_units(client, repairing):
    number, _ = repairing
    _, other = partner_key("OTHER")
    assert report(client, bearer(other), number).status_code == 404


def test_defective_parts_come_back_or_are_charged_back(client, repairing):
    from datetime import timedelta

    from common.models import utcnow
    from partners.reports import charge_overdue_cores

    number, headers = repairing
    inventory.move_parts(part_number="BAT-1", quantity=1, from_location="supplier",
                         to_location="partner:SHOP", reason="issued_to_partner",
                         actor=Actor.system("tests"))
    filed = report(client, headers, number, parts=[{"part_number": "MB-1", "quantity": 1},
                                                   {"part_number": "BAT-1", "quantity": 1}],
                   replacement_serial="new-77")
    assert filed.status_code == 201 and filed.json["replacement_serial"] == "NEW-77"
    due = {line["part_number"]: line["due_back_on"] for line in filed.json["lines"]}
    assert due["MB-1"] == (utcnow().date() + timedelta(days=30)).isoformat()
    warehouse = bearer(staff_token("warehouse"))
    back = client.post("/api/v1/warehouse/core-returns", headers=warehouse,
                       json={"rma_number": number, "part_number": "mb-1"})
    assert back.status_code == 200 and back.json["returned_quantity"] == 1
    again = client.post("/api/v1/warehouse/core-returns", headers=warehouse,
                        json={"rma_number": number, "part_number": "MB-1"})
    assert again.status_code == 409
    assert inventory.level("warehouse:CORES", "MB-1") == 1
    later = utcnow().date() + timedelta(days=31)
    assert charge_overdue_cores(actor=Actor.system("tests"), today=later) == 1
    assert charge_overdue_cores(actor=Actor.system("tests"), today=later) == 0  # idempotent
    finance = bearer(staff_token("finance"))
    lines = client.get("/api/v1/finance/payables?partner_code=SHOP", headers=finance).json
    charge = [line for line in lines if line["kind"] == "chargeback"]
    assert charge and charge[0]["amount"] == "-20.50" and charge[0]["rma_number"] == number
