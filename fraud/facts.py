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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import numpy as np
from sqlalchemy import Float, Integer, and_, case, cast, func, select

from catalog.models import BomLine, Part, Product, Purchase
from common.extensions import db
from fraud.cube import Cube, month_range
from partners.models import HistoricRepair, Partner

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
    products = catalog.products
    months: dict[date, str] = {}
    parts_facts: dict[tuple[str, int], tuple[int, Decimal, int, int]] = {}
    for row in rows:
        sku, received = row["sku"], row["received_date"]
        product = products.get(sku)
        bought = purchases.get((sku, row["serial_number"]))
        month = months.get(received)
        if month is None:
            month = months[received] = received.isoformat()[:7]
        parts = row.get("parts") or ()
        # Imported rows with the same parts text share one list (see partners.importing):
        # price each product's list once per batch. The rows keep the lists alive meanwhile,
        # so their ids stay unique.
        priced = parts_facts.get((sku, id(parts)))
        if priced is None:
            priced = parts_facts[sku, id(parts)] = _price_parts(parts, product, catalog)
        if bought is None:
            age, late_doa, outside_warranty = None, False, False
        else:
            age = (received - bought).days
            late_doa = bool(row["doa"]) and product is not None and age > product.doa_days
            outside_warranty = product is not None and age > product.warranty_days
        row["received_month"] = month
        row["serial_registered"] = bought is not None
        row["unit_age_days"] = age
        row["late_doa"] = late_doa
        row["outside_warranty"] = outside_warranty
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
    # One query per batch of claims, by serial number (a serial is rarely registered for two
    # SKUs): SQLite cannot use an index for ``(sku, serial) IN ((...), ...)``. The index on
    # (serial_number, sku, purchase_date) answers it alone. Plain SQL on the driver's cursor:
    # building a statement with thousands of parameters costs more than running it.
    connection = db.session.connection()
    serials = sorted({serial for _, serial in keys})
    found: dict[tuple[str, str], date] = {}
    if connection.dialect.name == "postgresql":
        # One text split on the server: psycopg dumps a list parameter value by value.
        batches = [(f"SELECT sku, serial_number, purchase_date FROM {_PURCHASES} "
                    "WHERE serial_number = ANY(string_to_array(%s, chr(31)))",
                    ("\x1f".join(serials),))]
    else:
        batches = [(f"SELECT sku, serial_number, purchase_date FROM {_PURCHASES} WHERE "
                    f"serial_number IN ({', '.join('?' * len(batch))})", tuple(batch))
                   for batch in (serials[start:start + _LOOKUP_BATCH]
                                 for start in range(0, len(serials), _LOOKUP_BATCH))]
    dates: dict[str, date] = {}  # SQLite returns ISO text; a registry repeats its dates
    cursor = connection.connection.driver_connection.cursor()  # plain tuples, no Row objects
    try:
        for sql, params in batches:
            cursor.execute(sql, params)
            for sku, serial, bought in cursor.fetchall():
                if (sku, serial) in keys:
                    if not isinstance(bought, date):
                        text, bought = bought, dates.get(bought)
                        if bought is None:
                            bought = dates[text] = date.fromisoformat(text)
                    found[sku, serial] = bought
    finally:
        cursor.close()
    return found


def _count(condition) -> object:
    return func.sum(case((condition, 1), else_=0))


_MEASURES = ("claims", "doa", "late_doa", "parts", "parts_cost", "parts_cost_sq", "premium",
             "labor", "labor_sq", "unreturned", "claimed")


