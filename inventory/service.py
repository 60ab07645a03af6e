"""Receiving scans, unit locations and the parts ledger (no Flask here).

A scan receives a unit with one conditional UPDATE (``awaiting_return`` -> ``received``): of two
stations scanning the same box at once exactly one wins, on every database, and the other is
told the unit is already received. Parts move through ``move_parts``, which updates the
per-location level under a ``quantity >= 0`` CHECK in the same transaction as the ledger row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import lazyload

from audit.service import record_event
from catalog.models import Part
from common.actors import Actor
from common.errors import ValidationFailed
from common.extensions import db
from common.fastsql import connection_of, insert_into
from common.models import utcnow
from inventory.errors import InsufficientStock, UnitNotFound
from inventory.models import GRADES, RECEIVING_BIN, Scan, StockLevel, StockMovement, Unit
from rma.models import Rma
from rma.numbers import looks_like_rma, normalize_rma_input, parse_rma_number

# Locations whose part levels we keep; anything else is a source or sink outside our stock
# (a supplier, a repair that consumed the part, the scrap bin, the vendor).
TRACKED_PREFIXES = ("warehouse:", "partner:")
MAX_CODE = 128
MAX_SERIAL = 64  # the serial columns' width; PostgreSQL refuses longer text (SQLite keeps it)


@dataclass(frozen=True)
class ScanResult:
    outcome: str
    severity: str  # success | warning | error: what colour and sound the station shows
    message: str
    next_action: str
    rma_number: str | None = None
    unit: Unit | None = None


# A unit is only appended when its RMA is issued (receiving loads it later): one statement on
# the cursor with the columns' defaults, instead of a unit-of-work flush in the filing
# transaction.
_INSERT_UNIT = insert_into(Unit.__table__, references={"rma_id": Rma.__table__.c.rma_number})


def expect_unit(*, rma_number: str, serial_number: str, sku: str | None, actor: Actor) -> None:
    """A unit the customer is about to send back (called when the RMA is issued)."""
    _INSERT_UNIT.execute(
        connection_of(), {"rma_number": rma_number, "expected_serial": serial_number, "sku": sku}
    )


def record_scan(
    *,
    code: str,
    actor: Actor,
    serial_number: str | None = None,
    grade: str | None = None,
    station: str | None = None,
    notes: str | None = None,
) -> ScanResult:
    """Handle one scanner read: receive the unit, record its serial, or say what is wrong."""
    raw = (code or "").strip()
    serial = serial_number.strip().upper() if serial_number and serial_number.strip() else None
    if grade is not None and grade not in GRADES:
        raise ValidationFailed("unknown grade", errors={"grade": [f"one of {', '.join(GRADES)}"]})
    if serial is not None and len(serial) > MAX_SERIAL:
        # The station's input takes whatever a scanner reads, a long 2D code included.
        raise ValidationFailed(f"a serial number has at most {MAX_SERIAL} characters",
                               errors={"serial_number": [f"at most {MAX_SERIAL} characters"]})
    result = _interpret(raw, serial, grade, station, notes, actor)
    db.session.add(Scan(
        code=raw[:MAX_CODE], outcome=result.outcome, rma_number=result.rma_number,
        serial_number=serial, grade=grade, station=(station or "")[:40] or None,
        scanned_by=str(actor),
    ))
    db.session.commit()
    return result


def _interpret(raw: str, serial: str | None, grade: str | None, station: str | None,
               notes: str | None, actor: Actor) -> ScanResult:
    if not raw or len(raw) > MAX_CODE:
        return ScanResult("malformed", "error", "Nothing readable was scanned.",
                          "Scan the RMA label again.")
    if not looks_like_rma(normalize_rma_input(raw)):
        return ScanResult("not_an_rma", "error",
                          "This is not an RMA label (a product or shipping barcode?).",
                          "Scan the RMA label on the box (it starts with R).")
    parsed = parse_rma_number(raw)
    if parsed.outcome != "ok" or parsed.number is None:
        return ScanResult("bad_check_character", "error",
                          "The RMA number does not check out: misread or mistyped.",
                          "Scan again, or type the number carefully.")
    number = parsed.number
    # One query, without the joined eager loads (claim, RMA) the station does not need.
    found = db.session.execute(
        select(Unit, Rma).join(Rma, Rma.id == Unit.rma_id).where(Rma.rma_number == number)
        .options(lazyload("*"))
    ).first()
    unit, rma = found if found else (None, None)
    if rma is None or unit is None:
        return ScanResult("unknown", "error", f"RMA {number} does not exist.",
                          "Put the box aside for investigation.", number)
    if rma.status in ("closed", "cancelled"):
        return ScanResult("not_expected", "error", f"RMA {number} is {rma.status}.",
                          "Put the box aside and tell support.", number, unit)
    if unit.status == "awaiting_return" and _claim_receipt(unit, serial, grade, station, notes,
                                                           actor):
        return _received(unit, rma, serial, actor)
    return _already_received(unit, number, serial, grade, actor)


def _claim_receipt(unit: Unit, serial: str | None, grade: str | None, station: str | None,
                   notes: str | None, actor: Actor) -> bool:
    now = utcnow()
    won = db.session.execute(
        update(Unit)
        .where(Unit.id == unit.id, Unit.status == "awaiting_return")
        .values(status="received", location=RECEIVING_BIN, received_at=now,
                received_by=str(actor), received_station=(station or "")[:40] or None,
                received_serial=serial, serial_mismatch=bool(serial and serial !=
                                                             unit.expected_serial),
                grade=grade, notes=notes, status_changed_at=now, version=Unit.version + 1)
        # The winner's in-memory unit gets the written values, with no re-select.
        .execution_options(synchronize_session="evaluate")
    ).rowcount
    return won == 1


def _received(unit: Unit, rma: Rma, serial: str | None, actor: Actor) -> ScanResult:
    from claims.service import record_customer_step

    rma.status = "received"
    db.session.add(StockMovement(item_type="unit", unit_id=unit.id, quantity=1,
                                 from_location="customer", to_location=RECEIVING_BIN,
                                 reason="received", reference=rma.rma_number, actor=str(actor)))
    record_event(entity_type="unit", entity_id=rma.rma_number, action="unit.received",
                 actor=actor, data={"serial": serial, "expected_serial": unit.expected_serial,
                                    "grade": unit.grade, "station": unit.received_station,
                                    "serial_mismatch": unit.serial_mismatch})
    record_customer_step(claim_id=rma.claim_id, kind="received", actor=actor)
    if unit.serial_mismatch:
        return ScanResult("serial_mismatch", "warning",
                          f"Received, but the serial {serial} is not the expected "
                          f"{unit.expected_serial}.", "Set the unit aside for inspection.",
                          rma.rma_number, unit)
    if serial is None:
        return ScanResult("received", "success", f"RMA {rma.rma_number} received.",
                          "Scan the serial number on the unit.", rma.rma_number, unit)
    return ScanResult("received", "success", f"RMA {rma.rma_number} received, serial checked.",
                      "Grade the unit and put it on the receiving shelf.", rma.rma_number, unit)


def _already_received(unit: Unit, number: str, serial: str | None, grade: str | None,
                      actor: Actor) -> ScanResult:
    db.session.refresh(unit)
    if serial and unit.received_serial is None:
        mismatch = serial != unit.expected_serial
        recorded = db.session.execute(
            update(Unit).where(Unit.id == unit.id, Unit.received_serial.is_(None))
            .values(received_serial=serial, serial_mismatch=mismatch,
                    grade=grade or Unit.grade, version=Unit.version + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if recorded == 1:
            record_event(entity_type="unit", entity_id=number, action="unit.serial_recorded",
                         actor=actor, data={"serial": serial, "expected_serial":
                                            unit.expected_serial, "serial_mismatch": mismatch})
            if mismatch:
                return ScanResult("serial_mismatch", "warning",
                                  f"Serial {serial} is not the expected {unit.expected_serial}.",
                                  "Set the unit aside for inspection.", number, unit)
            return ScanResult("serial_recorded", "success", f"Serial {serial} matches.",
                              "Grade the unit and put it on the receiving shelf.", number, unit)
    if grade and unit.grade != grade:
        db.session.execute(update(Unit).where(Unit.id == unit.id)
                           .values(grade=grade, version=Unit.version + 1))
        record_event(entity_type="unit", entity_id=number, action="unit.graded", actor=actor,
                     data={"before": unit.grade, "after": grade})
        return ScanResult("graded", "success", f"RMA {number} graded {grade}.",
                          "Put the unit on the receiving shelf.", number, unit)
    when = unit.received_at.strftime("%Y-%m-%d %H:%M") if unit.received_at else "earlier"
    return ScanResult("already_received", "warning",
                      f"RMA {number} was already received ({when}, {unit.received_by}).",
                      "No action needed: this is a repeat scan.", number, unit)


# --- units -------------------------------------------------------------------------------------


def get_unit(rma_number: str) -> Unit:
    parsed = parse_rma_number(rma_number)
    unit = None
    if parsed.outcome == "ok":
        unit = db.session.scalar(select(Unit).join(Rma).where(Rma.rma_number == parsed.number))
    if unit is None:
        raise UnitNotFound(f"no unit for RMA {rma_number}")
    return unit


def move_unit(*, rma_number: str, to_location: str, reason: str, actor: Actor,
              note: str | None = None) -> Unit:
    """Move a unit (e.g. to another bin); recorded in the ledger and the audit trail."""
    unit = get_unit(rma_number)
    _check_location(to_location)
    if unit.status == "awaiting_return":
        raise ValidationFailed("the unit has not been received yet",
                               errors={"rma_number": ["not received yet"]})
    before = unit.location
    db.session.add(StockMovement(item_type="unit", unit_id=unit.id, quantity=1,
                                 from_location=before, to_location=to_location, reason=reason,
                                 reference=unit.rma.rma_number, note=note, actor=str(actor)))
    unit.location = to_location
    unit.version += 1
    record_event(entity_type="unit", entity_id=unit.rma.rma_number, action="unit.moved",
                 actor=actor, reason=note,
                 data={"before": before, "after": to_location, "reason": reason})
    db.session.commit()
    return unit


def units_query(*, status: str | None = None, location: str | None = None) -> Select:
    query = select(Unit).order_by(Unit.status_changed_at, Unit.id)
    if status:
        query = query.where(Unit.status == status)
    if location:
        query = query.where(Unit.location == location)
    return query


def aging_query(*, older_than: timedelta, now: datetime | None = None) -> Select:
    """Units that have sat in their current status longer than ``older_than``."""
    cutoff = (now or utcnow()) - older_than
    return (select(Unit).where(Unit.status_changed_at < cutoff, Unit.status != "closed")
            .order_by(Unit.status_changed_at))


# --- parts -------------------------------------------------------------------------------------


def tracked(location: str | None) -> bool:
    return bool(location) and location.startswith(TRACKED_PREFIXES)


EXTERNAL_LOCATIONS = ("supplier", "scrap", "vendor", "customer", "adjustment")


def _check_location(location: str | None) -> None:
    if location is None:
        return
    known_prefix = location.startswith(TRACKED_PREFIXES + ("consumed:", "transit:"))
    if len(location) > 80 or not (known_prefix or location in EXTERNAL_LOCATIONS) or \
            location.endswith(":"):
        raise ValidationFailed("unknown location", errors={
            "location": ["use warehouse:<bin>, partner:<code>, supplier, scrap or vendor"]})


def move_parts(*, part_number: str, quantity: int, from_location: str | None,
               to_location: str | None, reason: str, actor: Actor,
               reference: str | None = None, note: str | None = None) -> StockMovement:
    """Move parts between locations; refused (409) when the source has too few on hand."""
    movement = record_part_movement(part_number=part_number, quantity=quantity,
                                    from_location=from_location, to_location=to_location,
                                    reason=reason, actor=actor, reference=reference, note=note)
    db.session.commit()
    return movement


def record_part_movement(*, part_number: str, quantity: int, from_location: str | None,
                         to_location: str | None, reason: str, actor: Actor,
                         reference: str | None = None,
                         note: str | None = None) -> StockMovement:
    """``move_parts`` inside the caller's transaction (it commits or rolls back)."""
    part_number = part_number.strip().upper()
    if db.session.scalar(select(Part.id).where(Part.part_number == part_number)) is None:
        raise ValidationFailed("unknown part", errors={"part_number": ["not in the catalog"]})
    if quantity <= 0:
        raise ValidationFailed("bad quantity", errors={"quantity": ["must be positive"]})
    _check_location(from_location)
    _check_location(to_location)
    if from_location == to_location:
        raise ValidationFailed("nothing moves", errors={"to_location": ["same as from"]})
    if tracked(from_location):
        taken = db.session.execute(
            update(StockLevel)
            .where(StockLevel.location == from_location, StockLevel.part_number == part_number,
                   StockLevel.quantity >= quantity)
            .values(quantity=StockLevel.quantity - quantity)
        ).rowcount
        if taken != 1:
            on_hand = level(from_location, part_number)
            db.session.rollback()
            raise InsufficientStock(
                f"{from_location} has {on_hand} of {part_number}, {quantity} requested",
                errors={"quantity": [f"only {on_hand} on hand at {from_location}"]},
                extra={"on_hand": on_hand},
            )
    if tracked(to_location):
        _add_to_level(to_location, part_number, quantity)
    movement = StockMovement(item_type="part", part_number=part_number, quantity=quantity,
                             from_location=from_location, to_location=to_location,
                             reason=reason, reference=reference, note=note, actor=str(actor))
    db.session.add(movement)
    record_event(entity_type="part", entity_id=part_number, action=f"part.{reason}",
                 actor=actor, reason=note,
                 data={"quantity": quantity, "from": from_location, "to": to_location,
                       "reference": reference})
    return movement


