"""Repair tracking by partners: status changes under optimistic concurrency (no Flask here)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, select, update

from audit.service import record_event
from common.actors import Actor
from common.errors import Conflict, DomainError, NotFound, ValidationFailed
from common.extensions import db
from common.models import utcnow
from partners import repair_states as states
from partners.models import Repair, RepairEvent
from rma.models import Rma
from rma.numbers import parse_rma_number


class StaleVersion(DomainError):
    status = 412
    type = "stale-version"
    title = "The unit changed since you read it"


class VersionRequired(DomainError):
    status = 428
    type = "version-required"
    title = "If-Match header required"


class IllegalTransition(Conflict):
    type = "illegal-transition"
    title = "That status cannot follow the current one"


def open_repair(*, unit_id: int, partner_id: int, shipment_number: str, actor: Actor) -> Repair:
    """A repair starts when the warehouse ships the unit to the partner."""
    repair = Repair(unit_id=unit_id, partner_id=partner_id, shipment_number=shipment_number)
    db.session.add(repair)
    db.session.flush()
    db.session.add(RepairEvent(repair_id=repair.id, from_status=None,
                               to_status=states.IN_TRANSIT, actor=str(actor)))
    return repair


def repairs_query(*, partner_id: int, status: str | None = None) -> Select:
    """The partner's repairs (and only theirs), most recently changed first."""
    query = select(Repair).where(Repair.partner_id == partner_id).order_by(
        Repair.updated_at.desc(), Repair.id.desc())
    if status:
        query = query.where(Repair.status == status)
    return query


def get_repair(*, rma_number: str, partner_id: int) -> Repair:
    """The partner's current repair of a unit; 404 for any unit that is not theirs."""
    from inventory.models import Unit

    parsed = parse_rma_number(rma_number)
    repair = None
    if parsed.outcome == "ok":
        repair = db.session.scalar(
            select(Repair).join(Unit, Unit.id == Repair.unit_id).join(Rma, Rma.id == Unit.rma_id)
            .where(Rma.rma_number == parsed.number, Repair.partner_id == partner_id)
            .order_by(Repair.id.desc()).limit(1))
    if repair is None:
        raise NotFound(f"no unit {rma_number} at this partner")
    return repair


def change_status(*, rma_number: str, partner_id: int, target: str,
                  expected_version: int | None, actor: Actor, note: str | None = None) -> Repair:
    """Move a repair to ``target`` if allowed and nobody changed it since ``expected_version``."""
    from claims.service import record_customer_step
    from webhooks.service import publish

    repair = get_repair(rma_number=rma_number, partner_id=partner_id)
    if expected_version is None:
        raise VersionRequired("send If-Match with the ETag you read",
                              extra={"version": repair.version})
    if target not in states.STATUSES:
        raise ValidationFailed("unknown status", errors={"status": [
            "one of " + ", ".join(states.STATUSES)]})
    if expected_version != repair.version:
        raise StaleVersion(f"the unit is at version {repair.version}, you sent "
                           f"{expected_version}", extra={"version": repair.version,
                                                          "current_status": repair.status})
    current = repair.status
    if not states.can_move(current, target):
        raise IllegalTransition(
            f"{target} cannot follow {current}",
            extra={"current_status": current, "allowed": list(states.allowed_next(current))})
    now = utcnow()
    changed = db.session.execute(
        update(Repair).where(Repair.id == repair.id, Repair.version == expected_version)
        .values(status=target, version=Repair.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        db.session.rollback()
        fresh = get_repair(rma_number=rma_number, partner_id=partner_id)
        raise StaleVersion("someone else changed the unit first",
                           extra={"version": fresh.version, "current_status": fresh.status})
    db.session.add(RepairEvent(repair_id=repair.id, from_status=current, to_status=target,
                               actor=str(actor), note=(note or None)))
    unit = repair.unit
    unit.status, unit.status_changed_at = target, now
    if target == states.RECEIVED:
        unit.location = f"partner:{repair.partner.code}"
        repair.received_at = now
    if target == states.SHIPPED_BACK:
        repair.completed_at = now
        _stop_pause(repair, now)
    repair.stage_entered_at, repair.stage_paused_seconds = now, _paused_so_far(repair, now)
    unit.version += 1
    record_event(entity_type="unit", entity_id=unit.rma.rma_number,
                 action="repair.status_changed", actor=actor, reason=note,
                 data={"before": current, "after": target, "partner": repair.partner.code,
                       "version": expected_version + 1})
    publish("repair.status_changed", {
        "rma_number": unit.rma.rma_number, "partner_code": repair.partner.code,
        "from": current, "to": target, "version": expected_version + 1,
    }, partner_id=repair.partner_id)
    if target in states.CUSTOMER_STEPS:
        record_customer_step(claim_id=unit.rma.claim_id, kind=states.CUSTOMER_STEPS[target],
                             actor=actor)
    db.session.commit()
    db.session.refresh(repair)
    return repair


def history(repair: Repair) -> list[RepairEvent]:
    return list(db.session.scalars(select(RepairEvent).where(RepairEvent.repair_id == repair.id)
                                   .order_by(RepairEvent.id)))


def _paused_so_far(repair: Repair, now: datetime) -> int:
    running = int((now - repair.paused_at).total_seconds()) if repair.paused_at else 0
    return repair.paused_seconds + running


def _stop_pause(repair: Repair, now: datetime) -> None:
    if repair.paused_at is not None:
        repair.paused_seconds += int((now - repair.paused_at).total_seconds())
        repair.paused_at = None


def pause_clock(*, rma_number: str, partner_id: int, reason: str, actor: Actor,
                now: datetime | None = None) -> Repair:
    """Stop the SLA clock while waiting for the customer (the reason is kept and audited)."""
    repair = get_repair(rma_number=rma_number, partner_id=partner_id)
    if not reason.strip():
        raise ValidationFailed("a reason is required", errors={"reason": ["say what you wait for"]})
    if repair.received_at is None or repair.completed_at is not None:
        raise Conflict("the clock only runs between receipt and shipping back")
    if repair.paused_at is not None:
        raise Conflict("the clock is already paused")
    repair.paused_at, repair.pause_reason = now or utcnow(), reason.strip()
    repair.version += 1
    record_event(entity_type="unit", entity_id=repair.unit.rma.rma_number,
                 action="repair.clock_paused", actor=actor, reason=reason.strip())
    db.session.commit()
    return repair


def resume_clock(*, rma_number: str, partner_id: int, actor: Actor,
                 now: datetime | None = None) -> Repair:
    """Restart the SLA clock."""
    repair = get_repair(rma_number=rma_number, partner_id=partner_id)
    if repair.paused_at is None:
        raise Conflict("the clock is not paused")
    now = now or utcnow()
    paused_for = int((now - repair.paused_at).total_seconds())
    _stop_pause(repair, now)
    repair.version += 1
    record_event(entity_type="unit", entity_id=repair.unit.rma.rma_number,
                 action="repair.clock_resumed", actor=actor,
                 data={"paused_seconds": paused_for})
    db.session.commit()
    return repair
