"""Fraud flags for finance, the payment holds they place, and the scoring runs behind them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.extensions import db
from common.models import UTCDateTime, utcnow

OPEN = "open"
INSUFFICIENT_EVIDENCE = "insufficient_evidence"
AWAITING_EVIDENCE = "awaiting_evidence"  # finance asked the partner to explain
CONFIRMED = "confirmed"
DISMISSED = "dismissed"
STATUSES = (OPEN, INSUFFICIENT_EVIDENCE, AWAITING_EVIDENCE, CONFIRMED, DISMISSED)
UNDER_REVIEW = (OPEN, AWAITING_EVIDENCE)

STATISTICAL = "statistical"
RULE = "rule"


class FraudFlag(db.Model):
    """One suspicion about a partner (statistical) or one of its claims (hard rule).

    ``fingerprint`` makes re-scoring idempotent: the same partner, signal and claim update
    the same row instead of adding another.
    """

    __tablename__ = "fraud_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(160), unique=True, nullable=False)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), nullable=False,
                                            index=True)
    kind: Mapped[str] = mapped_column(String(12), nullable=False)
    signal: Mapped[str] = mapped_column(String(40), nullable=False)
    claim_ref: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24), nullable=False, default=OPEN)
    # Strength: -log10 of the FDR-adjusted p-value for statistical flags; 100 for hard rules.
    score: Mapped[float] = mapped_column(Float, nullable=False)
    p_value: Mapped[float | None] = mapped_column(Float)
    q_value: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    evidence: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    amount_at_stake: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    window_start: Mapped[str | None] = mapped_column(String(7))
    window_end: Mapped[str | None] = mapped_column(String(7))
    # Whether the latest scoring run still found it.
    current: Mapped[bool] = mapped_column(nullable=False, default=True)
    # The amount at stake when finance dismissed it: it reopens only if that grows materially.
    dismissed_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    recovery_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    decided_by: Mapped[str | None] = mapped_column(String(300))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_scored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow,
                                                     nullable=False)

    partner = relationship("Partner", lazy="joined")

    @property
    def partner_code(self) -> str:
        return self.partner.code

    @property
    def claim(self) -> str | None:
        return self.claim_ref

    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="status_known"),
        CheckConstraint("kind IN ('statistical', 'rule')", name="kind_known"),
        CheckConstraint("amount_at_stake >= 0", name="amount_nonnegative"),
        db.Index("ix_fraud_flags_status_amount", "status", "amount_at_stake"),
    )


class PaymentHold(db.Model):
    """A repair report whose payment is withheld while a flag is investigated."""

    __tablename__ = "payment_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flag_id: Mapped[int] = mapped_column(ForeignKey("fraud_flags.id"), nullable=False,
                                         index=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("repair_reports.id"), nullable=False,
                                           index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    created_by: Mapped[str] = mapped_column(String(300), nullable=False)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_by: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (db.UniqueConstraint("flag_id", "report_id"),)


class ScoreRun(db.Model):
    """One run of the scoring job: what it looked at and what it changed."""

    __tablename__ = "fraud_score_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(300), nullable=False)
    as_of_month: Mapped[str | None] = mapped_column(String(7))
    claims: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    partners: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    summary: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
