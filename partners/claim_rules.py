"""Checking a partner's repair report against the bill of materials. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


@dataclass(frozen=True)
class BomEntry:
    part_number: str
    max_qty: int
    unit_cost: Decimal


@dataclass(frozen=True)
class UsedPart:
    part_number: str
    quantity: int


@dataclass(frozen=True)
class PricedLine:
    part_number: str
    quantity: int
    unit_cost: Decimal
    amount: Decimal
    in_bom: bool


@dataclass
class ReportCheck:
    lines: list[PricedLine] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    parts_amount: Decimal = Decimal("0.00")
    labor_amount: Decimal = Decimal("0.00")

    @property
    def claimed_amount(self) -> Decimal:
        return (self.parts_amount + self.labor_amount).quantize(CENT)


def price_report(
    *,
    parts: Sequence[UsedPart],
    bom: Mapping[str, BomEntry],
    catalog_costs: Mapping[str, Decimal],
    labor_minutes: int,
    standard_minutes: int | None,
    rate_per_hour: Decimal,
    insist: bool,
) -> ReportCheck:
    """Price the report from catalog costs; refuse or flag what the BOM does not allow.

    Outside-BOM parts and quantities above the BOM maximum are refused unless the partner
    insists, in which case they are kept and flagged for finance (suspicious, not lost).
    """
    check = ReportCheck()
    seen: set[str] = set()
    for index, used in enumerate(parts):
        key = f"parts.{index}"
        number = used.part_number.strip().upper()
        if number in seen:
            check.errors.setdefault(key, []).append(f"{number} is listed twice")
            continue
        seen.add(number)
        if number not in catalog_costs:
            check.errors.setdefault(key, []).append(f"{number} is not in the parts catalog")
            continue
        entry = bom.get(number)
        if entry is None:
            if not insist:
                check.errors.setdefault(key, []).append(
                    f"{number} is not in this product's bill of materials")
                continue
            check.flags.append(f"part_outside_bom:{number}")
        elif used.quantity > entry.max_qty:
            if not insist:
                check.errors.setdefault(key, []).append(
                    f"at most {entry.max_qty} of {number} per repair")
                continue
            check.flags.append(f"above_bom_max:{number}")
        cost = catalog_costs[number]
        amount = (cost * used.quantity).quantize(CENT)
        check.lines.append(PricedLine(number, used.quantity, cost, amount, entry is not None))
        check.parts_amount += amount
    if labor_minutes < 0:
        check.errors.setdefault("labor_minutes", []).append("cannot be negative")
    check.labor_amount = (rate_per_hour * labor_minutes / 60).quantize(CENT, ROUND_HALF_UP)
    if standard_minutes and labor_minutes > 2 * standard_minutes:
        check.flags.append("labor_above_twice_standard")
    return check
