"""Catalog and purchase registry models."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from common.extensions import db
from common.models import UTCDateTime, utcnow


class Product(db.Model):
    """A SKU with its warranty terms and repair standards."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    category: Mapped[str] = mapped_column(String(100), nullable=False)
    warranty_months: Mapped[int] = mapped_column(Integer, nullable=False)
    extended_warranty_months: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Fault categories this product's warranty does not cover, e.g. ["physical", "water"].
    exclusions: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    labor_minutes: Mapped[int | None] = mapped_column(Integer)
    released_on: Mapped[date | None] = mapped_column(Date)
    # Per-product claim policy; NULL means the deployment default (DOA_REPLACEMENT_DAYS,
    # REPEAT_CLAIMS_REVIEW_THRESHOLD).
    doa_days: Mapped[int | None] = mapped_column(Integer)
    review_after_claims: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        CheckConstraint("warranty_months >= 0", name="warranty_months_nonnegative"),
        CheckConstraint("extended_warranty_months >= 0", name="extended_nonnegative"),
        CheckConstraint("labor_minutes IS NULL OR labor_minutes >= 0", name="labor_nonnegative"),
    )


class Part(db.Model):
    """A spare part in the catalog."""

    __tablename__ = "parts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    part_number: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(String(255), nullable=False)
    unit_cost: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    # Days a partner has to send the defective part back; NULL: CORE_RETURN_DAYS.
    core_return_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (CheckConstraint("unit_cost >= 0", name="unit_cost_nonnegative"),)


class BomLine(db.Model):
    """A part that may be used repairing a product, up to ``max_qty`` per repair."""

    __tablename__ = "bom_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), nullable=False)
    part_number: Mapped[str] = mapped_column(ForeignKey("parts.part_number"), nullable=False)
    max_qty: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("sku", "part_number"),
        CheckConstraint("max_qty > 0", name="max_qty_positive"),
    )


class Purchase(db.Model):
    """A registered sale of one serial number of one SKU: what claims are checked against."""

    __tablename__ = "purchases"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    serial_number: Mapped[str] = mapped_column(String(64), nullable=False)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), nullable=False)
    purchase_date: Mapped[date] = mapped_column(Date, nullable=False)
    customer_email: Mapped[str] = mapped_column(String(254), nullable=False, index=True)
    customer_name: Mapped[str] = mapped_column(String(200), nullable=False)
    customer_phone: Mapped[str | None] = mapped_column(String(40))
    country: Mapped[str] = mapped_column(String(2), nullable=False)
    order_ref: Mapped[str | None] = mapped_column(String(100))
    retailer: Mapped[str | None] = mapped_column(String(100))
    import_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("sku", "serial_number"),
        # Serves every lookup by serial, and covers the repair history's purchase-date lookup
        # (fraud.facts.derive): a claim's unit is found in the index alone, never the table.
        db.Index("ix_purchases_serial_sku_date", "serial_number", "sku", "purchase_date"),
    )


class ImportRun(db.Model):
    """One CSV import: its file digest, counts and the first rejected rows."""

    __tablename__ = "import_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    filename: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(300), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    inserted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    errors: Mapped[list[dict]] = mapped_column(JSON, nullable=False, default=list)
