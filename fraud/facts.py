"""Repair-claim facts: derived once when a claim is written, counted in SQL when scoring.

``derive`` completes claim rows (imported or mirrored from live reports) with what scoring
needs and the row alone cannot tell: the unit's age from the registered purchase, whether the
DOA window or the warranty had passed, the parts' catalog cost, how many of them are
high-cost modules and how many lie outside the product's bill of materials. ``load_cube``
then counts every measure per partner, product and month in two aggregate queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
from sqlalchemy import Integer, and_, case, cast, func, select, tuple_

from catalog.models import BomLine, Part, Product, Purchase
from common.extensions import db
from fraud.cube import Cube, month_range
from partners.models import HistoricRepair

# A part is a high-cost module for a product when it costs at least this share of the
# product's most expensive BOM part (main boards, displays); cheaper parts usually fix the
# same faults, so a partner that reaches for modules more than its peers costs real money.
PREMIUM_SHARE_OF_TOP_PART = Decimal("0.5")
REPEAT_WINDOW_DAYS = 90
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class ProductFacts:
    warranty_days: int
    doa_days: int
    bom: dict[str, int]  # part number -> max quantity per repair
    premium: frozenset[str]


class CatalogFacts:
    """What ``derive`` needs from the catalog, read once per batch of rows."""

    def __init__(self, default_doa_days: int) -> None:
        self.part_costs: dict[str, Decimal] = dict(
            db.session.execute(select(Part.part_number, Part.unit_cost)).all())
        boms: dict[str, dict[str, int]] = defaultdict(dict)
        for sku, number, max_qty in db.session.execute(
                select(BomLine.sku, BomLine.part_number, BomLine.max_qty)):
            boms[sku][number] = max_qty
        self.products: dict[str, ProductFacts] = {}
        for product in db.session.scalars(select(Product)):
            bom = boms.get(product.sku, {})
            costs = [self.part_costs.get(number, Decimal(0)) for number in bom]
            floor = max(costs, default=Decimal(0)) * PREMIUM_SHARE_OF_TOP_PART
            self.products[product.sku] = ProductFacts(
                warranty_days=round(
                    (product.warranty_months + product.extended_warranty_months) * 30.4375),
                doa_days=product.doa_days if product.doa_days is not None else default_doa_days,
                bom=bom,
                premium=frozenset(n for n, c in zip(bom, costs, strict=True) if c and c >= floor),
            )


def derive(rows: list[dict], catalog: CatalogFacts) -> None:
    """Add the derived fact columns to claim rows (dicts with the historic repair columns)."""
    purchases = _purchase_dates({(row["sku"], row["serial_number"]) for row in rows})
    for row in rows:
        received: date = row["received_date"]
        product = catalog.products.get(row["sku"])
        bought = purchases.get((row["sku"], row["serial_number"]))
        age = (received - bought).days if bought else None
        row["received_month"] = received.strftime("%Y-%m")
        row["serial_registered"] = bought is not None
        row["unit_age_days"] = age
        row["late_doa"] = bool(row["doa"] and product and age is not None
                               and age > product.doa_days)
        row["outside_warranty"] = bool(product and age is not None
                                       and age > product.warranty_days)
        quantity, cost, premium, outside = 0, Decimal(0), 0, 0
        for item in row.get("parts") or ():
            number, qty = item["part_number"], int(item["quantity"])
            quantity += qty
            cost += catalog.part_costs.get(number, Decimal(0)) * qty
            if product is not None:
                if number in product.premium:
                    premium += qty
                allowed = product.bom.get(number, 0)
                outside += max(0, qty - allowed)
        row["parts_quantity"] = quantity
        row["parts_cost"] = cost.quantize(_CENT)
        row["premium_parts"] = premium
        row["outside_bom_parts"] = outside


def _purchase_dates(keys: set[tuple[str, str]]) -> dict[tuple[str, str], date]:
    found: dict[tuple[str, str], date] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start:start + 500]
        found.update(((sku, serial), bought) for sku, serial, bought in db.session.execute(
            select(Purchase.sku, Purchase.serial_number, Purchase.purchase_date)
            .where(tuple_(Purchase.sku, Purchase.serial_number).in_(chunk))))
    return found


def _count(condition) -> object:
    return func.sum(case((condition, 1), else_=0))


def load_cube(*, until: str | None = None, partners: Iterable[str] | None = None) -> Cube:
    """Every measure per partner, product and month, from the first claim to ``until``."""
    h = HistoricRepair
    base = [h.received_month <= until] if until else []
    rows = db.session.execute(
        select(
            h.partner_code, h.sku, h.received_month,
            func.count(),
            func.sum(cast(h.doa, Integer)),
            func.sum(cast(h.late_doa, Integer)),
            func.sum(h.parts_quantity),
            func.sum(h.parts_cost),
            func.sum(h.parts_cost * h.parts_cost),
            _count(h.premium_parts > 0),
            func.sum(h.labor_minutes),
            func.sum(cast(h.labor_minutes, Integer) * h.labor_minutes),
            func.sum(h.parts_not_returned),
            func.sum(h.claimed_amount),
        ).where(*base).group_by(h.partner_code, h.sku, h.received_month)
    ).all()
    repeats = db.session.execute(_repeats_query(until)).all()
    partner_codes = sorted(set(partners or ()) | {row[0] for row in rows})
    skus = sorted({row[1] for row in rows})
    if not rows:
        return Cube.empty(partner_codes, skus, [])
    months = month_range(min(row[2] for row in rows), until or max(row[2] for row in rows))
    cube = Cube.empty(partner_codes, skus, months)
    p_index = {code: i for i, code in enumerate(partner_codes)}
    s_index = {sku: i for i, sku in enumerate(skus)}
    m_index = {month: i for i, month in enumerate(months)}
    measures = ("claims", "doa", "late_doa", "parts", "parts_cost", "parts_cost_sq", "premium",
                "labor", "labor_sq", "unreturned", "claimed")
    for partner, sku, month, *values in rows:
        at = (p_index[partner], s_index[sku], m_index[month])
        for name, value in zip(measures, values, strict=True):
            cube.data[name][at] = float(value or 0)
    for partner, sku, month, count in repeats:
        if month in m_index:
            cube.data["repeats"][p_index[partner], s_index[sku], m_index[month]] = count
    return cube


def _repeats_query(until: str | None):
    """Claims followed by another claim on the same serial within the repeat window.

    The repeat counts against the partner of the *earlier* repair: its fix did not hold.
    """
    h = HistoricRepair
    following = func.lead(h.received_date).over(
        partition_by=h.serial_number, order_by=(h.received_date, h.id)).label("next_received")
    inner = select(h.partner_code, h.sku, h.received_month, h.received_date, following)
    if until:
        inner = inner.where(h.received_month <= until)
    claims = inner.subquery()
    gap = _days_between(claims.c.received_date, claims.c.next_received)
    return (
        select(claims.c.partner_code, claims.c.sku, claims.c.received_month, func.count())
        .where(and_(claims.c.next_received.is_not(None), gap <= REPEAT_WINDOW_DAYS))
        .group_by(claims.c.partner_code, claims.c.sku, claims.c.received_month)
    )


def _days_between(earlier, later):
    if db.session.get_bind().dialect.name == "postgresql":
        return later - earlier  # date - date is an integer number of days
    return func.julianday(later) - func.julianday(earlier)


def as_float_array(values: Iterable[float]) -> np.ndarray:
    return np.fromiter(values, dtype=float)
