"""Repair reports (a partner's claim for payment) and finance's decisions on them."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select, update

from audit.service import record_event
from catalog.models import BomLine, Part, Product
from common.actors import Actor
from common.errors import Conflict, NotFound, ValidationFailed
from common.extensions import db
from common.models import utcnow
from partners import repair_states as states
from partners.claim_rules import BomEntry, UsedPart, price_report
from partners.models import PayableLine, RepairReport, RepairReportLine
from partners.repairs import get_repair

# A report can be filed once the partner knows what it did.
REPORTABLE = (states.REPAIRING, states.REPAIRED, states.UNREPAIRABLE, states.REPLACED,
              states.SHIPPED_BACK, states.DIAGNOSING, states.AWAITING_PARTS)


def submit_report(*, rma_number: str, partner_id: int, diagnosis_code: str, doa: bool,
                  doa_evidence: str | None, parts: Sequence[dict[str, Any]],
                  labor_minutes: int, insist_outside_bom: bool, actor: Actor) -> RepairReport:
    """Price a repair from catalog costs, consume the partner's consignment stock, file it."""
    from inventory.service import record_part_movement

    repair = get_repair(rma_number=rma_number, partner_id=partner_id)
    if repair.status not in REPORTABLE:
        raise Conflict(f"a unit that is {repair.status} cannot be reported on yet")
    if db.session.scalar(select(RepairReport.id).where(RepairReport.repair_id == repair.id)):
        raise Conflict(f"a report for {rma_number} was already submitted")
    if doa and not (doa_evidence or "").strip():
        raise ValidationFailed("DOA needs evidence", errors={"doa_evidence": [
            "describe how the unit was dead on arrival"]})
    sku = repair.unit.sku
    product = db.session.scalar(select(Product).where(Product.sku == sku)) if sku else None
    bom = {line.part_number: BomEntry(line.part_number, line.max_qty, part.unit_cost)
           for line, part in db.session.execute(
               select(BomLine, Part).join(Part, Part.part_number == BomLine.part_number)
               .where(BomLine.sku == sku)).all()}
    numbers = [str(p["part_number"]).strip().upper() for p in parts]
    costs = dict(db.session.execute(select(Part.part_number, Part.unit_cost)
                                    .where(Part.part_number.in_(numbers))).all())
    rate = repair.partner.labor_rate_per_hour
    check = price_report(
        parts=[UsedPart(str(p["part_number"]), int(p["quantity"])) for p in parts],
        bom=bom, catalog_costs=costs, labor_minutes=labor_minutes,
        standard_minutes=product.labor_minutes if product else None, rate_per_hour=rate,
        insist=insist_outside_bom)
    if check.errors:
        raise ValidationFailed("the report does not fit the product", errors=check.errors)
    if doa:
        check.flags.append("doa_declared")
    report = RepairReport(
        repair_id=repair.id, partner_id=partner_id, diagnosis_code=diagnosis_code.strip(),
        doa=doa, doa_evidence=(doa_evidence or "").strip() or None,
        labor_minutes=labor_minutes, labor_rate_per_hour=rate,
        parts_amount=check.parts_amount, labor_amount=check.labor_amount,
        claimed_amount=check.claimed_amount, flags=check.flags,
    )
    db.session.add(report)
    db.session.flush()
    for line in check.lines:
        db.session.add(RepairReportLine(report_id=report.id, part_number=line.part_number,
                                        quantity=line.quantity, unit_cost=line.unit_cost,
                                        amount=line.amount, in_bom=line.in_bom))
        # Consumes the partner's consignment stock: refused (409) when it has too few.
        record_part_movement(part_number=line.part_number, quantity=line.quantity,
                             from_location=f"partner:{repair.partner.code}",
                             to_location=f"consumed:{rma_number}", reason="consumed",
                             reference=rma_number, actor=actor)
    record_event(entity_type="repair_report", entity_id=report.id,
                 action="repair_report.submitted", actor=actor,
                 data={"rma_number": rma_number, "claimed_amount": str(report.claimed_amount),
                       "parts": [{"part_number": x.part_number, "quantity": x.quantity}
                                 for x in check.lines],
                       "labor_minutes": labor_minutes, "doa": doa, "flags": check.flags})
    db.session.commit()
    return report


def reports_query(*, status: str | None = None, partner_id: int | None = None) -> Select:
    query = select(RepairReport).order_by(RepairReport.submitted_at.desc(), RepairReport.id.desc())
    if status:
        query = query.where(RepairReport.status == status)
    if partner_id is not None:
        query = query.where(RepairReport.partner_id == partner_id)
    return query


def get_report(report_id: int) -> RepairReport:
    report = db.session.get(RepairReport, report_id)
    if report is None:
        raise NotFound(f"no repair report {report_id}")
    return report


def decide_report(*, report_id: int, decision: str, note: str, actor: Actor) -> RepairReport:
    """Finance approves (a payable line for this month), rejects or withholds a report."""
    if not note.strip():
        raise ValidationFailed("a note is required", errors={"note": ["explain the decision"]})
    report = get_report(report_id)
    status = {"approve": "approved", "reject": "rejected", "withhold": "withheld"}[decision]
    now = utcnow()
    changed = db.session.execute(
        update(RepairReport)
        .where(RepairReport.id == report.id, RepairReport.status.in_(("submitted", "withheld")))
        .values(status=status, decided_at=now, decided_by=str(actor), decision_note=note.strip())
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        db.session.rollback()
        raise Conflict(f"report {report_id} was already {report.status}")
    if status == "approved":
        db.session.add(PayableLine(report_id=report.id, partner_id=report.partner_id,
                                   period=now.strftime("%Y-%m"), amount=report.claimed_amount))
    record_event(entity_type="repair_report", entity_id=report.id,
                 action=f"repair_report.{status}", actor=actor, reason=note.strip(),
                 data={"amount": str(report.claimed_amount)})
    db.session.commit()
    db.session.refresh(report)
    return report


def payables(*, partner_id: int | None, period: str | None) -> list[PayableLine]:
    query = select(PayableLine).order_by(PayableLine.period, PayableLine.id)
    if partner_id is not None:
        query = query.where(PayableLine.partner_id == partner_id)
    if period:
        query = query.where(PayableLine.period == period)
    return list(db.session.scalars(query))


def total(lines: Sequence[PayableLine]) -> Decimal:
    return sum((line.amount for line in lines), Decimal("0.00"))
