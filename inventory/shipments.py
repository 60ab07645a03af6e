"""Routing received units and shipping them to and from partners (no Flask here)."""

from __future__ import annotations

from sqlalchemy import func, select, update

from audit.service import record_event
from common.actors import Actor
from common.errors import Conflict, NotFound, ValidationFailed
from common.extensions import db
from common.models import utcnow
from inventory import routing
from inventory.manifest import ManifestData, ManifestLine, render_manifest
from inventory.models import RECEIVING_BIN, Shipment, ShipmentItem, StockMovement, Unit
from inventory.service import get_unit
from rma.numbers import check_character, normalize_rma_input, parse_rma_number, random_symbols

# Statuses in which a unit counts towards a partner's load.
PARTNER_LOAD_STATUSES = ("routed", "shipped_to_partner", "received_at_partner", "diagnosing",
                         "awaiting_parts", "repairing")
ROUTABLE = ("received", "on_hold", "routed", "returned_from_partner")


def new_shipment_number() -> str:
    payload = "S" + random_symbols(8)
    return payload + check_character(payload)


# --- routing -----------------------------------------------------------------------------------


def suggest_route(unit: Unit) -> routing.Route:
    """The rules' default disposition for a received unit."""
    from partners.service import active_partners

    loads = dict(db.session.execute(
        select(Unit.partner_code, func.count(Unit.id))
        .where(Unit.status.in_(PARTNER_LOAD_STATUSES), Unit.partner_code.is_not(None))
        .group_by(Unit.partner_code)).all())
    partners = [routing.PartnerLoad(p.code, p.country, loads.get(p.code, 0))
                for p in active_partners()]
    country = (unit.rma.claim.return_address or {}).get("country")
    return routing.default_route(remedy=unit.rma.remedy, grade=unit.grade,
                                 serial_mismatch=unit.serial_mismatch,
                                 customer_country=country, partners=partners)


def route_unit(*, rma_number: str, actor: Actor, disposition: str | None = None,
               partner_code: str | None = None, reason: str | None = None) -> Unit:
    """Apply the default disposition, or an override that must give its reason."""
    from partners.service import find_partner

    unit = get_unit(rma_number)
    if unit.status not in ROUTABLE:
        raise Conflict(f"a unit that is {unit.status} cannot be routed",
                       extra={"current_status": unit.status})
    default = suggest_route(unit)
    chosen = disposition or default.disposition
    if chosen not in routing.DISPOSITIONS:
        raise ValidationFailed("unknown disposition", errors={"disposition": [
            "one of " + ", ".join(routing.DISPOSITIONS)]})
    partner = partner_code.strip().upper() if partner_code else None
    if chosen == routing.REPAIR_AT_PARTNER:
        partner = partner or default.partner_code
        if partner is None or find_partner(partner) is None:
            raise ValidationFailed("repair needs a known partner",
                                   errors={"partner_code": ["unknown or missing partner"]})
    else:
        partner = None
    overridden = (chosen, partner) != (default.disposition, default.partner_code)
    if overridden and not (reason or "").strip():
        raise ValidationFailed("an override needs a reason", errors={"reason": [
            f"the rules suggest {default.disposition} ({default.why}); say why not"]})
    before = {"status": unit.status, "disposition": unit.disposition,
              "partner_code": unit.partner_code}
    unit.disposition, unit.partner_code = chosen, partner
    unit.status = {routing.SCRAP: "scrapped", routing.HOLD_FOR_INSPECTION: "on_hold",
                   routing.REFURBISH_TO_STOCK: "to_refurbish",
                   routing.REPLACE_FROM_STOCK: "to_refurbish",
                   routing.RETURN_TO_VENDOR: "to_vendor"}.get(chosen, "routed")
    unit.status_changed_at = utcnow()
    unit.version += 1
    if chosen == routing.SCRAP:
        db.session.add(StockMovement(item_type="unit", unit_id=unit.id, quantity=1,
                                     from_location=unit.location, to_location="scrap",
                                     reason="scrapped", reference=unit.rma.rma_number,
                                     actor=str(actor)))
        unit.location = "scrap"
    record_event(entity_type="unit", entity_id=unit.rma.rma_number, action="unit.routed",
                 actor=actor, reason=reason,
                 data={"before": before, "after": {"status": unit.status, "disposition": chosen,
                                                   "partner_code": partner},
                       "suggested": {"disposition": default.disposition,
                                     "partner_code": default.partner_code, "why": default.why},
                       "override": overridden})
    db.session.commit()
    return unit


# --- shipments ---------------------------------------------------------------------------------


