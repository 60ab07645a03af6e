"""Service partners, their API keys, repairs, repair reports and payable lines."""

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
    Text,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.extensions import db
from common.models import UTCDateTime, utcnow


class Partner(db.Model):
    """An authorized service partner (repair shop)."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    country: Mapped[str | None] = mapped_column(String(2))
    contact_email: Mapped[str | None] = mapped_column(String(254))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    sla_days: Mapped[int] = mapped_column(Integer, nullable=False, default=10)
    # Days a repair may stay in each stage, e.g. {"awaiting_parts": 5}; NULL: SLA_STAGE_LIMITS.
    stage_limits: Mapped[dict | None] = mapped_column(JSON)
    labor_rate_per_hour: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False,
                                                         default=Decimal("60.00"))
    active: Mapped[bool] = mapped_column(nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (CheckConstraint("sla_days > 0", name="sla_days_positive"),)


class PartnerApiKey(db.Model):
    """One of a partner's API keys; several may be live at once so keys can be rotated."""

    __tablename__ = "partner_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), nullable=False, index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    partner = relationship(Partner, lazy="joined")


class Repair(db.Model):
    """A partner's work on one unit, from the shipment that brought it to the way back."""

    __tablename__ = "repairs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), nullable=False, index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), nullable=False,
                                            index=True)
    shipment_number: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24), nullable=False, default="in_transit")
    # Optimistic concurrency: every change bumps it; a PATCH must name the version it saw.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    # SLA clock: runs from receipt at the partner to shipping back, minus paused time.
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    sla_level: Mapped[str] = mapped_column(String(12), nullable=False, default="ok")
    # Per-stage clock: when the current status began, and the paused time up to then.
    stage_entered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stage_paused_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                                      server_default="0")

    unit = relationship("Unit", lazy="joined")
    partner = relationship(Partner, lazy="joined")

    __table_args__ = (db.Index("ix_repairs_partner_status", "partner_id", "status"),)


class RepairEvent(db.Model):
    """One status change of a repair: when, by whom, from what to what, and why."""

    __tablename__ = "repair_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    repair_id: Mapped[int] = mapped_column(ForeignKey("repairs.id"), nullable=False, index=True)
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24), nullable=False)
    actor: Mapped[str] = mapped_column(String(300), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class RepairReport(db.Model):
    """A partner's report and claim for payment on one repair: diagnosis, DOA, parts, labor."""

    __tablename__ = "repair_reports"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    repair_id: Mapped[int] = mapped_column(ForeignKey("repairs.id"), unique=True, nullable=False)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), nullable=False,
                                            index=True)
    diagnosis_code: Mapped[str] = mapped_column(String(40), nullable=False)
    doa: Mapped[bool] = mapped_column(nullable=False, default=False)
    doa_evidence: Mapped[str | None] = mapped_column(Text)
    labor_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    labor_rate_per_hour: Mapped[Decimal] = mapped_column(Numeric(10, 2), nullable=False)
    parts_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    labor_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    claimed_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    flags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="submitted")
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(300))
    decision_note: Mapped[str | None] = mapped_column(Text)
    replacement_serial: Mapped[str | None] = mapped_column(String(64))

    repair = relationship(Repair, lazy="joined")
    lines = relationship("RepairReportLine", order_by="RepairReportLine.id", lazy="selectin",
                         back_populates="report")

    __table_args__ = (
        CheckConstraint("labor_minutes >= 0", name="labor_nonnegative"),
        CheckConstraint("status IN ('submitted', 'approved', 'rejected', 'withheld')",
                        name="status_known"),
    )


class RepairReportLine(db.Model):
    """One spare part claimed as used, priced from the catalog at submission."""

    __tablename__ = "repair_report_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("repair_reports.id"), nullable=False,
                                           index=True)
    part_number: Mapped[str] = mapped_column(String(64), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_cost: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    in_bom: Mapped[bool] = mapped_column(nullable=False)
    # The defective part must come back by this date; chargeback otherwise.
    due_back_on: Mapped[date | None] = mapped_column(Date)
    returned_quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    report = relationship("RepairReport", lazy="joined", back_populates="lines")

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("returned_quantity >= 0 AND returned_quantity <= quantity",
                        name="returned_within_quantity"),
    )


class PayableLine(db.Model):
    """An approved repair report owed to the partner for one accounting period."""

    __tablename__ = "payable_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("repair_reports.id"), unique=True,
                                           nullable=False)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), nullable=False)
    period: Mapped[str] = mapped_column(String(7), nullable=False)  # YYYY-MM
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (db.Index("ix_payable_lines_partner_period", "partner_id", "period"),)


