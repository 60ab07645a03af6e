"""The warranty decision engine: pure functions from plain facts to a decision.

``decide`` never touches Flask or the database, so every rule is tested with a table of
plain values. Reason codes are machine-readable; ``claims.reasons`` turns them into the
customer's language.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

APPROVED = "approved"
NEEDS_REVIEW = "needs_review"
REJECTED = "rejected"
REMEDIES = ("repair", "replace", "refund")

# Reason codes, grouped by the outcome they force.
SERIAL_NOT_REGISTERED = "serial_not_registered"
EMAIL_MISMATCH = "email_mismatch"
OUT_OF_WARRANTY = "out_of_warranty"
EXCLUDED_FAULT = "excluded_fault"
PURCHASE_DATE_IN_FUTURE = "purchase_date_in_future"
PURCHASE_BEFORE_RELEASE = "purchase_before_release"
REPEAT_CLAIMS = "repeat_claims"
REFUND_REQUESTED = "refund_requested"
SERIAL_IN_OPEN_CLAIM = "serial_in_open_claim"
WITHIN_WARRANTY = "within_warranty"
EXTENDED_WARRANTY = "extended_warranty"
DOA_REPLACEMENT = "doa_replacement"

# A customer must not learn whether a serial exists under someone else's email, so the
# public answer merges the two codes; staff still see the precise one.
PURCHASE_NOT_MATCHED = "purchase_not_matched"
_PUBLIC_ALIASES = {
    SERIAL_NOT_REGISTERED: PURCHASE_NOT_MATCHED,
    EMAIL_MISMATCH: PURCHASE_NOT_MATCHED,
}


@dataclass(frozen=True)
class PurchaseFacts:
    serial_number: str
    sku: str
    purchase_date: date
    customer_email: str


@dataclass(frozen=True)
class ProductTerms:
    sku: str
    warranty_months: int
    extended_warranty_months: int = 0
    exclusions: frozenset[str] = frozenset()
    released_on: date | None = None
    doa_days: int = 30
    review_after_claims: int = 2


@dataclass(frozen=True)
class ClaimFacts:
    serial_number: str
    email: str
    fault_category: str
    filed_on: date
    dead_on_arrival: bool = False
    requested_remedy: str | None = None


@dataclass(frozen=True)
class Reason:
    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params)}


@dataclass(frozen=True)
class Decision:
    status: str
    reasons: tuple[Reason, ...]
    remedy: str | None = None
    warranty_ends_on: date | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(reason.code for reason in self.reasons)


def add_months(start: date, months: int) -> date:
    """``start`` plus whole months, clamped to the month's last day (Jan 31 + 1 = Feb 28/29)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def public_code(code: str) -> str:
    """The reason code a customer may see."""
    return _PUBLIC_ALIASES.get(code, code)


def decide(
    claim: ClaimFacts,
    purchase: PurchaseFacts | None,
    product: ProductTerms | None,
    *,
    previous_claims: int = 0,
) -> Decision:
    """Approve, send to review or reject a claim, with every reason that applies."""
    if purchase is None or product is None:
        return Decision(REJECTED, (Reason(SERIAL_NOT_REGISTERED),))
    if purchase.customer_email.strip().lower() != claim.email.strip().lower():
        return Decision(REJECTED, (Reason(EMAIL_MISMATCH),))

    rejecting: list[Reason] = []
    reviewing: list[Reason] = []
    notes: list[Reason] = []

    base_end = add_months(purchase.purchase_date, product.warranty_months)
    # Counted from the purchase, not from base_end: a month-end clamp (Aug 31 -> Feb 29)
    # must not shorten the extension.
    full_end = add_months(
        purchase.purchase_date, product.warranty_months + product.extended_warranty_months
    )
    if claim.filed_on > full_end:
        rejecting.append(Reason(OUT_OF_WARRANTY, {"ended_on": full_end.isoformat()}))
    elif claim.filed_on > base_end:
        notes.append(Reason(EXTENDED_WARRANTY, {"ends_on": full_end.isoformat()}))
    else:
        notes.append(Reason(WITHIN_WARRANTY, {"ends_on": full_end.isoformat()}))
    if claim.fault_category in product.exclusions:
        rejecting.append(Reason(EXCLUDED_FAULT, {"fault_category": claim.fault_category}))
    if purchase.purchase_date > claim.filed_on:
        reviewing.append(
            Reason(PURCHASE_DATE_IN_FUTURE, {"purchase_date": purchase.purchase_date.isoformat()})
        )
    if product.released_on and purchase.purchase_date < product.released_on:
        reviewing.append(
            Reason(PURCHASE_BEFORE_RELEASE, {"released_on": product.released_on.isoformat()})
        )
    if previous_claims >= product.review_after_claims:
        reviewing.append(Reason(REPEAT_CLAIMS, {"previous_claims": previous_claims}))

    if rejecting:
        return Decision(REJECTED, tuple(rejecting), warranty_ends_on=full_end)

    remedy = claim.requested_remedy or "repair"
    age_days = (claim.filed_on - purchase.purchase_date).days
    if claim.dead_on_arrival and 0 <= age_days <= product.doa_days:
        # Plan B: a unit dead on arrival is replaced, not repaired.
        remedy = "replace"
        notes.append(Reason(DOA_REPLACEMENT, {"doa_days": product.doa_days}))
    elif remedy == "refund":
        reviewing.append(Reason(REFUND_REQUESTED))

    status = NEEDS_REVIEW if reviewing else APPROVED
    return Decision(status, tuple(reviewing + notes), remedy=remedy, warranty_ends_on=full_end)