def load_cube(*, until: str | None = None, partners: Iterable[str] | None = None,
              concurrently: bool = False) -> Cube:
    """Every measure per partner, product and month, from the first claim to ``until``.

    ``concurrently``: the repeats query runs on a connection of its own meanwhile (only
    when that connection reads what this session reads: see
    ``fraud.service.reads_alike_elsewhere``), and the aggregate in one process: other
    queries keep the other cores busy, and a parallel plan of this aggregate costs twice the
    CPU for the same result (its few claims per group make the workers' partial groups
    nearly as many as the final ones, merged and combined again by the leader).
    """
    # A million claims make a few hundred thousand groups: they come back as numbers only
    # (partner and product ids, a month number) straight into one float array, never as
    # a few million Python objects.
    connection = db.session.connection()
    partner_codes_by_id = dict(connection.execute(select(Partner.id, Partner.code)).all())
    skus_by_id = dict(connection.execute(select(Product.id, Product.sku)).all())
    with ThreadPoolExecutor(max_workers=1) as pool:
        repeats_query = _repeats_query(until)
        pending = pool.submit(_all_rows, db.engine, repeats_query) if concurrently else None
        table = _numbers(connection, _numbered(_cube_query(until)), 3 + len(_MEASURES),
                         serial=concurrently)
        repeats = (pending.result() if pending is not None
                   else connection.execute(repeats_query).all())
    partner_at, present = _positions(table[:, 0], partner_codes_by_id)
    partner_codes = sorted(set(partners or ()) | set(present))
    sku_at, skus = _positions(table[:, 1], skus_by_id)
    if not len(table):
        return Cube.empty(partner_codes, skus, [])
    month_numbers = table[:, 2].astype(np.intp)
    first = int(month_numbers.min())
    months = month_range(_month(first), until or _month(int(month_numbers.max())))
    cube = Cube.empty(partner_codes, skus, months)
    index = {code: i for i, code in enumerate(partner_codes)}
    at = (np.array([index[code] for code in present], dtype=np.intp)[partner_at], sku_at,
          month_numbers - first)
    for column, name in enumerate(_MEASURES, start=3):
        cube.data[name][at] = table[:, column]
    if repeats:
        at = _cells(repeats, partner_codes, skus, months)
        cube.data["repeats"][at] = np.fromiter((row[3] for row in repeats), dtype=float,
                                               count=len(repeats))
    return cube


def _all_rows(engine, query) -> list:
    """The rows of ``query`` read on a connection of its own (for a thread)."""
    with engine.connect() as connection:
        return connection.execute(query).all()


def _cells(rows, partners: list[str], skus: list[str], months: list[str]):
    """Cube indices (partner, sku, month arrays) of rows starting with those three values."""
    p_index = {code: i for i, code in enumerate(partners)}
    s_index = {sku: i for i, sku in enumerate(skus)}
    m_index = {month: i for i, month in enumerate(months)}
    count = len(rows)
    return (np.fromiter((p_index[row[0]] for row in rows), dtype=np.intp, count=count),
            np.fromiter((s_index[row[1]] for row in rows), dtype=np.intp, count=count),
            np.fromiter((m_index[row[2]] for row in rows), dtype=np.intp, count=count))


def _positions(ids: np.ndarray, names_by_id: dict[int, str]) -> tuple[np.ndarray, list[str]]:
    """Each row's index into the sorted names its ids stand for, and those names."""
    unique, inverse = np.unique(ids.astype(np.int64), return_inverse=True)
    names = [names_by_id[int(i)] for i in unique]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.intp)
    rank[order] = np.arange(len(names))
    return rank[inverse], [names[i] for i in order]


def _month(number: int) -> str:
    return f"{number // 12:04d}-{number % 12 + 1:02d}"


def _numbered(groups):
    """``_cube_query``'s groups keyed by partner id, product id and month number (year * 12 +
    month - 1), every value a float: a result of numbers alone, read without a Python object
    per value."""
    cube = groups.subquery()
    year = cast(func.substr(cube.c.received_month, 1, 4), Integer)
    month = cast(func.substr(cube.c.received_month, 6, 2), Integer)
    return (select(cast(Partner.id, Float), cast(Product.id, Float),
                   cast(year * 12 + month - 1, Float),
                   *(cast(column, Float) for column in list(cube.c)[3:]))
            .join_from(cube, Partner, Partner.code == cube.c.partner_code)
            .join(Product, Product.sku == cube.c.sku))


def _numbers(connection, query, width: int, *, serial: bool = False) -> np.ndarray:
    """The rows of ``query`` (``width`` float columns, never NULL) as a (rows, width) array.

    PostgreSQL sends each column as one array (``array_agg``; the aggregates of one pass
    see the rows in one order, so the arrays line up) in a single binary COPY row, read by
    numpy in one go: a COPY of the rows themselves costs a round of the driver's Python per
    row, which for a few hundred thousand groups holds the GIL for most of a second against
    the threads running meanwhile. ``serial``: without a parallel plan (PostgreSQL).
    SQLite's rows are plain tuples from its driver.
    """
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    raw = connection.connection.driver_connection
    if connection.dialect.name != "postgresql":
        rows = raw.execute(sql).fetchall()
        return np.array(rows, dtype=float).reshape(len(rows), width)
    names = [f"c{i}" for i in range(width)]
    columns = ", ".join(f"array_agg({name})" for name in names)
    with raw.cursor() as cursor:
        if serial:  # for this statement only: the caller's transaction goes on as it was
            cursor.execute("SELECT current_setting('max_parallel_workers_per_gather')")
            before = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
        with cursor.copy(f"COPY (SELECT {columns} FROM ({sql}) AS q({', '.join(names)})) "
                         "TO STDOUT (FORMAT BINARY)") as copy:
            data = b"".join(copy)
        if serial:
            cursor.execute("SELECT set_config('max_parallel_workers_per_gather', %s, true)",
                           (before,))
    return _copied_arrays(data, width)