class HistoricRepair(db.Model):
    """A repair claim in the history fraud scoring learns from.

    Rows come from the history import (claims from an older system) and from every live
    repair report, mirrored at submission (``report_id`` set). The columns after ``parts`` are
    derived once, when the row is written (``fraud.facts.derive``), so scoring is one
    ``GROUP BY`` over this table instead of a join per claim.
    """

    __tablename__ = "historic_repairs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    partner_code: Mapped[str] = mapped_column(ForeignKey("partners.code"), nullable=False)
    serial_number: Mapped[str] = mapped_column(String(64), nullable=False)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), nullable=False)
    rma_number: Mapped[str | None] = mapped_column(String(16))
    received_date: Mapped[date] = mapped_column(Date, nullable=False)
    completed_date: Mapped[date] = mapped_column(Date, nullable=False)
    doa: Mapped[bool] = mapped_column(nullable=False)
    diagnosis_code: Mapped[str | None] = mapped_column(String(40))
    parts: Mapped[list[dict]] = mapped_column(JSON, nullable=False, default=list)
    labor_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    claimed_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    report_id: Mapped[int | None] = mapped_column(ForeignKey("repair_reports.id"), unique=True)
    # Kept, not refused, when the serial is not a registered purchase: a fraud signal.
    serial_registered: Mapped[bool] = mapped_column(nullable=False, default=True)
    received_month: Mapped[str] = mapped_column(String(7), nullable=False, server_default="")
    unit_age_days: Mapped[int | None] = mapped_column(Integer)
    late_doa: Mapped[bool] = mapped_column(nullable=False, default=False,
                                           server_default=sa_false())
    outside_warranty: Mapped[bool] = mapped_column(nullable=False, default=False,
                                                   server_default=sa_false())
    parts_quantity: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                                server_default="0")
    parts_cost: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False, default=0,
                                                server_default="0")
    premium_parts: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                               server_default="0")
    outside_bom_parts: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                                   server_default="0")
    parts_not_returned: Mapped[int] = mapped_column(Integer, nullable=False, default=0,
                                                    server_default="0")
    import_id: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (
        # The import's key. Serial first: it is also the index of every lookup by serial
        # (fraud.facts' repeats, fraud.rules' overlaps, in received order), so the table
        # keeps one index that new claims land all over, not two.
        db.UniqueConstraint("serial_number", "received_date", "partner_code"),
        # Covers fraud.facts.load_cube's GROUP BY: its grouping columns first, then every
        # column it sums, so the aggregate reads this index alone, in order, and never the
        # table. The month leads: claims arrive roughly in date order, so new entries land
        # in the last months' pages, which stay cached, instead of all over the index (with
        # the partner first it was the dearest index to keep up in a history import); and a
        # scoring window is a range of it.
        db.Index("ix_historic_repairs_cube", "received_month", "partner_code", "sku", "doa",
                 "late_doa", "parts_quantity", "parts_cost", "premium_parts", "labor_minutes",
                 "parts_not_returned", "claimed_amount"),
        # The hard rules (fraud.rules) read the few claims that break one: partial indexes of
        # just those claims, so a rule reads a few hundred rows, not the whole history.
        # Each predicate is spelled as SQLAlchemy renders the rule's condition on that database.
        db.Index("ix_historic_repairs_outside_bom", "id",
                 sqlite_where=text("outside_bom_parts > 0"),
                 postgresql_where=text("outside_bom_parts > 0")),
        db.Index("ix_historic_repairs_outside_warranty", "id",
                 sqlite_where=text("outside_warranty IS 1"),
                 postgresql_where=text("outside_warranty IS true")),
        db.Index("ix_historic_repairs_unregistered", "id",
                 sqlite_where=text("serial_registered IS 0"),
                 postgresql_where=text("serial_registered IS false")),
        CheckConstraint("completed_date >= received_date", name="completed_after_received"),
        CheckConstraint("labor_minutes >= 0", name="labor_nonnegative"),
    )


class SlaAlert(db.Model):
    """One SLA level reached by one repair; unique, so re-running the check alerts once.

    ``level`` is a turnaround level (at_risk, breached, escalated) or ``stage:<status>`` for
    a stage that overran its limit.
    """

    __tablename__ = "sla_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repair_id: Mapped[int] = mapped_column(ForeignKey("repairs.id"), nullable=False)
    level: Mapped[str] = mapped_column(String(40), nullable=False)
    elapsed_days: Mapped[Decimal] = mapped_column(Numeric(8, 2), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (db.UniqueConstraint("repair_id", "level"),)


class Chargeback(db.Model):
    """A defective part not returned in time, charged on the partner's next payable period."""

    __tablename__ = "chargebacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_line_id: Mapped[int] = mapped_column(ForeignKey("repair_report_lines.id"),
                                                unique=True, nullable=False)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), nullable=False,
                                            index=True)
    period: Mapped[str] = mapped_column(String(7), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
