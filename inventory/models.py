"""Units travelling back, every scan, and the stock-movement ledger with derived levels."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.extensions import db
from common.models import UTCDateTime, utcnow

GRADES = ("A", "B", "C", "scrap")
RECEIVING_BIN = "warehouse:RECEIVING"


class Unit(db.Model):
    """The physical item behind one RMA: where it is and what state it is in."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rma_id: Mapped[int] = mapped_column(ForeignKey("rmas.id"), unique=True, nullable=False)
    expected_serial: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    received_serial: Mapped[str | None] = mapped_column(String(64), index=True)
    serial_mismatch: Mapped[bool] = mapped_column(nullable=False, default=False)
    sku: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), nullable=False, default="awaiting_return")
    location: Mapped[str] = mapped_column(String(80), nullable=False, default="customer")
    grade: Mapped[str | None] = mapped_column(String(8))
    notes: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_by: Mapped[str | None] = mapped_column(String(300))
    received_station: Mapped[str | None] = mapped_column(String(40))
    disposition: Mapped[str | None] = mapped_column(String(24))
    partner_code: Mapped[str | None] = mapped_column(String(32), index=True)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow,
                                                        nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    rma = relationship("Rma", lazy="joined")

    __table_args__ = (
        CheckConstraint("grade IS NULL OR grade IN ('A', 'B', 'C', 'scrap')", name="grade_known"),
        db.Index("ix_units_status_changed", "status", "status_changed_at"),
    )


class Scan(db.Model):
    """Every code a scanner read, whatever came of it."""

    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    code: Mapped[str] = mapped_column(String(128), nullable=False)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    rma_number: Mapped[str | None] = mapped_column(String(16), index=True)
    serial_number: Mapped[str | None] = mapped_column(String(64))
    grade: Mapped[str | None] = mapped_column(String(8))
    station: Mapped[str | None] = mapped_column(String(40))
    scanned_by: Mapped[str] = mapped_column(String(300), nullable=False)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class StockMovement(db.Model):
    """One movement of a unit or of parts between two locations: the ledger's row."""

    __tablename__ = "stock_movements"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_type: Mapped[str] = mapped_column(String(8), nullable=False)  # "unit" | "part"
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    part_number: Mapped[str | None] = mapped_column(String(64), index=True)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    from_location: Mapped[str | None] = mapped_column(String(80))
    to_location: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(String(24), nullable=False)
    reference: Mapped[str | None] = mapped_column(String(80))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(300), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("item_type IN ('unit', 'part')", name="item_type_known"),
        CheckConstraint(
            "(item_type = 'unit' AND unit_id IS NOT NULL AND quantity = 1) OR "
            "(item_type = 'part' AND part_number IS NOT NULL)",
            name="unit_or_part",
        ),
        CheckConstraint("from_location IS NOT NULL OR to_location IS NOT NULL",
                        name="moves_somewhere"),
    )


class StockLevel(db.Model):
    """Parts on hand per location: kept in step with the ledger, never below zero.

    The CHECK constraint is what stops two concurrent issues from overdrawing a bin; the
    ledger stays the record, and ``verify_levels`` proves the two agree.
    """

    __tablename__ = "stock_levels"

    location: Mapped[str] = mapped_column(String(80), primary_key=True)
    part_number: Mapped[str] = mapped_column(ForeignKey("parts.part_number"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    __table_args__ = (CheckConstraint("quantity >= 0", name="never_negative"),)


class Shipment(db.Model):
    """A box of units going to a partner, or expected back from one."""

    __tablename__ = "shipments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_number: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    direction: Mapped[str] = mapped_column(String(16), nullable=False)
    partner_code: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(24), nullable=False, default="open")
    created_by: Mapped[str] = mapped_column(String(300), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    items = relationship("ShipmentItem", order_by="ShipmentItem.id", lazy="selectin",
                         back_populates="shipment")

    __table_args__ = (
        CheckConstraint("direction IN ('to_partner', 'from_partner')", name="direction_known"),
    )


class ShipmentItem(db.Model):
    """One unit on a shipment: packed or expected, then received, missing or unexpected."""

    __tablename__ = "shipment_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), nullable=False)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), nullable=False, index=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="listed")
    scanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    shipment = relationship(Shipment, back_populates="items")
    unit = relationship(Unit, lazy="joined")

    __table_args__ = (db.UniqueConstraint("shipment_id", "unit_id"),)