# Binary COPY (PGCOPY): a header of signature (11 bytes), flags (4) and header extension length
# (4) plus the extension; each row a field count (int16), then per field its length (int32,
# -1 for NULL) and value; a trailer of -1. A one-dimensional array value: dimensions, has-NULLs
# flag, element type, then length and lower bound of its dimension (int32 each), then per
# element its length (int32) and value.
_ARRAY_HEADER = np.dtype([("ndim", ">i4"), ("has_null", ">i4"), ("element_type", ">u4"),
                          ("length", ">i4"), ("lower_bound", ">i4")])
_FLOAT8 = np.dtype([("length", ">i4"), ("value", ">f8")])
_FLOAT8_OID = 701


def _copied_arrays(data: bytes, width: int) -> np.ndarray:
    """The (rows, width) array of a binary COPY of one row of ``width`` float8 arrays."""
    at = 19 + int.from_bytes(data[15:19], "big")
    if int.from_bytes(data[at:at + 2], "big", signed=True) != width:
        raise RuntimeError("unexpected COPY data: not one row of the arrays")
    at += 2
    columns = []
    for _ in range(width):
        length = int.from_bytes(data[at:at + 4], "big", signed=True)
        at += 4
        if length < 0:  # array_agg of no rows
            return np.empty((0, width))
        header = np.frombuffer(data, dtype=_ARRAY_HEADER, count=1, offset=at)[0]
        if (header["ndim"], header["has_null"], header["element_type"]) != (1, 0, _FLOAT8_OID):
            raise RuntimeError("unexpected COPY data: a NULL or a value that is not float8")
        cells = np.frombuffer(data, dtype=_FLOAT8, count=int(header["length"]),
                              offset=at + _ARRAY_HEADER.itemsize)
        if not (cells["length"] == 8).all():
            raise RuntimeError("unexpected COPY data: an element that is not float8")
        columns.append(cells["value"].astype(float))
        at += length
    return np.column_stack(columns)


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
    ).where(*base).group_by(h.received_month, h.partner_code, h.sku)


def _repeats_query(until: str | None):
    """Claims followed by another claim on the same serial within the repeat window.

    The repeat counts against the partner of the *earlier* repair: its fix did not hold.
    Only serials claimed more than once can repeat, and they are a few percent of the claims:
    finding them is one pass over the serial index, and the window function (a sort of its
    input) then runs over those claims alone instead of the whole history.
    """
    h = HistoricRepair
    period = [h.received_month <= until] if until else []
    following = func.lead(h.received_date).over(
        partition_by=h.serial_number, order_by=(h.received_date, h.id)).label("next_received")
    claims = (select(h.partner_code, h.sku, h.received_month, h.received_date, following)
              .where(h.serial_number.in_(repeated_serials(*period)), *period).subquery())
    gap = _days_between(claims.c.received_date, claims.c.next_received)
    return (
        select(claims.c.partner_code, claims.c.sku, claims.c.received_month, func.count())
        .where(and_(claims.c.next_received.is_not(None), gap <= REPEAT_WINDOW_DAYS))
        .group_by(claims.c.partner_code, claims.c.sku, claims.c.received_month)
    )


def repeated_serials(*conditions):
    """The serials of more than one claim (meeting ``conditions``), for ``serial IN (...)``.

    A materialized CTE on PostgreSQL: inlined, the planner expects a third of the serials
    (it cannot know how many pass ``count(*) > 1``) and hash-joins the whole table, in a
    parallel plan where every worker groups the million index entries again for its own
    hash table. Materialized, it groups them once and looks the few claims up by serial.
    SQLite gets the plain subquery, which it already runs that way.
    """
    h = HistoricRepair
    repeated = (select(h.serial_number).where(*conditions).group_by(h.serial_number)
                .having(func.count() > 1))
    if db.session.get_bind().dialect.name != "postgresql":
        return repeated
    materialized = repeated.cte("repeated_serials").prefix_with("MATERIALIZED")
    return select(materialized.c.serial_number)


def _days_between(earlier, later):
    if db.session.get_bind().dialect.name == "postgresql":
        return later - earlier  # date - date is an integer number of days
    return func.julianday(later) - func.julianday(earlier)


def as_float_array(values: Iterable[float]) -> np.ndarray:
    return np.fromiter(values, dtype=float)
