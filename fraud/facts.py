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
from sqlalchemy import Float, Integer, and_, case, cast, func, select

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
_PURCHASES = Purchase.__tablename__
_LOOKUP_BATCH = 10_000  # serials per purchase query: within SQLite's 32,766 parameters


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
    parts_facts: dict[tuple[str, int], tuple[int, Decimal, int, int]] = {}
    for row in rows:
        received: date = row["received_date"]
        product = catalog.products.get(row["sku"])
        bought = purchases.get((row["sku"], row["serial_number"]))
        age = (received - bought).days if bought else None
        row["received_month"] = received.isoformat()[:7]
        row["serial_registered"] = bought is not None
        row["unit_age_days"] = age
        row["late_doa"] = bool(row["doa"] and product and age is not None
                               and age > product.doa_days)
        row["outside_warranty"] = bool(product and age is not None
                                       and age > product.warranty_days)
        parts = row.get("parts") or ()
        # Imported rows with the same parts text share one list (see partners.importing):
        # price each product's list once per batch. The rows keep the lists alive meanwhile,
        # so their ids stay unique.
        priced = parts_facts.get((row["sku"], id(parts)))
        if priced is None:
            priced = parts_facts[row["sku"], id(parts)] = _price_parts(parts, product, catalog)
        (row["parts_quantity"], row["parts_cost"], row["premium_parts"],
         row["outside_bom_parts"]) = priced


def _price_parts(parts, product: ProductFacts | None,
                 catalog: CatalogFacts) -> tuple[int, Decimal, int, int]:
    """Quantity, catalog cost, high-cost modules and parts outside the BOM of a parts list."""
    quantity, cost, premium, outside = 0, Decimal(0), 0, 0
    for item in parts:
        number, qty = item["part_number"], int(item["quantity"])
        quantity += qty
        cost += catalog.part_costs.get(number, Decimal(0)) * qty
        if product is not None:
            if number in product.premium:
                premium += qty
            allowed = product.bom.get(number, 0)
            outside += max(0, qty - allowed)
    return quantity, cost.quantize(_CENT), premium, outside


def _purchase_dates(keys: set[tuple[str, str]]) -> dict[tuple[str, str], date]:
    # One query per batch of claims, by serial number (indexed; a serial is rarely registered
    # for two SKUs): SQLite cannot use an index for ``(sku, serial) IN ((...), ...)``. Plain
    # SQL: building a statement with thousands of parameters costs more than running it.
    connection = db.session.connection()
    serials = sorted({serial for _, serial in keys})
    found: dict[tuple[str, str], date] = {}
    if connection.dialect.name == "postgresql":
        batches = [(f"SELECT sku, serial_number, purchase_date FROM {_PURCHASES} "
                    "WHERE serial_number = ANY(%s)", (serials,))]
    else:
        batches = [(f"SELECT sku, serial_number, purchase_date FROM {_PURCHASES} WHERE "
                    f"serial_number IN ({', '.join('?' * len(batch))})", tuple(batch))
                   for batch in (serials[start:start + _LOOKUP_BATCH]
                                 for start in range(0, len(serials), _LOOKUP_BATCH))]
    for sql, params in batches:
        for sku, serial, bought in connection.exec_driver_sql(sql, params).fetchall():
            if (sku, serial) in keys:
                found[sku, serial] = bought if isinstance(bought, date) else date.fromisoformat(
                    bought)
    return found


def _count(condition) -> object:
    return func.sum(case((condition, 1), else_=0))


_MEASURES = ("claims", "doa", "late_doa", "parts", "parts_cost", "parts_cost_sq", "premium",
             "labor", "labor_sq", "unreturned", "claimed")


def load_cube(*, until: str | None = None, partners: Iterable[str] | None = None) -> Cube:
    """Every measure per partner, product and month, from the first claim to ``until``."""
    # Core execution: a million claims make a few hundred thousand groups, and the ORM's
    # per-row work would cost more than the aggregate itself.
    connection = db.session.connection()
    rows = connection.execute(_cube_query(until)).all()
    repeats = connection.execute(_repeats_query(until)).all()
    partner_codes = sorted(set(partners or ()) | {row[0] for row in rows})
    skus = sorted({row[1] for row in rows})
    if not rows:
        return Cube.empty(partner_codes, skus, [])
    months = month_range(min(row[2] for row in rows), until or max(row[2] for row in rows))
    cube = Cube.empty(partner_codes, skus, months)
    at = _cells(rows, partner_codes, skus, months)
    columns = list(zip(*rows, strict=True))[3:]
    for name, values in zip(_MEASURES, columns, strict=True):
        cube.data[name][at] = np.fromiter((value or 0 for value in values), dtype=float,
                                          count=len(rows))
    if repeats:
        at = _cells(repeats, partner_codes, skus, months)
        cube.data["repeats"][at] = np.fromiter((row[3] for row in repeats), dtype=float,
                                               count=len(repeats))
    return cube


def _cells(rows, partners: list[str], skus: list[str], months: list[str]):
    """Cube indices (partner, sku, month arrays) of rows starting with those three values."""
    p_index = {code: i for i, code in enumerate(partners)}
    s_index = {sku: i for i, sku in enumerate(skus)}
    m_index = {month: i for i, month in enumerate(months)}
    count = len(rows)
    return (np.fromiter((p_index[row[0]] for row in rows), dtype=np.intp, count=count),
            np.fromiter((s_index[row[1]] for row in rows), dtype=np.intp, count=count),
            np.fromiter((m_index[row[2]] for row in rows), dtype=np.intp, count=count))


def _cube_query(until: str | None):
    """Every measure but repeats per partner, product and month: one aggregate.

    ``ix_historic_repairs_cube`` holds every column it reads, in its grouping order, so the
    database reads the index alone and needs no sort. Money is summed as floats (the cube's
    type): PostgreSQL adds float8 several times faster than numeric, and no Decimal has to
    be made of a few hundred thousand sums.
    """
    h = HistoricRepair
    base = [h.received_month <= until] if until else []
    parts_cost, claimed = cast(h.parts_cost, Float), cast(h.claimed_amount, Float)
    return select(
        h.partner_code, h.sku, h.received_month,
        func.count(),
        func.sum(cast(h.doa, Integer)),
        func.sum(cast(h.late_doa, Integer)),
        func.sum(h.parts_quantity),
        func.sum(parts_cost),
        func.sum(parts_cost * parts_cost),
        _count(h.premium_parts > 0),
        func.sum(h.labor_minutes),
        func.sum(cast(h.labor_minutes, Integer) * h.labor_minutes),
        func.sum(h.parts_not_returned),
        func.sum(claimed),
    ).where(*base).group_by(h.partner_code, h.sku, h.received_month)


def _repeats_query(until: str | None):
    """Claims followed by another claim on the same serial within the repeat window.

    The repeat counts against the partner of the *earlier* repair: its fix did not hold.
    Only serials claimed more than once can repeat, and they are a few percent of the claims:
    finding them is one pass over the serial index, and the window function (a sort of its
    input) then runs over those claims alone instead of the whole history.
    """
    h = HistoricRepair
    period = [h.received_month <= until] if until else []
    repeated = (select(h.serial_number).where(*period).group_by(h.serial_number)
                .having(func.count() > 1))
    following = func.lead(h.received_date).over(
        partition_by=h.serial_number, order_by=(h.received_date, h.id)).label("next_received")
    claims = (select(h.partner_code, h.sku, h.received_month, h.received_date, following)
              .where(h.serial_number.in_(repeated), *period).subquery())
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