def get_shipment(number: str) -> Shipment:
    parsed = normalize_rma_input(number)
    shipment = db.session.scalar(select(Shipment).where(Shipment.shipment_number == parsed))
    if shipment is None:
        raise NotFound(f"no shipment {number}")
    return shipment


def create_shipment(*, partner_code: str, direction: str, actor: Actor,
                    rma_numbers: list[str] | None = None) -> Shipment:
    """Open a shipment to a partner, or one expected back from a partner with its units."""
    from partners.service import get_partner

    partner = get_partner(partner_code)
    if direction not in ("to_partner", "from_partner"):
        raise ValidationFailed("bad direction", errors={"direction": ["to_partner or "
                                                                     "from_partner"]})
    shipment = Shipment(shipment_number=new_shipment_number(), direction=direction,
                        partner_code=partner.code, created_by=str(actor))
    db.session.add(shipment)
    db.session.flush()
    for number in rma_numbers or []:
        _add(shipment, number)
    record_event(entity_type="shipment", entity_id=shipment.shipment_number,
                 action="shipment.created", actor=actor,
                 data={"direction": direction, "partner_code": partner.code,
                       "units": [i.unit.rma.rma_number for i in shipment.items]})
    db.session.commit()
    return shipment


def add_unit(*, shipment_number: str, rma_number: str, actor: Actor) -> Shipment:
    """Pack a routed unit into an open outgoing shipment."""
    shipment = get_shipment(shipment_number)
    item = _add(shipment, rma_number)
    record_event(entity_type="shipment", entity_id=shipment.shipment_number,
                 action="shipment.unit_added", actor=actor,
                 data={"rma_number": item.unit.rma.rma_number})
    db.session.commit()
    return shipment


def _add(shipment: Shipment, rma_number: str) -> ShipmentItem:
    if shipment.status != "open":
        raise Conflict(f"shipment {shipment.shipment_number} is {shipment.status}")
    unit = get_unit(rma_number)
    if shipment.direction == "to_partner":
        if unit.status != "routed" or unit.partner_code != shipment.partner_code:
            raise Conflict(f"unit {unit.rma.rma_number} is not routed to "
                           f"{shipment.partner_code} (it is {unit.status}, "
                           f"{unit.partner_code or 'no partner'})")
        busy = db.session.scalar(
            select(ShipmentItem.id).join(Shipment)
            .where(ShipmentItem.unit_id == unit.id, Shipment.status == "open",
                   Shipment.direction == "to_partner"))
        if busy is not None:
            raise Conflict(f"unit {unit.rma.rma_number} is already packed in another shipment")
    elif unit.partner_code != shipment.partner_code:
        raise Conflict(f"unit {unit.rma.rma_number} is not with {shipment.partner_code}")
    if any(item.unit_id == unit.id for item in shipment.items):
        raise Conflict(f"unit {unit.rma.rma_number} is already on this shipment")
    item = ShipmentItem(shipment_id=shipment.id, unit_id=unit.id, unit=unit)
    shipment.items.append(item)
    db.session.flush()
    return item


def send_shipment(*, shipment_number: str, actor: Actor) -> Shipment:
    """Hand an outgoing shipment to the carrier: every unit moves to transit, once."""
    from partners.repairs import open_repair
    from partners.service import get_partner
    from webhooks.service import publish

    shipment = get_shipment(shipment_number)
    if shipment.direction != "to_partner":
        raise Conflict("only outgoing shipments are sent")
    if not shipment.items:
        raise ValidationFailed("empty shipment", errors={"items": ["pack at least one unit"]})
    now = utcnow()
    sent = db.session.execute(
        update(Shipment).where(Shipment.id == shipment.id, Shipment.status == "open")
        .values(status="sent", sent_at=now).execution_options(synchronize_session=False)
    ).rowcount
    if sent != 1:
        db.session.rollback()
        raise Conflict(f"shipment {shipment.shipment_number} was already sent")
    transit = f"transit:{shipment.shipment_number}"
    for item in shipment.items:
        unit = item.unit
        db.session.add(StockMovement(item_type="unit", unit_id=unit.id, quantity=1,
                                     from_location=unit.location, to_location=transit,
                                     reason="shipped_to_partner",
                                     reference=shipment.shipment_number, actor=str(actor)))
        unit.location, unit.status, unit.status_changed_at = transit, "shipped_to_partner", now
        unit.version += 1
        item.state = "sent"
        partner_id = get_partner(shipment.partner_code).id
        open_repair(unit_id=unit.id, partner_id=partner_id,
                    shipment_number=shipment.shipment_number, actor=actor)
        publish("unit.shipped_to_partner", {
            "rma_number": unit.rma.rma_number, "sku": unit.sku,
            "serial_number": unit.received_serial or unit.expected_serial,
            "partner_code": shipment.partner_code, "shipment_number": shipment.shipment_number,
        }, partner_id=partner_id)
    record_event(entity_type="shipment", entity_id=shipment.shipment_number,
                 action="shipment.sent", actor=actor,
                 data={"units": [i.unit.rma.rma_number for i in shipment.items]})
    db.session.commit()
    db.session.refresh(shipment)
    return shipment


