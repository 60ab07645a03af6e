"""What scoring concludes about a partner or a claim: plain data, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

# Partner-level statistical signals, each comparing the partner with its own product mix.
DOA_RATE = "doa_rate"
LATE_DOA = "late_doa"
PARTS_PER_REPAIR = "parts_per_repair"
PART_COST = "part_cost"
PREMIUM_PARTS = "premium_parts"
LABOR = "labor"
REPEAT_REPAIRS = "repeat_repairs"
UNRETURNED_PARTS = "unreturned_parts"

# Per-claim hard rules: each hit is evidence on its own.
PART_OUTSIDE_BOM = "part_outside_bom"
UNREGISTERED_SERIAL = "unregistered_serial"
SERIAL_AT_OTHER_PARTNER = "serial_at_other_partner"
OUTSIDE_WARRANTY = "outside_warranty"
NOT_SHIPPED_TO_PARTNER = "not_shipped_to_partner"
REUSED_PHOTO = "reused_photo"

STATISTICAL_SIGNALS = (DOA_RATE, LATE_DOA, PARTS_PER_REPAIR, PART_COST, PREMIUM_PARTS, LABOR,
                       REPEAT_REPAIRS, UNRETURNED_PARTS)
RULE_SIGNALS = (PART_OUTSIDE_BOM, UNREGISTERED_SERIAL, SERIAL_AT_OTHER_PARTNER, OUTSIDE_WARRANTY,
                NOT_SHIPPED_TO_PARTNER, REUSED_PHOTO)

# Partner verdicts.
FLAG = "flag"
INSUFFICIENT = "insufficient_evidence"
CLEAR = "clear"


@dataclass(frozen=True)
class SignalResult:
    signal: str
    p_value: float
    observed: float
    expected: float
    # What the partner's excess would have cost: claimed above what peers would have claimed.
    excess_amount: float
    reason: str  # plain words with the numbers


@dataclass
class PartnerVerdict:
    partner: str
    verdict: str  # FLAG | INSUFFICIENT | CLEAR
    claims: int  # claims in the scoring window
    combined_p: float
    q_value: float
    signals: list[SignalResult] = field(default_factory=list)  # strongest first
    amount_at_stake: float = 0.0

    @property
    def top_signal(self) -> str | None:
        return self.signals[0].signal if self.signals else None


@dataclass(frozen=True)
class RuleHit:
    rule: str
    partner: str
    claim_ref: str  # "report:<id>" for live reports, "history:<id>" for imported claims
    reason: str
    amount: Decimal
