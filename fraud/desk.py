"""What the finance review desk reads: queue filters and pages, runs, funnel and trend data.

Read-only helpers for ``fraud.pages``; every change still goes through ``fraud.service``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import numpy as np
from sqlalchemy import Select, func, select

from common.errors import ValidationFailed
from common.extensions import db
from fraud import models as m
from fraud import service, stats
from fraud import verdicts as v
from fraud.cube import Cube, month_range
from fraud.facts import load_cube
from fraud.scoring import WINDOW_MONTHS
from partners.models import Partner

PAGE_SIZE = 50
ALL = "all"
NOTE_MAX = 2000
AMOUNT_MAX = Decimal("999999999.99")  # what Numeric(12, 2) holds
# Two-sided z of the funnel's control limits: 95% and 99.8% (Spiegelhalter 2005).
FUNNEL_LIMITS = (("95%", 1.96), ("99.8%", 3.09))
# A partner counts as flagged on the charts while a statistical flag on it is under review or
# confirmed; hard-rule hits are about single claims, not about the partner's DOA rate.
_FLAGGED_STATUSES = (m.OPEN, m.AWAITING_EVIDENCE, m.CONFIRMED)

SIGNAL_WORDS = {
    v.DOA_RATE: "Dead-on-arrival rate above its product mix",
    v.LATE_DOA: "DOA declared on units past their DOA window",
    v.PARTS_PER_REPAIR: "More parts per repair than peers",
    v.PART_COST: "Higher parts cost per repair than peers",
    v.PREMIUM_PARTS: "High-cost modules used more often than peers",
    v.LABOR: "More labor minutes per repair than peers",
    v.REPEAT_REPAIRS: "Repairs that did not hold (repeat within 90 days)",
    v.UNRETURNED_PARTS: "Defective parts not returned",
    v.PART_OUTSIDE_BOM: "Part outside the product's bill of materials",
    v.UNREGISTERED_SERIAL: "Serial number is not a registered purchase",
    v.SERIAL_AT_OTHER_PARTNER: "Same serial in repair at another partner",
    v.OUTSIDE_WARRANTY: "Unit past its warranty",
    v.NOT_SHIPPED_TO_PARTNER: "Unit never shipped to this partner",
    v.REUSED_PHOTO: "Photo reused from another claim",
}
STATUS_WORDS = {
    m.OPEN: "Open",
    m.INSUFFICIENT_EVIDENCE: "Insufficient evidence",
    m.AWAITING_EVIDENCE: "Awaiting the partner's evidence",
    m.CONFIRMED: "Confirmed",
    m.DISMISSED: "Dismissed",
}
KIND_WORDS = {m.STATISTICAL: "Statistical (partner)", m.RULE: "Hard rule (claim)"}


def signal_words(signal: str) -> str:
    return SIGNAL_WORDS.get(signal, signal.replace("_", " ").capitalize())


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


def age_words(since: datetime, now: datetime | None = None) -> str:
    """How long a flag has waited, in whole days."""
    now = now or datetime.now(UTC)
    days = max(0, (now - since).days)
    return "today" if days == 0 else "1 day" if days == 1 else f"{days} days"


# --- the queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilters:
    """The queue's GET filters; unknown values fall back to the default (open flags)."""

    status: str = m.OPEN
    signal: str = ""
    partner: str = ""
    kind: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> QueueFilters:
        status = args.get("status") or m.OPEN
        signal = args.get("signal") or ""
        kind = args.get("kind") or ""
        return cls(
            status=status if status in (*m.STATUSES, ALL) else m.OPEN,
            signal=signal if signal in SIGNAL_WORDS else "",
            partner=(args.get("partner") or "").strip().upper()[:32],
            kind=kind if kind in KIND_WORDS else "",
        )

    def query(self) -> Select:
        return service.flags_query(partner_code=self.partner or None,
                                   signal=self.signal or None,
                                   status=None if self.status == ALL else self.status,
                                   kind=self.kind or None)

    def as_args(self) -> dict[str, str]:
        """Query-string arguments that reproduce these filters (for links and the CSV)."""
        return {name: value for name, value in self.__dict__.items() if value}


@dataclass(frozen=True)
class Page:
    items: list[m.FraudFlag]
    number: int
    pages: int
    total: int


def page_of(query: Select, number: int, size: int = PAGE_SIZE) -> Page:
    """One page of a select; a page past the end shows the last one."""
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    pages = max(1, math.ceil(total / size))
    number = min(max(1, number), pages)
    items = list(db.session.scalars(query.offset((number - 1) * size).limit(size)))
    return Page(items=items, number=number, pages=pages, total=total)


@dataclass(frozen=True)
class OpenSummary:
    count: int
    at_stake: Decimal


def open_summary() -> OpenSummary:
    """How many flags are open and the money they put at stake."""
    count, at_stake = db.session.execute(
        select(func.count(), func.coalesce(func.sum(m.FraudFlag.amount_at_stake), 0))
        .where(m.FraudFlag.status == m.OPEN)).one()
    return OpenSummary(count=count, at_stake=Decimal(at_stake).quantize(Decimal("0.01")))


def last_run() -> m.ScoreRun | None:
    return db.session.scalar(select(m.ScoreRun).order_by(m.ScoreRun.id.desc()).limit(1))


# --- one flag ------------------------------------------------------------------------------


def holds_for(flag_id: int) -> list[m.PaymentHold]:
    return list(db.session.scalars(select(m.PaymentHold).where(m.PaymentHold.flag_id == flag_id)
                                   .order_by(m.PaymentHold.id)))


