"""Default disposition of a received unit: pure rules over plain data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

REPAIR_AT_PARTNER = "repair_at_partner"
REPLACE_FROM_STOCK = "replace_from_stock"
REFURBISH_TO_STOCK = "refurbish_to_stock"
SCRAP = "scrap"
RETURN_TO_VENDOR = "return_to_vendor"
HOLD_FOR_INSPECTION = "hold_for_inspection"
DISPOSITIONS = (REPAIR_AT_PARTNER, REPLACE_FROM_STOCK, REFURBISH_TO_STOCK, SCRAP,
                RETURN_TO_VENDOR, HOLD_FOR_INSPECTION)


@dataclass(frozen=True)
class PartnerLoad:
    code: str
    country: str | None
    open_units: int


@dataclass(frozen=True)
class Route:
    disposition: str
    partner_code: str | None
    why: str


def default_route(*, remedy: str, grade: str | None, serial_mismatch: bool,
                  customer_country: str | None, partners: Sequence[PartnerLoad]) -> Route:
    """What normally happens to a unit, and why, before anyone overrides it."""
    if serial_mismatch:
        return Route(HOLD_FOR_INSPECTION, None, "the serial does not match the RMA")
    if grade == "scrap":
        return Route(SCRAP, None, "graded scrap at receiving")
    if remedy == "repair":
        partner = choose_partner(customer_country, partners)
        if partner is None:
            return Route(HOLD_FOR_INSPECTION, None, "no active repair partner")
        return Route(REPAIR_AT_PARTNER, partner.code,
                     f"repair remedy; {partner.code} is the least loaded partner"
                     + (f" in {customer_country}" if partner.country == customer_country
                        else ""))
    if remedy == "replace":
        # The customer gets a unit from stock; the returned one is refurbished if it can be.
        if grade in ("A", "B", None):
            return Route(REPLACE_FROM_STOCK, None, "replacement remedy; returned unit to refurbish")
        return Route(RETURN_TO_VENDOR, None, "replacement remedy; grade C goes back to vendor")
    if grade in ("A", "B"):
        return Route(REFURBISH_TO_STOCK, None, "refund remedy; good condition, refurbish")
    return Route(RETURN_TO_VENDOR, None, "refund remedy; poor condition, back to vendor")


def choose_partner(country: str | None, partners: Sequence[PartnerLoad]) -> PartnerLoad | None:
    """Prefer a partner in the customer's country, then the lightest load, then the code."""
    if not partners:
        return None
    return min(partners, key=lambda p: (p.country != country, p.open_units, p.code))