def scan_into_shipment(*, shipment_number: str, code: str, actor: Actor) -> dict:
    """Receive one unit of an incoming shipment; units not on the list are received too."""
    shipment = get_shipment(shipment_number)
    if shipment.direction != "from_partner" or shipment.status not in ("open", "receiving"):
        raise Conflict(f"shipment {shipment.shipment_number} is not being received")
    parsed = parse_rma_number(code)
    if parsed.outcome != "ok":
        return {"outcome": parsed.outcome, "rma_number": None, "message": parsed.message}
    unit = get_unit(parsed.number)
    item = next((i for i in shipment.items if i.unit_id == unit.id), None)
    if item is not None and item.state == "received":
        return {"outcome": "already_received", "rma_number": parsed.number,
                "message": "Already scanned on this shipment."}
    outcome = "received"
    if item is None:
        outcome = "unexpected"
        item = ShipmentItem(shipment_id=shipment.id, unit_id=unit.id, unit=unit,
                            state="unexpected")
        shipment.items.append(item)
    won = db.session.execute(
        update(ShipmentItem).where(ShipmentItem.shipment_id == shipment.id,
                                   ShipmentItem.unit_id == unit.id,
                                   ShipmentItem.state.in_(("listed", "sent")))
        .values(state="received", scanned_at=utcnow()).execution_options(
            synchronize_session=False)
    ).rowcount if outcome == "received" else 1
    if won != 1:
        db.session.rollback()
        return {"outcome": "already_received", "rma_number": parsed.number,
                "message": "Already scanned on this shipment."}
    if outcome == "unexpected":
        item.scanned_at = utcnow()
    shipment.status = "receiving"
    db.session.add(StockMovement(item_type="unit", unit_id=unit.id, quantity=1,
                                 from_location=unit.location, to_location=RECEIVING_BIN,
                                 reason="returned", reference=shipment.shipment_number,
                                 actor=str(actor)))
    unit.location, unit.status = RECEIVING_BIN, "returned_from_partner"
    unit.status_changed_at = utcnow()
    unit.version += 1
    record_event(entity_type="unit", entity_id=parsed.number, action="unit.returned",
                 actor=actor, data={"shipment": shipment.shipment_number,
                                    "expected": outcome == "received"})
    db.session.commit()
    message = "Received." if outcome == "received" else \
        "Not on this shipment's list: received and flagged."
    return {"outcome": outcome, "rma_number": parsed.number, "message": message}


def close_shipment(*, shipment_number: str, actor: Actor) -> dict:
    """Finish receiving: list missing and unexpected units and record the discrepancy."""
    shipment = get_shipment(shipment_number)
    if shipment.direction != "from_partner" or shipment.status == "closed":
        raise Conflict(f"shipment {shipment.shipment_number} cannot be closed")
    missing = [i.unit.rma.rma_number for i in shipment.items if i.state in ("listed", "sent")]
    unexpected = [i.unit.rma.rma_number for i in shipment.items if i.state == "unexpected"]
    for item in shipment.items:
        if item.state in ("listed", "sent"):
            item.state = "missing"
    shipment.status, shipment.closed_at = "closed", utcnow()
    record_event(entity_type="shipment", entity_id=shipment.shipment_number,
                 action="shipment.closed", actor=actor,
                 data={"missing": missing, "unexpected": unexpected})
    db.session.commit()
    return {"shipment_number": shipment.shipment_number, "missing": missing,
            "unexpected": unexpected,
            "received": [i.unit.rma.rma_number for i in shipment.items
                         if i.state in ("received", "unexpected")]}


def manifest_pdf(shipment: Shipment) -> bytes:
    from partners.service import get_partner

    partner = get_partner(shipment.partner_code)
    return render_manifest(ManifestData(
        shipment_number=shipment.shipment_number, direction=shipment.direction,
        partner_code=partner.code, partner_name=partner.name,
        created_on=shipment.created_at.date().isoformat(),
        lines=[ManifestLine(i.unit.rma.rma_number, i.unit.sku or "",
                            i.unit.received_serial or i.unit.expected_serial, i.unit.grade or "")
               for i in shipment.items],
    ))