def _add_to_level(location: str, part_number: str, quantity: int) -> None:
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(StockLevel).values(location=location, part_number=part_number,
                                     quantity=quantity)
    db.session.execute(stmt.on_conflict_do_update(
        index_elements=[StockLevel.location, StockLevel.part_number],
        set_={"quantity": StockLevel.quantity + quantity},
    ))


def adjust_stock(*, part_number: str, location: str, counted: int, reason: str,
                 actor: Actor) -> StockMovement | None:
    """Set a location's count after a stock take; the difference is an audited movement."""
    if not reason.strip():
        raise ValidationFailed("a reason is required", errors={"reason": ["explain the count"]})
    if counted < 0:
        raise ValidationFailed("bad count", errors={"counted": ["cannot be negative"]})
    if not tracked(location):
        raise ValidationFailed("not a stock location", errors={"location": ["not tracked"]})
    difference = counted - level(location, part_number.strip().upper())
    if difference == 0:
        return None
    return move_parts(
        part_number=part_number, quantity=abs(difference),
        from_location="adjustment" if difference > 0 else location,
        to_location=location if difference > 0 else "adjustment",
        reason="adjusted", actor=actor, note=reason,
    )


def level(location: str, part_number: str) -> int:
    return db.session.scalar(select(StockLevel.quantity).where(
        StockLevel.location == location, StockLevel.part_number == part_number)) or 0


