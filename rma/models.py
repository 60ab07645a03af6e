"""RMAs: the authorisation to return one unit, and its stored label."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.extensions import db
from common.models import UTCDateTime, utcnow


class Rma(db.Model):
    """An RMA number issued for one approved claim; what travels on the box."""

    __tablename__ = "rmas"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rma_number: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id"), unique=True, nullable=False)
    remedy: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(24), nullable=False, default="issued")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    label_ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    claim = relationship("Claim", lazy="joined")

    __table_args__ = (
        CheckConstraint("remedy IN ('repair', 'replace', 'refund')", name="remedy_known"),
    )


class RmaLabel(db.Model):
    """The label PDF exactly as it was first issued to the customer (kept as evidence)."""

    __tablename__ = "rma_labels"

    rma_id: Mapped[int] = mapped_column(ForeignKey("rmas.id"), primary_key=True)
    page: Mapped[str] = mapped_column(String(8), primary_key=True)
    language: Mapped[str] = mapped_column(String(5), nullable=False)
    pdf: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class LabelBatch(db.Model):
    """A staff request to print many labels as one PDF, rendered by a background job."""

    __tablename__ = "label_batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(300), nullable=False)
    rma_numbers: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    page: Mapped[str] = mapped_column(String(8), nullable=False)
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
