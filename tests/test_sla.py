"""SLA clocks with a controllable clock, pauses, alerts once per level, and scorecards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from claims.models import TimelineEntry
from common.extensions import db
from messaging.models import Message
from partners import sla
from partners.models import Partner, Repair, SlaAlert
from partners.sla_service import SlaSettings, check_slas, scorecard
from tests.factories import bearer, load_catalog, partner_key, staff_token
from tests.test_partner_repairs import patch, ship_units_to

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = sla.SlaPolicy(target_days=10, at_risk_share=0.8, escalate_after_days=2)
SETTINGS = SlaSettings(support_email="support@example.test", escalate_after_days=2)


@pytest.mark.parametrize(
    ("days", "paused", "level"),
    [(1, 0, "ok"), (8.5, 0, "at_risk"), (10.5, 0, "breached"), (12.5, 0, "escalated"),
     (12.5, 3 * 86400, "at_risk")],
)
def test_levels_from_elapsed_time_minus_pauses(days, paused, level):
    state = sla.evaluate(received_at=T0, now=T0 + timedelta(days=days), paused_seconds=paused,
                         paused_at=None, policy=POLICY)
    assert state.level == level


def test_a_running_pause_stops_the_clock():
    state = sla.evaluate(received_at=T0, now=T0 + timedelta(days=11), paused_seconds=0,
                         paused_at=T0 + timedelta(days=5), policy=POLICY)
    assert state.elapsed_days == 5 and state.level == "ok" and state.paused


def test_percentile_nearest_rank():
    assert sla.percentile([], 0.5) is None
    assert sla.percentile([4, 1, 3, 2], 0.5) == 2
    assert sla.percentile(list(range(1, 11)), 0.9) == 9


@pytest.fixture
def at_partner(client):
    load_catalog()
    _, key = partner_key("SHOP")
    db.session.execute(update(Partner).values(sla_days=10, contact_email="shop@example.test"))
    db.session.commit()
    number = ship_units_to(client, "SHOP", ["SLA-1"])[0]
    assert patch(client, bearer(key), number, "received_at_partner", 1).status_code == 200
    db.session.execute(update(Repair).values(received_at=T0))
    db.session.commit()
    return number, bearer(key)


def test_check_alerts_once_per_level_and_tells_the_customer(app, at_partner):
    assert check_slas(settings=SETTINGS, now=T0 + timedelta(days=2))["ok"] == 1
    assert db.session.scalar(select(func.count(SlaAlert.id))) == 0
    check_slas(settings=SETTINGS, now=T0 + timedelta(days=8.5))
    assert db.session.scalars(select(SlaAlert.level)).all() == ["at_risk"]
    check_slas(settings=SETTINGS, now=T0 + timedelta(days=8.6))  # re-run: nothing new
    assert db.session.scalar(select(func.count(SlaAlert.id))) == 1
    check_slas(settings=SETTINGS, now=T0 + timedelta(days=13))  # jumps two levels at once
    assert sorted(db.session.scalars(select(SlaAlert.level))) == ["at_risk", "breached",
                                                                   "escalated"]
    recipients = db.session.scalars(select(Message.recipient).where(
        Message.kind.like("sla_%"))).all()
    assert recipients.count("shop@example.test") == 2
    assert recipients.count("support@example.test") == 1
    assert db.session.scalar(select(func.count(TimelineEntry.id)).where(
        TimelineEntry.kind == "delayed")) == 1
    sent = db.session.scalar(select(Message).where(Message.kind == "sla_escalated"))
    assert sent.status == "sent" and "SLA escalation" in sent.subject


def test_pause_and_resume_through_the_api(client, app, at_partner):
    number, headers = at_partner
    assert client.post(f"/api/v1/partner/units/{number}/pause", json={"reason": ""},
                       headers=headers).status_code == 422
    paused = client.post(f"/api/v1/partner/units/{number}/pause", headers=headers,
                         json={"reason": "waiting for the customer's unlock code"})
    assert paused.status_code == 200
    assert client.post(f"/api/v1/partner/units/{number}/pause", headers=headers,
                       json={"reason": "again"}).status_code == 409
    repair = db.session.scalar(select(Repair))
    assert repair.pause_reason.startswith("waiting") and repair.paused_at is not None
    resumed = client.post(f"/api/v1/partner/units/{number}/resume", headers=headers)
    assert resumed.status_code == 200
    assert db.session.scalar(select(Repair.paused_at)) is None


def test_scorecard_on_a_known_small_data_set(client, app):
    load_catalog()
    _, key = partner_key("CARD")
    db.session.execute(update(Partner).values(sla_days=5))
    db.session.commit()
    numbers = ship_units_to(client, "CARD", ["SC-1", "SC-2"])
    for number in numbers:
        for version, status in enumerate(("received_at_partner", "diagnosing", "repairing",
                                          "repaired", "shipped_back"), start=1):
            assert patch(client, bearer(key), number, status, version).status_code == 200
    repairs = db.session.scalars(select(Repair).order_by(Repair.id)).all()
    for repair, days in zip(repairs, (3, 7), strict=True):
        repair.received_at = T0
        repair.completed_at = T0 + timedelta(days=days)
    db.session.commit()
    card = scorecard(db.session.scalar(select(Partner)), now=T0 + timedelta(days=200))
    assert card["completed_repairs"] == 2
    assert card["turnaround_median_days"] == 3.0 and card["turnaround_p90_days"] == 7.0
    assert card["sla_compliance"] == 0.5 and card["first_time_fix_rate"] == 1.0
    api = client.get("/api/v1/partners/CARD/scorecard", headers=bearer(staff_token("support")))
    assert api.status_code == 200 and api.json["completed_repairs"] == 2
    own = client.get("/api/v1/partner/scorecard", headers=bearer(key)).json
    assert own["partner_code"] == "CARD"


def test_sla_cli_runs_the_check_once(app, runner, at_partner):
    result = runner.invoke(args=["sla", "check"])
    assert result.exit_code == 0 and "escalated" in result.output


def test_stage_clock_skips_pauses_taken_in_the_stage_only():
    entered = T0 + timedelta(days=1)
    # Paused for a day inside the stage (resumed): 3 days on the clock, 2 in the stage.
    assert sla.stage_days(entered_at=entered, now=T0 + timedelta(days=4),
                          paused_seconds=86400 + 500, paused_seconds_at_entry=500,
                          paused_at=None) == 2
    # A pause that began before the stage and still runs: no stage time at all.
    assert sla.stage_days(entered_at=entered, now=T0 + timedelta(days=4),
                          paused_seconds=500, paused_seconds_at_entry=500 + 86400,
                          paused_at=T0) == 0


def test_a_stage_overrunning_its_limit_alerts_once_with_the_partners_own_limit(
        client, app, at_partner):
    number, headers = at_partner
    db.session.execute(update(Repair).values(stage_entered_at=T0, stage_paused_seconds=0))
    db.session.execute(update(Partner).values(stage_limits={"received_at_partner": 3}))
    db.session.commit()
    settings = SlaSettings(support_email="support@example.test",
                           stage_limits={"received_at_partner": 1, "diagnosing": 2})
    assert check_slas(settings=settings, now=T0 + timedelta(days=2))["stage_overdue"] == 0
    counts = check_slas(settings=settings, now=T0 + timedelta(days=3.5))
    assert counts["stage_overdue"] == 1
    check_slas(settings=settings, now=T0 + timedelta(days=4))  # still overdue: no new alert
    assert db.session.scalars(select(SlaAlert.level)).all() == ["stage:received_at_partner"]
    sent = db.session.scalars(select(Message).where(Message.kind == "sla_stage_overdue")).all()
    assert sorted(m.recipient for m in sent) == ["shop@example.test", "support@example.test"]
    assert "received at partner" in sent[0].body and "limit for that stage is 3" in sent[0].body
    # Moving on starts the next stage's clock afresh.
    assert patch(client, headers, number, "diagnosing", 2).status_code == 200
    repair = db.session.scalar(select(Repair))
    assert repair.stage_entered_at > T0 + timedelta(days=100)


def test_partner_stage_limits_are_validated(client, app):
    admin = bearer(staff_token("admin"))
    bad = client.post("/api/v1/partners", headers=admin, json={
        "code": "STG", "name": "Stage AB", "stage_limits": {"teleporting": 2}})
    assert bad.status_code == 422
    assert [key.split(".")[0] for key in bad.json["errors"]] == ["stage_limits"]
    ok = client.post("/api/v1/partners", headers=admin, json={
        "code": "STG", "name": "Stage AB", "stage_limits": {"awaiting_parts": 5}})
    assert ok.status_code == 201 and ok.json["stage_limits"] == {"awaiting_parts": 5}