def parse_amount(text: str | None) -> Decimal | None:
    """A recovery amount typed into the form: empty is None, anything else a sane number."""
    text = (text or "").strip().replace(",", "")
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount != amount.quantize(Decimal("0.01")):
        raise ValidationFailed("the recovery amount is not an amount", errors={
            "recovery_amount": ["write it like 1250.00"]})
    if not 0 <= amount <= AMOUNT_MAX:
        raise ValidationFailed("the recovery amount is out of range", errors={
            "recovery_amount": ["give 0 or more, below one billion"]})
    return amount


def check_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise ValidationFailed("the note is too long", errors={
            "note": [f"keep it under {NOTE_MAX} characters"]})
    return note


# --- partners ------------------------------------------------------------------------------


def partner_flags(partner_id: int) -> list[m.FraudFlag]:
    return list(db.session.scalars(
        service.flags_query().where(m.FraudFlag.partner_id == partner_id)))


def flagged_partners() -> set[str]:
    """Codes of partners with a statistical flag under review or confirmed."""
    return set(db.session.scalars(
        select(Partner.code).join(m.FraudFlag, m.FraudFlag.partner_id == Partner.id)
        .where(m.FraudFlag.kind == m.STATISTICAL, m.FraudFlag.current.is_(True),
               m.FraudFlag.status.in_(_FLAGGED_STATUSES))))


def claims_cube() -> Cube:
    """Every partner's claims per product and month (partners without claims included)."""
    return load_cube(partners=db.session.scalars(select(Partner.code)))


def _last_month_with_claims(cube: Cube) -> int | None:
    if not cube.months:
        return None
    monthly = cube["claims"].sum(axis=(0, 1))
    nonzero = np.flatnonzero(monthly > 0)
    return int(nonzero[-1]) if nonzero.size else None


@dataclass(frozen=True)
class FunnelPartner:
    code: str
    name: str
    claims: int
    observed: float  # DOA claims in the window
    expected: float  # what peers' per-product DOA rates predict for its mix

    @property
    def ratio(self) -> float:
        return self.observed / self.expected if self.expected > 0 else math.nan


@dataclass(frozen=True)
class Funnel:
    window: tuple[str, str] | None
    partners: list[FunnelPartner]  # those with an expectation, highest O/E first
    flagged: set[str]
    limits: list[tuple[str, list[float], list[float], list[float]]] = field(default_factory=list)


def funnel(cube: Cube) -> Funnel:
    """The DOA funnel over the current scoring window: O/E per partner and control limits."""
    as_of = _last_month_with_claims(cube)
    if as_of is None:
        return Funnel(window=None, partners=[], flagged=set())
    totals = cube.window(as_of, WINDOW_MONTHS)
    expected = stats.expected_from_mix(totals["claims"],
                                       stats.peer_rates(totals["doa"], totals["claims"]))
    observed = totals["doa"].sum(axis=1)
    volume = totals["claims"].sum(axis=1)
    names = {code: name for code, name in db.session.execute(select(Partner.code, Partner.name))}
    partners = sorted(
        (FunnelPartner(code=code, name=names.get(code, code), claims=int(volume[i]),
                       observed=float(observed[i]), expected=float(expected[i]))
         for i, code in enumerate(cube.partners)
         if np.isfinite(expected[i]) and expected[i] > 0),
        key=lambda p: (-p.ratio, p.code))
    window = (cube.months[max(0, as_of - WINDOW_MONTHS + 1)], cube.months[as_of])
    return Funnel(window=window, partners=partners, flagged=flagged_partners(),
                  limits=funnel_limits([p.expected for p in partners]))


def funnel_limits(expected: list[float]) -> list[tuple[str, list[float], list[float],
                                                        list[float]]]:
    """Each control limit's (label, grid of E, lower O/E, upper O/E) across the plotted E."""
    if not expected:
        return []
    grid = np.geomspace(min(expected) / 2, max(expected) * 2, 80)
    limits = []
    for label, z in FUNNEL_LIMITS:
        lower, upper = stats.funnel_limits(grid, z=z)
        limits.append((label, grid.tolist(), lower.tolist(), upper.tolist()))
    return limits


@dataclass(frozen=True)
class TrendMonth:
    month: str
    claims: int
    observed: int  # DOA claims
    expected: float  # DOA the peers' rates that month predict for its mix that month
    claimed: Decimal
    flagged: bool


def partner_trend(cube: Cube, code: str, flags: list[m.FraudFlag]) -> list[TrendMonth]:
    """The partner's claims and DOA per month, against what its peers' rates predict."""
    if code not in cube.partners or not cube.months:
        return []
    i = cube.partners.index(code)
    flagged = set()
    for flag in flags:
        if (flag.kind == m.STATISTICAL and flag.status in _FLAGGED_STATUSES
                and flag.window_start and flag.window_end):
            flagged.update(month_range(flag.window_start, flag.window_end))
    months = []
    for j, month in enumerate(cube.months):
        claims = cube["claims"][:, :, j]
        rates = stats.peer_rates(cube["doa"][:, :, j], claims)
        expected = float(stats.expected_from_mix(claims[i:i + 1], rates)[0])
        months.append(TrendMonth(
            month=month, claims=int(claims[i].sum()), observed=int(cube["doa"][i, :, j].sum()),
            expected=expected if math.isfinite(expected) else 0.0,
            claimed=Decimal(str(round(float(cube["claimed"][i, :, j].sum()), 2))),
            flagged=month in flagged))
    return months
