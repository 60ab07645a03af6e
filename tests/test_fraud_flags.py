"""Fraud facts, hard rules, scoring on hand-made data, flags, finance's decisions and holds."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats as sps
from sqlalchemy import func, insert, select

from audit.models import AuditEvent
from catalog.models import Purchase
from common.extensions import db
from fraud import scoring, stats
from fraud import verdicts as v
from fraud.cube import Cube
from fraud.facts import CatalogFacts, derive, load_cube
from fraud.models import FraudFlag, PaymentHold
from fraud.rules import find_rule_hits
from fraud.scoring import score_cube
from fraud.service import (
    _score_and_check,
    decide,
    in_own_session,
    reads_alike_elsewhere,
    score_all,
)
from partners.models import HistoricRepair
from tests.factories import (
    TEST_ACTOR,
    bearer,
    load_catalog,
    make_partner,
    register_purchase,
    staff_token,
)
from tests.test_repair_reports import repairing, report  # noqa: F401 - shared fixture

_serials = itertools.count(1)


def add_history(partner: str, sku: str, count: int, *, doa: int = 0, month: str = "2025-03",
                parts: list[dict] | None = None, bought: date | None = None,
                register: bool = True, serial: str | None = None) -> list[dict]:
    """``count`` claims of ``partner`` on ``sku`` received in ``month``, ``doa`` of them DOA.

    Each serial is a registered purchase bought ``bought`` (default: ten days before), unless
    ``register`` is false.
    """
    received = date.fromisoformat(f"{month}-10")
    rows, purchases = [], []
    for i in range(count):
        serial = serial if serial and count == 1 else f"S{next(_serials):06d}"
        purchases.append({"serial_number": serial, "sku": sku,
                          "purchase_date": bought or received - timedelta(days=10),
                          "customer_email": "ann@example.com", "customer_name": "Ann",
                          "country": "SE"})
        rows.append({
            "partner_code": partner, "serial_number": serial, "sku": sku,
            "received_date": received, "completed_date": received + timedelta(days=3),
            "doa": i < doa, "parts": parts or [], "labor_minutes": 45,
            "claimed_amount": Decimal("100.00"), "rma_number": None, "diagnosis_code": None,
        })
    if register:
        db.session.execute(insert(Purchase), purchases)
    derive(rows, CatalogFacts(default_doa_days=30))
    db.session.execute(insert(HistoricRepair), rows)
    db.session.commit()
    return rows


@pytest.fixture
def catalog(app):
    load_catalog()  # PH-1 (BOM: MB-1 120.00, BAT-1 20.50), TB-1 (BOM: SCR-1 60.00)


# --- derived facts ------------------------------------------------------------------------


def test_derive_prices_parts_and_marks_modules_bom_breaks_and_unit_age(catalog):
    register_purchase("OLD-1", bought=date(2020, 1, 1))
    register_purchase("NEW-1", bought=date(2025, 2, 1))
    rows = [
        {"partner_code": "X", "serial_number": "NEW-1", "sku": "PH-1",
         "received_date": date(2025, 3, 20), "doa": True,
         "parts": [{"part_number": "MB-1", "quantity": 1}, {"part_number": "BAT-1",
                                                            "quantity": 1}]},
        {"partner_code": "X", "serial_number": "OLD-1", "sku": "PH-1",
         "received_date": date(2025, 3, 20), "doa": True,
         "parts": [{"part_number": "SCR-1", "quantity": 2}]},
        {"partner_code": "X", "serial_number": "GHOST", "sku": "PH-1",
         "received_date": date(2025, 3, 20), "doa": False, "parts": []},
    ]
    derive(rows, CatalogFacts(default_doa_days=30))
    fresh, old, ghost = rows
    assert fresh["parts_cost"] == Decimal("140.50") and fresh["parts_quantity"] == 2
    # MB-1 is the top part; BAT-1 (20.50) is under half of it, so only MB-1 is a module.
    assert fresh["premium_parts"] == 1 and fresh["outside_bom_parts"] == 0
    assert fresh["unit_age_days"] == 47 and fresh["late_doa"] and not fresh["outside_warranty"]
    assert old["outside_bom_parts"] == 2 and old["outside_warranty"] and old["late_doa"]
    assert not ghost["serial_registered"] and ghost["unit_age_days"] is None
    assert fresh["received_month"] == "2025-03"


def test_cube_counts_per_partner_product_month_and_repeats_go_to_the_first_repairer(catalog):
    for code in ("AAA", "BBB"):
        make_partner(code)
    add_history("AAA", "PH-1", 4, doa=1, month="2025-01",
                parts=[{"part_number": "BAT-1", "quantity": 2}])
    repeat = add_history("AAA", "TB-1", 1, month="2025-02")[0]
    later = dict(repeat, partner_code="BBB", received_date=date(2025, 3, 15),
                 completed_date=date(2025, 3, 16))
    derive([later], CatalogFacts(30))
    db.session.execute(insert(HistoricRepair), [later])
    db.session.commit()
    cube = load_cube()
    assert cube.months == ["2025-01", "2025-02", "2025-03"]
    a, ph, tb = cube.partners.index("AAA"), cube.skus.index("PH-1"), cube.skus.index("TB-1")
    assert cube["claims"][a, ph, 0] == 4 and cube["doa"][a, ph, 0] == 1
    assert cube["parts"][a, ph, 0] == 8 and cube["parts_cost"][a, ph, 0] == pytest.approx(164)
    assert cube["repeats"][a, tb, 1] == 1  # AAA's February fix did not hold
    assert cube["repeats"].sum() == 1


# --- hard rules ---------------------------------------------------------------------------


def test_each_hard_rule_names_the_claim_that_breaks_it(catalog):
    for code in ("AAA", "BBB"):
        make_partner(code)
    honest = add_history("AAA", "PH-1", 3, parts=[{"part_number": "BAT-1", "quantity": 1}])
    add_history("BBB", "PH-1", 1, register=False, serial="GHOST-77")
    # One keystroke from a registered serial: a typing slip, not hard evidence.
    add_history("BBB", "PH-1", 1, register=False,
                serial=honest[1]["serial_number"][:-1] + "X")
    add_history("BBB", "PH-1", 1, parts=[{"part_number": "SCR-1", "quantity": 1}])
    add_history("BBB", "PH-1", 1, bought=date(2019, 1, 1))
    twin = dict(honest[0], partner_code="BBB", received_date=date(2025, 3, 11),
                completed_date=date(2025, 3, 11))
    derive([twin], CatalogFacts(30))
    db.session.execute(insert(HistoricRepair), [twin])
    db.session.commit()
    hits = find_rule_hits()
    assert sorted(hit.rule for hit in hits) == sorted([
        v.UNREGISTERED_SERIAL, v.PART_OUTSIDE_BOM, v.OUTSIDE_WARRANTY,
        v.SERIAL_AT_OTHER_PARTNER])
    assert {hit.partner for hit in hits} == {"BBB"}  # the first repairer is presumed genuine
    assert "GHOST-77" in next(h for h in hits if h.rule == v.UNREGISTERED_SERIAL).reason
    overlap = next(hit for hit in hits if hit.rule == v.SERIAL_AT_OTHER_PARTNER)
    assert honest[0]["serial_number"] in overlap.reason and "AAA" in overlap.reason


# --- scoring on hand-made data ------------------------------------------------------------


def _peer_world(*, fraud_doa: int, specialist_doa: int = 10) -> None:
    """Twelve honest partners (2-6% DOA on PH-1, 10% on the fragile TB-1) and two to judge."""
    for n in range(12):
        code = f"H{n:02d}"
        make_partner(code)
        for month in ("2025-01", "2025-02", "2025-03"):
            add_history(code, "PH-1", 50, doa=1 + (n + int(month[-1])) % 3, month=month)
            add_history(code, "TB-1", 10, doa=1, month=month)
    make_partner("FRAUD")
    make_partner("TABLETS")
    for month in ("2025-01", "2025-02", "2025-03"):
        add_history("FRAUD", "PH-1", 60, doa=fraud_doa, month=month)
        add_history("TABLETS", "TB-1", 100, doa=specialist_doa, month=month)


def test_a_partner_with_three_times_the_doa_rate_of_its_mix_is_flagged_and_a_specialist_is_not(
        catalog):
    _peer_world(fraud_doa=8)  # 13.3% vs 4% expected on PH-1
    verdicts = {x.partner: x for x in score_cube(load_cube(), as_of=2)}
    fraud = verdicts["FRAUD"]
    assert fraud.verdict == v.FLAG and fraud.top_signal == v.DOA_RATE
    doa = next(s for s in fraud.signals if s.signal == v.DOA_RATE)
    assert doa.observed == 24 and doa.expected == pytest.approx(7.2, rel=0.1)
    assert "DOA 13.3% vs 4.0% expected for its product mix" in doa.reason
    # All tablets at the tablet rate: many DOAs, none of them suspicious.
    assert verdicts["TABLETS"].verdict == v.CLEAR
    assert all(x.verdict == v.CLEAR for code, x in verdicts.items() if code.startswith("H"))


def test_a_small_partner_is_never_flagged_on_a_few_claims(catalog):
    _peer_world(fraud_doa=2)
    make_partner("TINY")
    add_history("TINY", "PH-1", 10, doa=2, month="2025-03")  # 20% on 10 claims
    tiny = next(x for x in score_cube(load_cube(), as_of=2) if x.partner == "TINY")
    assert tiny.verdict in (v.CLEAR, v.INSUFFICIENT) and tiny.claims == 10


# --- combining a partner's signals; the onset scan ------------------------------------------


def _one_partner(p: float, expected: float = 10.0, testable: bool = True) -> scoring._Tested:
    return scoring._Tested(observed=np.array([0.0]), expected=np.array([expected]),
                           p_values=np.array([p]), testable=np.array([testable]), tau2=0.0225)


def test_doa_and_late_doa_are_one_behaviour_brown_combined():
    names = [signal.name for signal in scoring.SIGNALS]
    tested = {name: _one_partner(0.5) for name in names}
    tested[v.DOA_RATE] = _one_partner(2e-3, expected=20.0)
    tested[v.LATE_DOA] = _one_partner(4e-3, expected=2.0)
    rho = stats.poisson_gamma_correlation(20.0, 2.0, 0.0225)
    family = stats.brown_combine([2e-3, 4e-3], np.array([[1.0, rho], [rho, 1.0]]))
    assert 0.3 < rho < 0.4 and 4e-4 < family < 6e-4  # Fisher alone: 1.4e-4
    # Seven behaviours (DOA, six others): Fisher over them, or the smallest times seven.
    expected = 2 * min(stats.fisher_combine([family] + [0.5] * 6), 7 * family)
    combined = scoring._combine(tested, names, 0)
    assert combined == pytest.approx(expected, rel=1e-12)
    # Counted as two unrelated signals, the minimum over eight would have used one of them.
    separate = 2 * min(stats.fisher_combine([2e-3, 4e-3] + [0.5] * 6), 8 * 2e-3)
    assert combined < separate / 2


def test_one_strong_signal_pays_for_every_behaviour_tested():
    names = [signal.name for signal in scoring.SIGNALS]
    tested = {name: _one_partner(0.5) for name in names}
    tested[v.LABOR] = _one_partner(1e-4)
    assert scoring._combine(tested, names, 0) == pytest.approx(2 * 7 * 1e-4)
    # Without a testable late_doa, doa_rate stands alone: eight behaviours become seven.
    tested[v.LATE_DOA] = _one_partner(1e-6, testable=False)
    assert scoring._combine(tested, names, 0) == pytest.approx(2 * 7 * 1e-4)
    tested[v.DOA_RATE] = _one_partner(0.5, testable=False)
    assert scoring._combine(tested, names, 0) == pytest.approx(2 * 6 * 1e-4)


def test_onset_scan_is_corrected_for_the_onsets_its_history_allows():
    # Eight months of history: with six months of baseline only the last one or two months
    # can be the onset, so the best of those two tests is doubled, not multiplied by six.
    cube = Cube.empty(["A", "B", "C"], ["PH-1"], [f"2025-{m:02d}" for m in range(1, 9)])
    cube.data["claims"][:] = 50
    cube.data["doa"][:] = 1
    cube.data["doa"][2, 0, 6:] = 6
    as_of = 7
    totals, weights = cube.window(as_of, 6), np.ones(3)
    signal = next(s for s in scoring.SIGNALS if s.name == v.DOA_RATE)
    p, ratio, months = scoring._trend(signal, cube, as_of, totals, weights)
    rate = scoring._peer_rates(signal, totals, weights)[0]
    pseudo = scoring.TREND_PRIOR_CLAIMS * rate
    tails = []
    for recent in (1, 2):
        o_h, e_h = 8 - recent, 50 * rate * (8 - recent)
        o_r, e_r = 6 * recent, 50 * rate * recent
        shape, scale = o_h + pseudo, e_h + pseudo
        tails.append(sps.nbinom.sf(o_r - 1, shape, scale / (scale + e_r)))
    assert p[2] == pytest.approx(2 * min(tails), rel=1e-9)
    assert months[2] == 1 + int(np.argmin(tails)) and ratio[2] > 3
    assert p[0] == p[1] == 1.0  # no DOA above its own level


# --- flags: idempotent scoring, decisions, holds --------------------------------------------


def _audit_count() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def test_rescoring_the_same_data_changes_nothing(catalog):
    _peer_world(fraud_doa=8)
    add_history("H00", "PH-1", 1, register=False, serial="GHOST-1")  # a hard-rule flag
    first = score_all(actor=TEST_ACTOR)
    assert first.flagged == 1 and first.created >= 2
    flags = db.session.scalars(select(FraudFlag).order_by(FraudFlag.id)).all()
    snapshot = [(f.fingerprint, f.status, f.amount_at_stake, f.reason) for f in flags]
    events = _audit_count()
    second = score_all(actor=TEST_ACTOR)
    assert (second.created, second.updated, second.reopened) == (0, 0, 0)
    db.session.expire_all()
    again = db.session.scalars(select(FraudFlag).order_by(FraudFlag.id)).all()
    assert [(f.fingerprint, f.status, f.amount_at_stake, f.reason) for f in again] == snapshot
    assert _audit_count() == events + 1  # only the run itself
    partner_flag = next(f for f in again if f.kind == "statistical")
    assert partner_flag.partner.code == "FRAUD" and partner_flag.status == "open"
    assert partner_flag.amount_at_stake > 0 and "DOA" in partner_flag.reason


def test_a_dismissed_flag_stays_dismissed_until_the_evidence_grows_materially(catalog):
    _peer_world(fraud_doa=8)
    score_all(actor=TEST_ACTOR)
    flag = db.session.scalar(select(FraudFlag).where(FraudFlag.kind == "statistical"))
    decide(flag_id=flag.id, decision="dismiss", note="Recall campaign on a bad batch",
           actor=TEST_ACTOR)
    add_history("FRAUD", "PH-1", 60, doa=9, month="2025-03")  # a little more of the same
    score_all(actor=TEST_ACTOR)
    db.session.refresh(flag)
    assert flag.status == "dismissed"
    add_history("FRAUD", "PH-1", 300, doa=60, month="2025-03")  # it keeps piling up
    summary = score_all(actor=TEST_ACTOR)
    db.session.refresh(flag)
    assert summary.reopened == 1 and flag.status == "open"
    assert flag.amount_at_stake >= flag.dismissed_amount * Decimal("1.5")
    actions = db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity_type == "fraud_flag", AuditEvent.entity_id == str(flag.id))).all()
    assert {"fraud_flag.raised", "fraud_flag.dismissed", "fraud_flag.reopened"} <= set(actions)


def test_decisions_need_their_reasons_and_happen_once(catalog):
    from common.errors import Conflict, ValidationFailed

    _peer_world(fraud_doa=8)
    score_all(actor=TEST_ACTOR)
    flag = db.session.scalar(select(FraudFlag).where(FraudFlag.kind == "statistical"))
    with pytest.raises(ValidationFailed):
        decide(flag_id=flag.id, decision="confirm", note="Proven", actor=TEST_ACTOR)
    with pytest.raises(ValidationFailed):
        decide(flag_id=flag.id, decision="dismiss", note="  ", actor=TEST_ACTOR)
    done = decide(flag_id=flag.id, decision="confirm", note="Partner admitted it",
                  recovery_amount=Decimal("1234.5"), actor=TEST_ACTOR)
    assert done.status == "confirmed" and done.recovery_amount == Decimal("1234.50")
    with pytest.raises(Conflict):
        decide(flag_id=flag.id, decision="dismiss", note="Changed my mind", actor=TEST_ACTOR)
    # Later scoring runs do not undo a decision.
    score_all(actor=TEST_ACTOR)
    db.session.refresh(flag)
    assert flag.status == "confirmed"


def test_live_reports_feed_the_history_and_holds_block_their_payment(client, repairing):  # noqa: F811
    number, headers = repairing
    report_id = report(client, headers, number).json["id"]
    mirrored = db.session.scalar(select(HistoricRepair).where(
        HistoricRepair.report_id == report_id))
    assert mirrored.rma_number == number and mirrored.parts_cost == Decimal("120.00")
    assert mirrored.premium_parts == 1 and mirrored.serial_registered
    flag = FraudFlag(fingerprint="SHOP:test", partner_id=mirrored_partner_id(report_id),
                     kind="rule", signal=v.PART_OUTSIDE_BOM, claim_ref=f"report:{report_id}",
                     score=100, reason="test", amount_at_stake=Decimal("165.00"))
    db.session.add(flag)
    db.session.commit()
    finance = bearer(staff_token("finance"))
    held = client.post(f"/api/v1/fraud/flags/{flag.id}/hold", headers=finance,
                       json={"note": "Under review"})
    assert held.status_code == 200 and held.json == {"held_report_ids": [report_id]}
    again = client.post(f"/api/v1/fraud/flags/{flag.id}/hold", headers=finance,
                        json={"note": "Double click"})
    assert again.json == {"held_report_ids": []}
    approve = client.post(f"/api/v1/finance/repair-reports/{report_id}/decision",
                          headers=finance, json={"decision": "approve", "note": "pay"})
    assert approve.status_code == 409 and "held while fraud flag" in approve.json["detail"]
    dismissed = client.post(f"/api/v1/fraud/flags/{flag.id}/decision", headers=finance,
                            json={"decision": "dismiss", "note": "Photos prove it"})
    assert dismissed.status_code == 200 and dismissed.json["status"] == "dismissed"
    assert db.session.scalar(select(PaymentHold.released_at)) is not None
    approve = client.post(f"/api/v1/finance/repair-reports/{report_id}/decision",
                          headers=finance, json={"decision": "approve", "note": "pay"})
    assert approve.status_code == 200 and approve.json["status"] == "approved"


def mirrored_partner_id(report_id: int) -> int:
    from partners.models import RepairReport

    return db.session.get(RepairReport, report_id).partner_id


# --- API and CLI --------------------------------------------------------------------------


def test_flags_api_lists_filters_and_exports_csv(client, catalog):
    import csv
    import io

    _peer_world(fraud_doa=8)
    add_history("H01", "PH-1", 1, register=False, serial="GHOST-2")
    score_all(actor=TEST_ACTOR)
    finance = bearer(staff_token("finance"))
    flags = client.get("/api/v1/fraud/flags?status=open", headers=finance).json
    assert [f["amount_at_stake"] for f in flags] == sorted(
        (f["amount_at_stake"] for f in flags), key=Decimal, reverse=True)
    partner_flag = next(f for f in flags if f["kind"] == "statistical")
    assert partner_flag["partner_code"] == "FRAUD" and partner_flag["claim"] is None
    assert {"id", "signal", "score", "status", "reason", "amount_at_stake"} <= set(partner_flag)
    rule = client.get("/api/v1/fraud/flags?signal=unregistered_serial", headers=finance).json
    assert [(f["partner_code"], f["claim"][:8]) for f in rule] == [("H01", "history:")]
    assert client.get("/api/v1/fraud/flags?partner_code=fraud",
                      headers=finance).json == [partner_flag]
    exported = client.get("/api/v1/fraud/flags", headers={**finance, "Accept": "text/csv"})
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert {row["partner_code"] for row in rows} == {"FRAUD", "H01"}
    detail = client.get(f"/api/v1/fraud/flags/{partner_flag['id']}", headers=finance).json
    assert detail["evidence"]["signals"][0]["signal"] == partner_flag["signal"]
    assert detail["claims"] and all(claim["doa"] for claim in detail["claims"])
    bad = client.get("/api/v1/fraud/flags?status=guilty", headers=finance)
    assert bad.status_code == 422 and "status" in bad.json["errors"]


def test_decision_api_validates_and_conflicts(client, catalog):
    _peer_world(fraud_doa=8)
    score_all(actor=TEST_ACTOR)
    flag_id = db.session.scalar(select(FraudFlag.id).where(FraudFlag.kind == "statistical"))
    finance = bearer(staff_token("finance"))
    url = f"/api/v1/fraud/flags/{flag_id}/decision"
    missing = client.post(url, headers=finance, json={"decision": "confirm", "note": "yes"})
    assert missing.status_code == 422 and "recovery_amount" in missing.json["errors"]
    ok = client.post(url, headers=finance, json={"decision": "request_evidence",
                                                 "note": "Send the boards back"})
    assert ok.status_code == 200 and ok.json["status"] == "awaiting_evidence"
    confirmed = client.post(url, headers=finance, json={
        "decision": "confirm", "note": "No boards came back", "recovery_amount": "950.00"})
    assert confirmed.json["recovery_amount"] == "950.00"
    assert client.post(url, headers=finance, json={"decision": "dismiss",
                                                   "note": "x"}).status_code == 409
    assert client.post("/api/v1/fraud/flags/424242/decision", headers=finance, json={
        "decision": "dismiss", "note": "x"}).status_code == 404


def test_score_command_prints_a_summary(runner, catalog):
    _peer_world(fraud_doa=8)
    result = runner.invoke(args=["fraud", "score"])
    assert result.exit_code == 0, result.output
    assert "1 partner(s) flagged" in result.output and "flags created" in result.output


def test_scoring_reads_the_same_concurrently_as_in_one_session(app, catalog):
    """On PostgreSQL score_all reads the cube, the repeats and the hard rules on separate
    connections at once (``fraud.service._score_and_check``): it must find exactly what
    reading them one after the other in this session finds."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    make_partner("AAA")
    empty = load_cube(partners=["AAA"], concurrently=True)
    assert (empty.partners, empty.months) == (["AAA"], [])
    db.session.commit()
    _peer_world(fraud_doa=8)
    add_history("H00", "PH-1", 1, register=False, serial="GHOST-1")
    first = add_history("H01", "TB-1", 1, month="2025-02")[0]
    again = [dict(first, partner_code=code, received_date=date(2025, 2, day),
                  completed_date=date(2025, 2, day + 5)) for code, day in (("H01", 20),
                                                                            ("H02", 21))]
    derive(again, CatalogFacts(30))
    db.session.execute(insert(HistoricRepair), again)  # a repeat, then an overlap
    db.session.commit()
    assert reads_alike_elsewhere() is postgres
    cube, verdicts, hits = _score_and_check(concurrently=True)
    plain_cube, plain_verdicts, plain_hits = _score_and_check(concurrently=False)
    assert (cube.partners, cube.skus, cube.months) == (
        plain_cube.partners, plain_cube.skus, plain_cube.months)
    for name, values in plain_cube.data.items():
        assert np.array_equal(cube[name], values), name
    assert cube["repeats"].sum() == 2
    assert verdicts == plain_verdicts and any(x.verdict == v.FLAG for x in verdicts)
    assert sorted(hits, key=repr) == sorted(plain_hits, key=repr)
    assert {hit.rule for hit in hits} == {v.UNREGISTERED_SERIAL, v.SERIAL_AT_OTHER_PARTNER}
    # Another connection sees only what this one committed: after a write, one session.
    db.session.add(FraudFlag(fingerprint="x", partner_id=1, kind="rule", signal="s",
                             score=1, reason="r", amount_at_stake=Decimal(1)))
    assert not reads_alike_elsewhere()  # not even flushed yet
    db.session.expunge_all()
    claim = dict(first, serial_number="S-UNCOMMITTED")
    derive([claim], CatalogFacts(30))
    db.session.execute(insert(HistoricRepair), [claim])
    assert not reads_alike_elsewhere()
    if postgres:
        def count() -> int:
            return db.session.scalar(select(func.count()).select_from(HistoricRepair))
        assert in_own_session(app, count) == count() - 1
    db.session.rollback()