def stock_query(*, location: str | None = None, part_number: str | None = None) -> Select:
    query = select(StockLevel).where(StockLevel.quantity > 0).order_by(
        StockLevel.location, StockLevel.part_number)
    if location:
        query = query.where(StockLevel.location == location)
    if part_number:
        query = query.where(StockLevel.part_number == part_number.upper())
    return query


def ledger_levels() -> dict[tuple[str, str], int]:
    """On hand per (location, part) computed from the ledger alone."""
    totals: dict[tuple[str, str], int] = {}
    inbound = db.session.execute(
        select(StockMovement.to_location, StockMovement.part_number,
               func.sum(StockMovement.quantity))
        .where(StockMovement.item_type == "part").group_by(StockMovement.to_location,
                                                           StockMovement.part_number))
    outbound = db.session.execute(
        select(StockMovement.from_location, StockMovement.part_number,
               func.sum(StockMovement.quantity))
        .where(StockMovement.item_type == "part").group_by(StockMovement.from_location,
                                                           StockMovement.part_number))
    for rows, sign in ((inbound, 1), (outbound, -1)):
        for location, part_number, quantity in rows:
            if tracked(location):
                key = (location, part_number)
                totals[key] = totals.get(key, 0) + sign * int(quantity)
    return {key: value for key, value in totals.items() if value}


