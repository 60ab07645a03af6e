"""Hard evidence per claim: facts that need no statistics to be wrong.

Each rule is one SQL query over the claim history (and the warehouse's own records), so it
runs over a million claims in the same pass budget as the aggregate scoring.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal

from sqlalchemy import Select, and_, exists, func, select

from catalog.models import Purchase
from claims.models import Claim, ClaimPhoto
from common.extensions import db
from fraud import verdicts as v
from fraud.facts import repeated_serials
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
    slips = _typing_slips({(row.sku, row.serial_number) for row in rows})
    for row in rows:
        if (row.sku, row.serial_number) in slips:
            continue
        yield v.RuleHit(rule=v.UNREGISTERED_SERIAL, partner=row.partner_code,
                        claim_ref=_claim_ref(row.id, row.report_id),
                        reason=f"serial {row.serial_number} ({row.sku}) is not a registered "
                               "purchase, nor one keystroke away from one",
                        amount=Decimal(row.claimed_amount))


# Above this many unregistered serials of one SKU, reading the SKU's registered serials once
# costs less than looking up every serial one keystroke away from each of them.
_SLIPS_LOOKED_UP_PER_SKU = 500
_VARIANTS_PER_QUERY = 20_000  # within SQLite's 32,766 parameters


def _typing_slips(claimed: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (sku, serial) pairs one keystroke away from a registered serial of the SKU.

    The few unregistered serials are the ones to work on: every serial one edit away from
    each is looked up in the purchases' serial index, instead of reading the registry.
    """
    by_sku: dict[str, list[str]] = defaultdict(list)
    for sku, serial in claimed:
        by_sku[sku].append(serial)
    slips: set[tuple[str, str]] = set()
    lookups: dict[tuple[str, str], set[str]] = {}
    for sku, serials in by_sku.items():
        if len(serials) > _SLIPS_LOOKED_UP_PER_SKU:
            registered = set(db.session.scalars(
                select(Purchase.serial_number).where(Purchase.sku == sku)))
            slips.update((sku, serial) for serial in serials
                         if not registered.isdisjoint(_one_keystroke_variants(serial)))
        else:
            lookups.update(((sku, serial), _one_keystroke_variants(serial))
                           for serial in serials)
    found = _registered_among(set().union(*lookups.values()))
    slips.update(key for key, variants in lookups.items()
                 if any((key[0], variant) in found for variant in variants))
    return slips


def _registered_among(serials: set[str]) -> set[tuple[str, str]]:
    """(sku, serial) of the registered purchases among these serials.

    Plain SQL, as ``fraud.facts`` looks purchases up: far cheaper to build than an expanded
    ``IN`` of a few hundred thousand values. PostgreSQL gets them as one text split on the
    server (psycopg would dump a list of that size value by value in Python); a separator
    inside a serial could only add a value that is then never asked for.
    """
    if not serials:
        return set()
    connection = db.session.connection()
    table = Purchase.__tablename__
    if connection.dialect.name == "postgresql":
        batches = [(f"SELECT sku, serial_number FROM {table} "
                    "WHERE serial_number = ANY(string_to_array(%s, chr(31)))",
                    ("\x1f".join(serials),))]
    else:
        ordered = sorted(serials)  # index order: each batch reads neighbouring pages
        batches = [(f"SELECT sku, serial_number FROM {table} WHERE serial_number IN "
                    f"({', '.join('?' * len(batch))})", tuple(batch))
                   for batch in (ordered[start:start + _VARIANTS_PER_QUERY]
                                 for start in range(0, len(ordered), _VARIANTS_PER_QUERY))]
    found: set[tuple[str, str]] = set()
    for sql, params in batches:
        found.update(connection.exec_driver_sql(sql, params).fetchall())
    return found


_SERIAL_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-"


def _one_keystroke_variants(serial: str) -> set[str]:
    """Every serial one edit (Damerau 1964) away from ``serial``, over the serial alphabet."""
    variants: set[str] = set()
    for i in range(len(serial) + 1):
        head, tail = serial[:i], serial[i:]
        if tail:
            variants.add(head + tail[1:])  # deletion
            variants.update(head + c + tail[1:] for c in _SERIAL_ALPHABET)  # substitution
        if len(tail) > 1:
            variants.add(head + tail[1] + tail[0] + tail[2:])  # transposition
        variants.update(head + c + tail for c in _SERIAL_ALPHABET)  # insertion
    variants.discard(serial)
    return variants


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
    ).where(  # only serials claimed more than once can overlap
        _h.serial_number.in_(repeated_serials())
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
