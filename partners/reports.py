"""Repair reports (a partner's claim for payment) and finance's decisions on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError

from audit.service import record_event
from catalog.models import BomLine, Part, Product
from common.actors import Actor
from common.errors import Conflict, NotFound, ValidationFailed
from common.extensions import db
from common.models import utcnow
from fraud.service import active_hold, mirror_report, note_unreturned
from partners import repair_states as states
from partners.claim_rules import BomEntry, UsedPart, price_report
from partners.models import PayableLine, Repair, RepairReport, RepairReportLine
from partners.repairs import get_repair

# A report can be filed once the partner knows what it did.
REPORTABLE = (states.REPAIRING, states.REPAIRED, states.UNREPAIRABLE, states.REPLACED,
              states.SHIPPED_BACK, states.DIAGNOSING, states.AWAITING_PARTS)


def submit_report(*, rma_number: str, partner_id: int, diagnosis_code: str, doa: bool,
                  doa_evidence: str | None, parts: Sequence[dict[str, Any]],
                  labor_minutes: int, insist_outside_bom: bool, actor: Actor,
                  core_return_days: int = 30,
                  replacement_serial: str | None = None) -> RepairReport:
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
    catalog = {part.part_number: part for part in db.session.scalars(
        select(Part).where(Part.part_number.in_(numbers)))}
    costs = {number: part.unit_cost for number, part in catalog.items()}
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
        replacement_serial=(replacement_serial or "").strip().upper() or None,
    )
    db.session.add(report)
    try:
        db.session.flush()
    except IntegrityError:
        # A concurrent submission (a double click) filed it between our check and here: the
        # same 409 as a later duplicate, not a 500.
        repair_id = report.repair_id
        db.session.rollback()
        if db.session.scalar(select(RepairReport.id).where(RepairReport.repair_id == repair_id)):
            raise Conflict(f"a report for {rma_number} was already submitted") from None
        raise
    today = utcnow().date()
    for line in check.lines:
        days = catalog[line.part_number].core_return_days
        db.session.add(RepairReportLine(
            report_id=report.id, part_number=line.part_number, quantity=line.quantity,
            unit_cost=line.unit_cost, amount=line.amount, in_bom=line.in_bom,
            due_back_on=today + timedelta(days=core_return_days if days is None else days)))
        # Consumes the partner's consignment stock: refused (409) when it has too few.
        record_part_movement(part_number=line.part_number, quantity=line.quantity,
                             from_location=f"partner:{repair.partner.code}",
                             to_location=f"consumed:{rma_number}", reason="consumed",
                             reference=rma_number, actor=actor)
    db.session.flush()
    db.session.refresh(report, ["lines"])
    mirror_report(report, sku=sku or "", serial_number=(repair.unit.received_serial
                                                          or repair.unit.expected_serial),
                  rma_number=rma_number)
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
    holding_flag = active_hold(report.id)
    if status == "approved" and holding_flag is not None:
        raise Conflict(f"payment of report {report_id} is held while fraud flag "
                       f"{holding_flag} is investigated")
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


# --- defective-part (core) returns -------------------------------------------------------------


def receive_core(*, rma_number: str, part_number: str, quantity: int, actor: Actor
                 ) -> RepairReportLine:
    """The warehouse scans a defective part back in against the report line that claimed it."""
    from inventory.models import Unit
    from inventory.service import record_part_movement
    from rma.models import Rma
    from rma.numbers import parse_rma_number

    parsed = parse_rma_number(rma_number)
    number = part_number.strip().upper()
    line = None
    if parsed.outcome == "ok":
        line = db.session.scalar(
            select(RepairReportLine).join(RepairReport)
            .join(Repair, Repair.id == RepairReport.repair_id)
            .join(Unit, Unit.id == Repair.unit_id).join(Rma, Rma.id == Unit.rma_id)
            .where(Rma.rma_number == parsed.number, RepairReportLine.part_number == number))
    if line is None:
        raise NotFound(f"no claimed {number} on {rma_number}")
    returned = db.session.execute(
        update(RepairReportLine)
        .where(RepairReportLine.id == line.id,
               RepairReportLine.returned_quantity + quantity <= RepairReportLine.quantity)
        .values(returned_quantity=RepairReportLine.returned_quantity + quantity,
                returned_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    if returned != 1:
        db.session.rollback()
        raise Conflict(f"only {line.quantity - line.returned_quantity} of {number} are still "
                       f"due back on {rma_number}")
    record_part_movement(part_number=number, quantity=quantity,
                         from_location=f"consumed:{parsed.number}", to_location="warehouse:CORES",
                         reason="core_returned", reference=parsed.number, actor=actor)
    db.session.commit()
    db.session.refresh(line)
    return line


def charge_overdue_cores(*, actor: Actor, today: Any = None) -> int:
    """Chargebacks for defective parts past their due date (once per line); returns how many."""
    from sqlalchemy.exc import IntegrityError

    from partners.models import Chargeback

    today = today or utcnow().date()
    overdue = db.session.scalars(select(RepairReportLine).where(
        RepairReportLine.due_back_on < today,
        RepairReportLine.returned_quantity < RepairReportLine.quantity,
        ~select(Chargeback.id).where(Chargeback.report_line_id == RepairReportLine.id).exists(),
    )).all()
    created = 0
    for line in overdue:
        outstanding = line.quantity - line.returned_quantity
        charge = Chargeback(report_line_id=line.id, partner_id=line.report.partner_id,
                            period=today.strftime("%Y-%m"), quantity=outstanding,
                            amount=(line.unit_cost * outstanding).quantize(Decimal("0.01")))
        db.session.add(charge)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()  # another run charged it first
            continue
        note_unreturned(line.report_id, outstanding)
        record_event(entity_type="repair_report", entity_id=line.report_id,
                     action="core.charged_back", actor=actor,
                     data={"part_number": line.part_number, "quantity": outstanding,
                           "amount": str(charge.amount), "due_back_on": str(line.due_back_on)})
        db.session.commit()
        created += 1
    return created


def chargebacks(*, partner_id: int | None, period: str | None) -> list[Any]:
    from partners.models import Chargeback

    query = select(Chargeback).order_by(Chargeback.period, Chargeback.id)
    if partner_id is not None:
        query = query.where(Chargeback.partner_id == partner_id)
    if period:
        query = query.where(Chargeback.period == period)
    return list(db.session.scalars(query))
