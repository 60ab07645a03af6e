"""The partner portal's repair report: a technician records parts, labor and diagnosis for one
of the partner's units and sees the report's status; bad input gets a friendly page, never a 500.
"""

from __future__ import annotations

import html
import re
import threading
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from audit.service import entity_history_query, verify_chain
from common.extensions import db
from inventory import service as inventory
from partners import repairs, reports
from partners.models import RepairReport
from tests.conftest import csrf_token_from
from tests.factories import PASSWORD, TEST_ACTOR, load_catalog, make_partner, make_user
from tests.test_partner_repairs import ship_units_to

REPAIRING = ("received_at_partner", "diagnosing", "repairing")


def move(number: str, partner_id: int, *statuses: str) -> None:
    for status in statuses:
        repair = repairs.get_repair(rma_number=number, partner_id=partner_id)
        repairs.change_status(rma_number=number, partner_id=partner_id, target=status,
                              expected_version=repair.version, actor=TEST_ACTOR)


def login(client, email: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    client.post("/login", data={"email": email, "password": PASSWORD,
                                "csrf_token": csrf_token_from(page)})


@pytest.fixture
def portal(client):
    """MINE's unit under repair (2 MB-1 and no BAT-1 in its stock), OTHER's unit too."""
    load_catalog()
    mine, other = make_partner("MINE"), make_partner("OTHER")
    number, waiting = ship_units_to(client, "MINE", ["PP-1", "PP-WAIT"])
    theirs = ship_units_to(client, "OTHER", ["PP-2"])[0]
    move(number, mine.id, *REPAIRING)
    move(theirs, other.id, *REPAIRING)
    for code in ("MINE", "OTHER"):
        inventory.move_parts(part_number="MB-1", quantity=2, from_location="supplier",
                             to_location=f"partner:{code}", reason="issued_to_partner",
                             actor=TEST_ACTOR)
    make_user("partner", email="tech@mine.example", partner_code="MINE")
    login(client, "tech@mine.example")
    return SimpleNamespace(number=number, waiting=waiting, theirs=theirs, mine=mine,
                           other=other)


def text_of(response) -> str:
    """The page as a person reads it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))
                    .split())


def form_of(client, number: str) -> dict[str, str]:
    page = client.get(f"/partner/units/{number}").get_data(as_text=True)
    version = re.search(r'name="version" value="([0-9]+)"', page)
    assert version, "no version in the page"
    return {"csrf_token": csrf_token_from(page), "version": version.group(1)}


def submit(client, number: str, *, parts=(("MB-1", "1"),), form: dict | None = None,
           **fields: str):
    data = {**(form or form_of(client, number)), "diagnosis_code": "BOARD_FAIL",
            "labor_minutes": "45", **fields,
            "part_number": [p for p, _ in parts], "quantity": [q for _, q in parts]}
    return client.post(f"/partner/units/{number}/report", data=data)


def report_count() -> int:
    return db.session.scalar(select(func.count()).select_from(RepairReport))


# --- the happy path ----------------------------------------------------------------------------


def test_unit_page_offers_the_bom_parts_with_the_partners_stock(client, portal):
    response = client.get(f"/partner/units/{portal.number}")
    assert response.status_code == 200
    page = text_of(response)
    assert "MB-1 · Main board (at most 1; 2 in your stock)" in page
    assert "BAT-1 · Battery (at most 1; 0 in your stock)" in page
    assert "SCR-1" not in page  # in the catalog, not in this product's BOM
    assert "Submit report" in page and "repairing" in page


def test_partner_files_a_report_with_parts_and_sees_it_pending(client, portal):
    assert "to file" in text_of(client.get("/partner/units"))
    response = submit(client, portal.number, parts=[("MB-1", "1"), ("", "")],
                      labor_minutes="45")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/partner/units/{portal.number}")
    page = text_of(client.get(response.headers["Location"]))
    assert f"{portal.number}: repair report submitted." in page
    assert "Pending finance review" in page and "Submit report" not in page
    assert "MB-1 1 120.00 120.00 0 of 1 returned" in page
    assert "45 min at 60.00/h: 45.00" in page and "Claimed 165.00" in page
    report = db.session.scalar(select(RepairReport))
    assert report.claimed_amount == Decimal("165.00") and report.diagnosis_code == "BOARD_FAIL"
    assert [(line.part_number, line.quantity) for line in report.lines] == [("MB-1", 1)]
    assert inventory.level("partner:MINE", "MB-1") == 1 and inventory.verify_levels() == []
    listed = text_of(client.get("/partner/units"))
    assert "Pending finance review" in listed and "to file" not in listed


def test_the_service_writes_the_audit_trail_as_the_signed_in_technician(client, portal):
    submit(client, portal.number)
    report = db.session.scalar(select(RepairReport))
    events = db.session.scalars(entity_history_query("repair_report", report.id)).all()
    assert [e.action for e in events] == ["repair_report.submitted"]
    assert (events[0].actor_type, events[0].actor_id, events[0].actor_label) == (
        "partner", "MINE", "MINE/tech@mine.example")
    assert events[0].data["parts"] == [{"part_number": "MB-1", "quantity": 1}]
    assert events[0].data["rma_number"] == portal.number
    consumed = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "part.consumed")).all()
    assert [(e.entity_id, e.data["to"]) for e in consumed] == [
        ("MB-1", f"consumed:{portal.number}")]
    assert verify_chain().ok


def test_labor_only_report_without_parts(client, portal):
    response = submit(client, portal.number, parts=[("", "")], labor_minutes="30")
    assert response.status_code == 302
    page = text_of(client.get(f"/partner/units/{portal.number}"))
    assert "No parts: labor only." in page and "Claimed 30.00" in page


def test_dead_on_arrival_with_evidence_is_recorded_and_flagged(client, portal):
    response = submit(client, portal.number, doa="yes", doa_evidence="No power out of the box")
    assert response.status_code == 302
    page = text_of(client.get(f"/partner/units/{portal.number}"))
    assert "Dead on arrival yes: No power out of the box" in page
    assert "doa declared" in page


def test_status_form_on_the_unit_page_returns_to_it(client, portal):
    form = form_of(client, portal.number)
    moved = client.post(f"/partner/units/{portal.number}",
                        data={**form, "status": "repaired", "back": "unit"})
    assert moved.status_code == 302
    assert moved.headers["Location"].endswith(f"/partner/units/{portal.number}")
    page = text_of(client.get(moved.headers["Location"]))
    assert f"{portal.number}: updated." in page and "Submit report" in page  # still reportable


# --- what the partner sees after finance decides -----------------------------------------------


@pytest.mark.parametrize(("decision", "note", "words"), [
    ("approve", "Thanks", "Approved"),
    ("reject", "The board was not faulty", "Rejected"),
    ("withhold", "internal: looking into it", "Payment on hold"),
])
def test_partner_sees_finance_decision(client, portal, decision, note, words):
    submit(client, portal.number)
    report_id = db.session.scalar(select(RepairReport.id))
    reports.decide_report(report_id=report_id, decision=decision, note=note, actor=TEST_ACTOR)
    page = text_of(client.get(f"/partner/units/{portal.number}"))
    assert words in page
    # Approvals and rejections explain themselves; a withholding note stays with finance.
    assert (note in page) == (decision != "withhold")


def test_partner_sees_a_payment_hold_behind_a_fraud_flag(client, portal):
    from fraud import service as fraud
    from fraud import verdicts
    from fraud.models import FraudFlag

    submit(client, portal.number)
    flag = FraudFlag(fingerprint="MINE:hold", partner_id=portal.mine.id, kind="rule",
                     signal=verdicts.UNREGISTERED_SERIAL, status="open", score=10.0,
                     reason="test flag", amount_at_stake=Decimal("165.00"))
    db.session.add(flag)
    db.session.commit()
    assert fraud.hold_payments(flag_id=flag.id, note="checking", actor=TEST_ACTOR)
    page = text_of(client.get(f"/partner/units/{portal.number}"))
    assert "Payment of this report is on hold while finance reviews it" in page
    assert "test flag" not in page and "checking" not in page


# --- bad input: a friendly page, nothing written -----------------------------------------------


@pytest.mark.parametrize(("parts", "fields", "message"), [
    ([("NOPE", "1")], {}, "Part 1: NOPE is not in the parts catalog"),
    ([("SCR-1", "1")], {}, "Part 1: SCR-1 is not in this product's bill of materials"),
    ([("", ""), ("MB-1", "2")], {}, "Part 2: at most 1 of MB-1 per repair"),
    ([("MB-1", "0")], {}, "Part 1: Must be greater than or equal to 1"),
    ([("MB-1", "-1")], {}, "Part 1: Must be greater than or equal to 1"),
    ([("MB-1", "1000000")], {}, "less than or equal to 100"),
    ([("MB-1", "9" * 40)], {}, "Part 1: the quantity must be a whole number"),
    ([("MB-1", "two")], {}, "Part 1: the quantity must be a whole number"),
    ([("MB-1", "²")], {}, "Part 1: the quantity must be a whole number"),
    ([("MB-1", "")], {}, "Part 1: enter how many MB-1 were used"),
    ([("", "1")], {}, "Part 1: choose the part (or clear its quantity)"),
    ([("MB-1", "1"), ("mb-1", "1")], {}, "Part 2: MB-1 is listed twice"),
    ([("P" * 100, "1")], {}, "Part 1: Length must be between 1 and 64"),
    ([("MB-1", "1")] * 51, {}, "Parts: Longer than maximum length 50"),
    ([("MB-1", "1")], {"labor_minutes": "-5"}, "Labor minutes: Must be greater than or equal"),
    ([("MB-1", "1")], {"labor_minutes": "100000"}, "Labor minutes: Must be greater than"),
    ([("MB-1", "1")], {"labor_minutes": "45.5"}, "Labor minutes: enter whole minutes"),
    ([("MB-1", "1")], {"labor_minutes": ""}, "Labor minutes: required"),
    ([("MB-1", "1")], {"diagnosis_code": "   "}, "Diagnosis code: required"),
    ([("MB-1", "1")], {"diagnosis_code": "X" * 41}, "Diagnosis code: Length must be between"),
    ([("MB-1", "1")], {"doa": "yes"}, "DOA evidence: describe how the unit was dead on arrival"),
])
def test_bad_report_input_is_refused_kindly_and_writes_nothing(client, portal, parts, fields,
                                                               message):
    response = submit(client, portal.number, parts=parts, **fields)
    assert response.status_code == 422
    page = text_of(response)
    assert "The report was not submitted" in page
    assert message in page, page
    assert "Submit report" in page  # the form again, with what was typed
    if "diagnosis_code" not in fields:
        assert 'value="BOARD_FAIL"' in response.get_data(as_text=True)
    assert report_count() == 0
    assert inventory.level("partner:MINE", "MB-1") == 2


def test_error_stays_on_the_row_that_caused_it(client, portal):
    response = submit(client, portal.number, parts=[("MB-1", "1"), ("SCR-1", "1")])
    body = response.get_data(as_text=True)
    row = body[body.index('id="part-1"'):body.index('id="diagnosis_code"')]
    assert "not in this product&#39;s bill of materials" in row
    assert '<option value="MB-1" selected>' in body[body.index('id="part-0"'):]


def test_not_enough_consignment_stock_is_a_friendly_conflict(client, portal):
    response = submit(client, portal.number, parts=[("MB-1", "1"), ("BAT-1", "1")])
    assert response.status_code == 409
    page = text_of(response)
    assert "your consignment stock is short" in page and "BAT-1" in page
    assert report_count() == 0 and inventory.level("partner:MINE", "MB-1") == 2


def test_a_unit_not_yet_under_repair_has_no_form_and_refuses_a_forged_one(client, portal):
    page = text_of(client.get(f"/partner/units/{portal.waiting}"))
    assert "Submit report" not in page and "can be filed once the unit is being" in page
    form = form_of(client, portal.waiting)
    response = submit(client, portal.waiting, form=form)
    assert response.status_code == 409
    assert "a unit that is in_transit cannot be reported on yet" in text_of(response)
    assert report_count() == 0


# --- concurrency and repeats ---------------------------------------------------------------------


def test_stale_form_is_refused_with_the_values_kept(client, portal):
    form = form_of(client, portal.number)
    move(portal.number, portal.mine.id, "repaired")  # a colleague, meanwhile
    response = submit(client, portal.number, form=form, diagnosis_code="PSU_FAIL")
    assert response.status_code == 409
    page = text_of(response)
    assert f"{portal.number} was changed by someone else meanwhile (it is now repaired)" in page
    assert 'value="PSU_FAIL"' in response.get_data(as_text=True)
    assert report_count() == 0
    assert submit(client, portal.number, diagnosis_code="PSU_FAIL").status_code == 302


def test_missing_version_is_treated_as_stale(client, portal):
    form = {"csrf_token": form_of(client, portal.number)["csrf_token"]}
    assert submit(client, portal.number, form=form).status_code == 409
    assert report_count() == 0


def test_double_submit_files_once_and_reads_as_success(client, portal):
    form = form_of(client, portal.number)
    first = submit(client, portal.number, form=form)
    second = submit(client, portal.number, form=form)
    assert first.status_code == second.status_code == 302
    page = text_of(client.get(second.headers["Location"]))
    assert f"{portal.number}: repair report submitted." in page
    assert report_count() == 1 and inventory.level("partner:MINE", "MB-1") == 1
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "repair_report.submitted")) == 1


def test_simultaneous_submits_file_once_and_all_read_as_success(make_app):
    """Six clicks at once (threads through the whole app): one report, no 500."""
    app = make_app()
    with app.app_context():
        load_catalog()
        partner = make_partner("MINE")
        number = ship_units_to(app.test_client(), "MINE", ["PP-RACE"])[0]
        move(number, partner.id, *REPAIRING)
        inventory.move_parts(part_number="MB-1", quantity=4, from_location="supplier",
                             to_location="partner:MINE", reason="issued_to_partner",
                             actor=TEST_ACTOR)
        make_user("partner", email="tech@mine.example", partner_code="MINE")
        client = app.test_client()
        login(client, "tech@mine.example")
        data = {**form_of(client, number), "diagnosis_code": "BOARD_FAIL",
                "labor_minutes": "45", "part_number": "MB-1", "quantity": "1"}
        cookie = client.get_cookie("session")
        db.session.remove()
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def click() -> None:
        browser = app.test_client()
        browser.set_cookie("session", cookie.value)
        barrier.wait()
        statuses.append(browser.post(f"/partner/units/{number}/report", data=data).status_code)

    threads = [threading.Thread(target=click) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [302] * 6
    with app.app_context():
        assert report_count() == 1 and inventory.level("partner:MINE", "MB-1") == 3
        assert inventory.verify_levels() == []


def test_a_different_second_report_is_refused_and_the_first_kept(client, portal):
    form = form_of(client, portal.number)
    submit(client, portal.number, form=form)
    other = submit(client, portal.number, form=form, labor_minutes="90")
    assert other.status_code == 302
    page = text_of(client.get(other.headers["Location"]))
    assert "already submitted; it is shown below. Nothing was changed." in page
    assert db.session.scalar(select(RepairReport.labor_minutes)) == 45 and report_count() == 1


# --- who may see and do what ---------------------------------------------------------------------


def test_another_partners_unit_is_404_to_read_and_to_report(client, portal):
    assert client.get(f"/partner/units/{portal.theirs}").status_code == 404
    assert client.get("/partner/units/not-an-rma").status_code == 404
    form = form_of(client, portal.number)  # a real token and a plausible version
    response = submit(client, portal.theirs, form=form)
    assert response.status_code == 404
    assert report_count() == 0 and inventory.level("partner:OTHER", "MB-1") == 2
    assert portal.theirs not in client.get("/partner/units").get_data(as_text=True)


def test_report_without_csrf_token_is_refused(client, portal):
    form = form_of(client, portal.number)
    response = submit(client, portal.number, form={"version": form["version"]})
    assert response.status_code == 400
    assert report_count() == 0


def test_staff_and_anonymous_users_cannot_use_the_portal(client, portal):
    client.post("/logout", data={"csrf_token": form_of(client, portal.number)["csrf_token"]})
    anonymous = client.get(f"/partner/units/{portal.number}")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    make_user("finance", email="money@example.test")
    login(client, "money@example.test")
    assert client.get(f"/partner/units/{portal.number}").status_code == 403
    page = client.get("/finance/flags").get_data(as_text=True)
    response = client.post(f"/partner/units/{portal.number}/report", data={
        "csrf_token": csrf_token_from(page), "diagnosis_code": "X", "labor_minutes": "1"})
    assert response.status_code == 403 and report_count() == 0