def verify_levels() -> list[str]:
    """Where the kept levels and the ledger disagree (empty when all is well)."""
    kept = {(row.location, row.part_number): row.quantity
            for row in db.session.scalars(select(StockLevel)) if row.quantity}
    derived = ledger_levels()
    return [f"{key[0]} {key[1]}: kept {kept.get(key, 0)}, ledger {derived.get(key, 0)}"
            for key in sorted(set(kept) | set(derived)) if kept.get(key, 0) != derived.get(key, 0)]


def recent_scans(*, station: str | None, limit: int = 15) -> Iterable[Scan]:
    query = select(Scan).order_by(Scan.id.desc()).limit(limit)
    if station:
        query = query.where(Scan.station == station)
    return db.session.scalars(query).all()


def partner_parts_account(partner_code: str) -> list[dict[str, int | str]]:
    """Per part: issued to the partner, consumed in repairs, returned, and still on hand."""
    location = f"partner:{partner_code.strip().upper()}"
    rows: dict[str, dict[str, int | str]] = {}

    def bucket(part_number: str) -> dict[str, int | str]:
        return rows.setdefault(part_number, {"part_number": part_number, "issued": 0,
                                             "consumed": 0, "returned": 0, "other_out": 0,
                                             "on_hand": 0})

    for movement in db.session.scalars(select(StockMovement).where(
            StockMovement.item_type == "part",
            (StockMovement.to_location == location) | (StockMovement.from_location == location))):
        entry = bucket(movement.part_number)
        if movement.to_location == location:
            entry["issued"] = int(entry["issued"]) + movement.quantity
        elif (movement.to_location or "").startswith("consumed:"):
            entry["consumed"] = int(entry["consumed"]) + movement.quantity
        elif tracked(movement.to_location):
            entry["returned"] = int(entry["returned"]) + movement.quantity
        else:
            entry["other_out"] = int(entry["other_out"]) + movement.quantity
    for entry in rows.values():
        entry["on_hand"] = level(location, str(entry["part_number"]))
    return sorted(rows.values(), key=lambda e: str(e["part_number"]))
