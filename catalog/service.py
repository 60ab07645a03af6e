"""Catalog and purchase-registry use cases."""

from __future__ import annotations

from typing import IO

from sqlalchemy import Select, select

from catalog.errors import ImportRejected, ProductNotFound
from catalog.import_rules import KINDS
from catalog.importing import ImportFileError, ImportReport, run_import
from catalog.models import BomLine, ImportRun, Part, Product, Purchase
from common.actors import Actor
from common.errors import NotFound
from common.extensions import db


def import_csv(
    kind: str, stream: IO[bytes], *, actor: Actor, filename: str | None = None
) -> ImportReport:
    """Import a CSV of products, parts, bom or purchases; file-level problems raise 422."""
    if kind not in KINDS:
        raise ImportRejected(
            f"unknown import kind {kind!r}",
            errors={"kind": ["must be one of: " + ", ".join(KINDS)]},
        )
    try:
        return run_import(kind, stream, actor=actor, filename=filename)
    except ImportFileError as exc:
        raise ImportRejected(str(exc), errors={exc.field: [str(exc)]}) from exc


def get_import_run(import_id: str) -> ImportRun:
    run = db.session.get(ImportRun, import_id)
    if run is None:
        raise NotFound(f"no import {import_id}")
    return run


def get_product(sku: str) -> Product:
    product = db.session.scalar(select(Product).where(Product.sku == sku.strip().upper()))
    if product is None:
        raise ProductNotFound(f"no product with SKU {sku}")
    return product


def bom_for(sku: str) -> list[tuple[BomLine, Part]]:
    """The product's bill of materials with each part's catalog entry."""
    return list(
        db.session.execute(
            select(BomLine, Part)
            .join(Part, Part.part_number == BomLine.part_number)
            .where(BomLine.sku == sku)
            .order_by(BomLine.part_number)
        ).all()
    )


def products_query() -> Select:
    return select(Product).order_by(Product.sku)


def parts_query() -> Select:
    return select(Part).order_by(Part.part_number)


def purchases_query(
    *, serial_number: str | None = None, email: str | None = None, sku: str | None = None
) -> Select:
    query = select(Purchase).order_by(Purchase.id)
    if serial_number:
        query = query.where(Purchase.serial_number == serial_number.strip().upper())
    if email:
        query = query.where(Purchase.customer_email == email.strip().lower())
    if sku:
        query = query.where(Purchase.sku == sku.strip().upper())
    return query


def find_purchases_by_serial(serial_number: str) -> list[Purchase]:
    """Registered purchases of a serial (normally one; serials are unique per SKU)."""
    return list(db.session.scalars(purchases_query(serial_number=serial_number)))
