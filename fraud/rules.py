"""Hard evidence per claim: facts that need no statistics to be wrong.

Each rule is one SQL query over the claim history (and the warehouse's own records), so it
runs over a million claims in the same pass budget as the aggregate scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

from sqlalchemy import Select, and_, exists, func, select

from catalog.models import Purchase
from claims.models import Claim, ClaimPhoto
from common.extensions import db
from fraud import verdicts as v
from inventory.models import Unit
from partners.models import HistoricRepair, Partner, Repair, RepairReport
from rma.models import Rma

_h = HistoricRepair


def _claim_ref(history_id: int, report_id: int | None) -> str:
    return f"report:{report_id}" if report_id else f"history:{history_id}"


def _history_hits(rule: str, query: Select, reason: Callable[..., str]) -> Iterator[v.RuleHit]:
    for row in db.session.execute(query):
        yield v.RuleHit(rule=rule, partner=row.partner_code,
                        claim_ref=_claim_ref(row.id, row.report_id), reason=reason(row),
                        amount=Decimal(row.claimed_amount))


def _columns(*extra) -> Select:
    return select(_h.id, _h.report_id, _h.partner_code, _h.serial_number, _h.sku,
                  _h.claimed_amount, *extra)


def _outside_bom() -> Iterator[v.RuleHit]:
    return _history_hits(
        v.PART_OUTSIDE_BOM,
        _columns(_h.outside_bom_parts).where(_h.outside_bom_parts > 0),
        lambda r: (f"{r.outside_bom_parts} part(s) claimed outside the bill of materials of "
                   f"{r.sku} or above its maximum quantity (serial {r.serial_number})"))


def _unregistered() -> Iterator[v.RuleHit]:
    """Serials that are not registered purchases, unless one keystroke away from one.

    A serial one substitution, transposition, insertion or deletion away from a registered
    serial of the same SKU is far more often a typing slip than a phantom unit: it is left
    out of the hard evidence (the statistical signals still count the claim).
    """
    rows = db.session.execute(_columns().where(_h.serial_registered.is_(False))).all()
    registered = _registered_serials({row.sku for row in rows})
    for row in rows:
        if _one_keystroke_from(row.serial_number, registered.get(row.sku, frozenset())):
            continue
        yield v.RuleHit(rule=v.UNREGISTERED_SERIAL, partner=row.partner_code,
                        claim_ref=_claim_ref(row.id, row.report_id),
                        reason=f"serial {row.serial_number} ({row.sku}) is not a registered "
                               "purchase, nor one keystroke away from one",
                        amount=Decimal(row.claimed_amount))


def _registered_serials(skus: set[str]) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {sku: set() for sku in skus}
    for sku in skus:
        found[sku].update(db.session.scalars(
            select(Purchase.serial_number).where(Purchase.sku == sku)))
    return {sku: frozenset(serials) for sku, serials in found.items()}


_SERIAL_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-"


def _one_keystroke_from(serial: str, registered: frozenset[str]) -> bool:
    """Whether a registered serial is one edit (Damerau 1964) away from ``serial``."""
    if not registered:
        return False
    candidates: set[str] = set()
    for i in range(len(serial) + 1):
        head, tail = serial[:i], serial[i:]
        if tail:
            candidates.add(head + tail[1:])  # deletion
            candidates.update(head + c + tail[1:] for c in _SERIAL_ALPHABET)  # substitution
        if len(tail) > 1:
            candidates.add(head + tail[1] + tail[0] + tail[2:])  # transposition
        candidates.update(head + c + tail for c in _SERIAL_ALPHABET)  # insertion
    candidates.discard(serial)
    return not candidates.isdisjoint(registered)


def _outside_warranty() -> Iterator[v.RuleHit]:
    return _history_hits(
        v.OUTSIDE_WARRANTY,
        _columns(_h.unit_age_days).where(_h.outside_warranty.is_(True)),
        lambda r: (f"serial {r.serial_number} was {r.unit_age_days} days old when received, "
                   f"past the warranty of {r.sku}"))


def _serial_at_other_partner() -> Iterator[v.RuleHit]:
    """A claim received while another partner still had the same serial in repair.

    The earlier claim is presumed genuine (the unit went there first); the one that overlaps
    it is the impossible one.
    """
    order = (_h.received_date, _h.id)
    ordered = select(
        _h.id, _h.report_id, _h.partner_code, _h.serial_number, _h.sku, _h.claimed_amount,
        _h.received_date,
        func.lag(_h.partner_code).over(partition_by=_h.serial_number, order_by=order)
        .label("previous_partner"),
        func.lag(_h.completed_date).over(partition_by=_h.serial_number, order_by=order)
        .label("previous_completed"),
    ).where(_h.serial_number.in_(  # only serials claimed more than once can overlap
        select(_h.serial_number).group_by(_h.serial_number).having(func.count() > 1))
    ).subquery()
    query = select(ordered).where(and_(
        ordered.c.previous_partner.is_not(None),
        ordered.c.previous_partner != ordered.c.partner_code,
        ordered.c.previous_completed >= ordered.c.received_date,
    ))
    return _history_hits(
        v.SERIAL_AT_OTHER_PARTNER, query,
        lambda r: (f"serial {r.serial_number} was still in repair at partner "
                   f"{r.previous_partner} (until {r.previous_completed}) when this claim says "
                   f"it was received on {r.received_date}"))


def _not_shipped() -> Iterator[v.RuleHit]:
    """A claim naming an RMA whose unit the warehouse never sent to that partner."""
    shipped = exists().where(and_(Repair.unit_id == Unit.id, Repair.partner_id == Partner.id))
    query = (
        _columns(_h.rma_number)
        .join(Partner, Partner.code == _h.partner_code)
        .join(Rma, Rma.rma_number == _h.rma_number)
        .join(Unit, Unit.rma_id == Rma.id)
        .where(~shipped)
    )
    return _history_hits(
        v.NOT_SHIPPED_TO_PARTNER, query,
        lambda r: (f"the unit of {r.rma_number} (serial {r.serial_number}) was never shipped "
                   f"to {r.partner_code}"))


def _reused_photos() -> Iterator[v.RuleHit]:
    """The same defect photo (by content digest) on claims for different serials."""
    shared = (select(ClaimPhoto.sha256).join(Claim, Claim.id == ClaimPhoto.claim_id)
              .group_by(ClaimPhoto.sha256)
              .having(func.count(func.distinct(Claim.serial_number)) > 1)).subquery()
    query = (
        select(Claim.id, Claim.serial_number, Rma.rma_number, Partner.code,
               RepairReport.id.label("report_id"), RepairReport.claimed_amount)
        .join(ClaimPhoto, ClaimPhoto.claim_id == Claim.id)
        .join(shared, shared.c.sha256 == ClaimPhoto.sha256)
        .join(Rma, Rma.claim_id == Claim.id)
        .join(Unit, Unit.rma_id == Rma.id)
        .join(Repair, Repair.unit_id == Unit.id)
        .join(Partner, Partner.id == Repair.partner_id)
        .outerjoin(RepairReport, RepairReport.repair_id == Repair.id)
        .distinct()
    )
    for row in db.session.execute(query):
        yield v.RuleHit(
            rule=v.REUSED_PHOTO, partner=row.code,
            claim_ref=f"report:{row.report_id}" if row.report_id else f"claim:{row.id}",
            reason=(f"the defect photo of {row.rma_number} (serial {row.serial_number}) also "
                    f"appears on a claim for another serial"),
            amount=Decimal(row.claimed_amount or 0))


RULES: dict[str, Callable[[], Iterator[v.RuleHit]]] = {
    v.PART_OUTSIDE_BOM: _outside_bom,
    v.UNREGISTERED_SERIAL: _unregistered,
    v.OUTSIDE_WARRANTY: _outside_warranty,
    v.SERIAL_AT_OTHER_PARTNER: _serial_at_other_partner,
    v.NOT_SHIPPED_TO_PARTNER: _not_shipped,
    v.REUSED_PHOTO: _reused_photos,
}


def find_rule_hits() -> list[v.RuleHit]:
    """Every claim that breaks a hard rule, by rule."""
    return [hit for rule in RULES.values() for hit in rule()]
