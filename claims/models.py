"""Claims, their photos, staff notes and the customer-visible timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.extensions import db
from common.models import UTCDateTime, utcnow

OPEN_STATUSES = ("approved", "needs_review")
STATUSES = ("approved", "needs_review", "rejected", "closed")


class Claim(db.Model):
    """A customer's warranty request for one serial, with the decision and its reasons."""

    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    claim_number: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"), index=True)
    serial_number: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    sku: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254), nullable=False, index=True)
    customer_name: Mapped[str | None] = mapped_column(String(200))
    fault_category: Mapped[str] = mapped_column(String(32), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    dead_on_arrival: Mapped[bool] = mapped_column(nullable=False, default=False)
    requested_remedy: Mapped[str | None] = mapped_column(String(16))
    remedy: Mapped[str | None] = mapped_column(String(16))
    return_address: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    language: Mapped[str] = mapped_column(String(5), nullable=False, default="en")
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    # Set to the serial while the claim is open: the unique constraint allows one open claim
    # per serial, race-free on every database (NULLs never collide).
    open_serial: Mapped[str | None] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(8), nullable=False, default="api")
    tracking_token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(300))
    warranty_ends_on: Mapped[Any | None] = mapped_column(db.Date)

    photos = relationship("ClaimPhoto", order_by="ClaimPhoto.id", lazy="select")

    __table_args__ = (
        CheckConstraint(
            "status IN ('approved', 'needs_review', 'rejected', 'closed')", name="status_known"
        ),
        CheckConstraint(
            "(open_serial IS NULL) OR (status IN ('approved', 'needs_review'))",
            name="only_open_claims_hold_the_serial",
        ),
    )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class ClaimPhoto(db.Model):
    """A verified, re-encoded photo of the defect, stored outside the web root."""

    __tablename__ = "claim_photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), nullable=False, index=True)
    stored_name: Mapped[str] = mapped_column(String(80), nullable=False, unique=True)
    content_type: Mapped[str] = mapped_column(String(32), nullable=False)
    size_bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class ClaimNote(db.Model):
    """A support agent's note on a claim (internal, never shown to the customer)."""

    __tablename__ = "claim_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), nullable=False, index=True)
    author: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class TimelineEntry(db.Model):
    """One customer-visible step of a claim (filed, approved, received, shipped back...)."""

    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class IdempotencyRecord(db.Model):
    """An ``Idempotency-Key`` (API) or form submission id (web) and the answer it got."""

    __tablename__ = "idempotency_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(120), nullable=False)
    key: Mapped[str] = mapped_column(String(200), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), nullable=False)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (db.UniqueConstraint("scope", "key"),)
