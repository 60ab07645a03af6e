"""The periodic SLA check and partner scorecards (no Flask here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from audit.service import record_event
from common.actors import Actor
from common.extensions import db
from common.models import utcnow
from inventory.models import Unit
from messaging.service import queue_message
from partners import repair_states as states
from partners.models import Partner, Repair, RepairReport, SlaAlert
from partners.sla import LEVELS, SlaPolicy, evaluate, percentile, stage_days

SLA_ACTOR = Actor.system("sla-check")


@dataclass(frozen=True)
class SlaSettings:
    support_email: str
    escalate_after_days: float = 2.0
    at_risk_share: float = 0.8
    # Default days per stage; a partner's own ``stage_limits`` override them one by one.
    stage_limits: Mapping[str, float] = field(default_factory=dict)


def check_slas(*, settings: SlaSettings, now: datetime | None = None) -> dict[str, int]:
    """Raise each open repair's SLA level and alert once per level reached (idempotent)."""
    now = now or utcnow()
    counts = dict.fromkeys((*LEVELS, "stage_overdue"), 0)
    open_repairs = db.session.scalars(select(Repair.id).where(
        Repair.received_at.is_not(None), Repair.completed_at.is_(None))).all()
    for repair_id in open_repairs:
        repair = db.session.get(Repair, repair_id)
        policy = SlaPolicy(target_days=repair.partner.sla_days,
                           at_risk_share=settings.at_risk_share,
                           escalate_after_days=settings.escalate_after_days)
        state = evaluate(received_at=repair.received_at, now=now,
                         paused_seconds=repair.paused_seconds, paused_at=repair.paused_at,
                         policy=policy)
        counts[state.level] += 1
        if LEVELS.index(state.level) > LEVELS.index(repair.sla_level):
            _raise_level(repair, state.level, state.elapsed_days, settings)
        if _check_stage(repair, now, settings):
            counts["stage_overdue"] += 1
    return counts


def _check_stage(repair: Repair, now: datetime, settings: SlaSettings) -> bool:
    """Alert once when a repair overruns its current stage's limit; True while it does."""
    limits = {**settings.stage_limits, **(repair.partner.stage_limits or {})}
    limit = limits.get(repair.status)
    if limit is None or repair.stage_entered_at is None:
        return False
    days = round(stage_days(entered_at=repair.stage_entered_at, now=now,
                            paused_seconds=repair.paused_seconds,
                            paused_seconds_at_entry=repair.stage_paused_seconds,
                            paused_at=repair.paused_at), 2)
    if days <= limit:
        return False
    level = f"stage:{repair.status}"
    try:
        with db.session.begin_nested():
            db.session.add(SlaAlert(repair_id=repair.id, level=level,
                                    elapsed_days=Decimal(str(days))))
    except IntegrityError:
        return True  # alerted before (or by a concurrent check)
    unit, partner = repair.unit, repair.partner
    params = {"rma_number": unit.rma.rma_number, "partner_code": partner.code,
              "stage": repair.status.replace("_", " "), "stage_days": days,
              "limit_days": limit}
    for recipient in filter(None, (partner.contact_email, settings.support_email)):
        queue_message(recipient=recipient, kind="sla_stage_overdue", language="en",
                      params=params, actor=SLA_ACTOR)
    record_event(entity_type="unit", entity_id=unit.rma.rma_number, action="sla.stage_overdue",
                 actor=SLA_ACTOR, data={"stage": repair.status, "stage_days": days,
                                        "limit_days": limit, "partner": partner.code})
    db.session.commit()
    return True


def _raise_level(repair: Repair, level: str, days: float, settings: SlaSettings) -> None:
    previous = repair.sla_level
    # Guarded by the level we read: of two concurrent checks only one moves it and alerts.
    moved = db.session.execute(
        update(Repair).where(Repair.id == repair.id, Repair.sla_level == previous)
        .values(sla_level=level).execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        db.session.rollback()
        return
    reached = LEVELS[LEVELS.index(previous) + 1: LEVELS.index(level) + 1]
    try:
        for step in reached:
            db.session.add(SlaAlert(repair_id=repair.id, level=step,
                                    elapsed_days=Decimal(str(days))))
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return
    unit, partner = repair.unit, repair.partner
    params = {"rma_number": unit.rma.rma_number, "partner_code": partner.code,
              "elapsed_days": days, "target_days": partner.sla_days, "level": level}
    if partner.contact_email:
        queue_message(recipient=partner.contact_email, kind=f"sla_{level}", language="en",
                      params=params, actor=SLA_ACTOR)
    if level in ("breached", "escalated"):
        queue_message(recipient=settings.support_email, kind=f"sla_{level}", language="en",
                      params=params, actor=SLA_ACTOR)
    if "breached" in reached:
        from claims.service import record_customer_step
        from webhooks.service import publish

        publish("sla.breached", {"rma_number": unit.rma.rma_number, "partner_code": partner.code,
                                 "elapsed_days": days, "target_days": partner.sla_days},
                partner_id=partner.id)

        # Nobody waits in silence: the customer hears it is late before they have to ask.
        record_customer_step(claim_id=unit.rma.claim_id, kind="delayed", actor=SLA_ACTOR)
    record_event(entity_type="unit", entity_id=unit.rma.rma_number, action=f"sla.{level}",
                 actor=SLA_ACTOR, data={"elapsed_days": days, "target_days": partner.sla_days,
                                        "partner": partner.code})
    db.session.commit()


def scorecard(partner: Partner, *, now: datetime | None = None) -> dict[str, Any]:
    """Turnaround median/p90, SLA compliance, first-time fix rate, DOA rate, parts per repair."""
    now = now or utcnow()
    done = db.session.scalars(select(Repair).where(
        Repair.partner_id == partner.id, Repair.completed_at.is_not(None),
        Repair.received_at.is_not(None))).all()
    turnaround = [((r.completed_at - r.received_at).total_seconds() - r.paused_seconds) / 86400
                  for r in done]
    within = sum(1 for days in turnaround if days <= partner.sla_days)
    # First-time fix: no later repair of the same serial within 90 days of shipping back.
    judged = [r for r in done if r.completed_at <= now - timedelta(days=90)] or done
    repeats = 0
    for repair in judged:
        serial = repair.unit.received_serial or repair.unit.expected_serial
        later = db.session.scalar(
            select(func.count(Repair.id)).join(Unit, Unit.id == Repair.unit_id)
            .where(Repair.id != repair.id, Repair.created_at > repair.completed_at,
                   Repair.created_at <= repair.completed_at + timedelta(days=90),
                   Unit.expected_serial == serial))
        repeats += 1 if later else 0
    reports = db.session.scalars(select(RepairReport).where(
        RepairReport.partner_id == partner.id)).all()
    parts = [sum(line.quantity for line in report.lines) for report in reports]
    return {
        "partner_code": partner.code,
        "completed_repairs": len(done),
        "open_repairs": db.session.scalar(select(func.count(Repair.id)).where(
            Repair.partner_id == partner.id, Repair.completed_at.is_(None),
            Repair.status != states.IN_TRANSIT)),
        "turnaround_median_days": _round(percentile(turnaround, 0.5)),
        "turnaround_p90_days": _round(percentile(turnaround, 0.9)),
        "sla_compliance": _round(within / len(turnaround)) if turnaround else None,
        "first_time_fix_rate": _round(1 - repeats / len(judged)) if judged else None,
        "doa_rate": _round(sum(r.doa for r in reports) / len(reports)) if reports else None,
        "parts_per_repair": _round(sum(parts) / len(parts)) if parts else None,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
