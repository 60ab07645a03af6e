"""Row validation rules for each CSV import kind. Pure functions: plain dicts in and out."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from catalog.faults import FAULT_CATEGORIES

_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WHOLE = re.compile(r"^[+-]?\d{1,9}$")
EARLIEST_DATE = date(1990, 1, 1)
_MEMO_LIMIT = 100_000  # entries per memo of parsed values, so odd files cannot exhaust memory

RowErrors = list[tuple[str, str]]


@dataclass
class ImportContext:
    """What rules need to know about the database: existing SKUs and parts, today's date."""

    today: date
    skus: set[str] = field(default_factory=set)
    part_numbers: set[str] = field(default_factory=set)
    # Sets other domains' kinds need (e.g. partner codes), loaded by registered loaders.
    extra: dict[str, set[str]] = field(default_factory=dict)
    # What enrich hooks keep for the rest of one import (a catalog read once).
    cache: dict[str, Any] = field(default_factory=dict)
    # Valid dates already parsed in this import, by their text.
    dates: dict[str, date] = field(default_factory=dict)


def _text(
    raw: Mapping[str, str], name: str, errors: RowErrors, *, required: bool, max_len: int
) -> str | None:
    value = (raw.get(name) or "").strip()
    if not value:
        if required:
            errors.append((name, "is required"))
        return None
    if len(value) > max_len:
        errors.append((name, f"is longer than {max_len} characters"))
        return None
    return value


def _code(raw: Mapping[str, str], name: str, errors: RowErrors) -> str | None:
    value = _text(raw, name, errors, required=True, max_len=64)
    if value is None:
        return None
    if not _CODE.match(value):
        errors.append((name, "may contain only letters, digits and . _ / -"))
        return None
    return value.upper()


def _int(
    raw: Mapping[str, str],
    name: str,
    errors: RowErrors,
    *,
    required: bool,
    minimum: int,
    maximum: int,
) -> int | None:
    value = (raw.get(name) or "").strip()
    if not value:
        if required:
            errors.append((name, "is required"))
        return None
    if not _WHOLE.match(value):
        errors.append((name, f"must be a whole number, got {value[:20]!r}"))
        return None
    number = int(value)
    if not minimum <= number <= maximum:
        errors.append((name, f"must be between {minimum} and {maximum}"))
        return None
    return number


def _date(
    raw: Mapping[str, str], name: str, errors: RowErrors, ctx: ImportContext, *, required: bool
) -> date | None:
    value = raw.get(name) or ""
    # A file repeats the same few thousand dates: parse (and check) each once per import.
    parsed_before = ctx.dates.get(value)
    if parsed_before is not None:
        return parsed_before
    parsed = _parse_date(value.strip(), name, errors, ctx, required=required)
    if parsed is not None and len(ctx.dates) < _MEMO_LIMIT:
        ctx.dates[value] = parsed
    return parsed


def _parse_date(
    value: str, name: str, errors: RowErrors, ctx: ImportContext, *, required: bool
) -> date | None:
    if not value:
        if required:
            errors.append((name, "is required"))
        return None
    try:
        if not _ISO_DATE.match(value):
            raise ValueError(value)
        parsed = date.fromisoformat(value)
    except ValueError:
        errors.append((name, f"must be an ISO 8601 date (YYYY-MM-DD), got {value[:20]!r}"))
        return None
    if parsed > ctx.today:
        errors.append((name, "is in the future"))
        return None
    if parsed < EARLIEST_DATE:
        errors.append((name, f"is before {EARLIEST_DATE.isoformat()}"))
        return None
    return parsed


def validate_product(raw: Mapping[str, str], ctx: ImportContext) -> tuple[dict | None, RowErrors]:
    errors: RowErrors = []
    exclusions_raw = (raw.get("exclusions") or "").strip()
    exclusions = sorted({e.strip().lower() for e in exclusions_raw.split(";") if e.strip()})
    unknown = [e for e in exclusions if e not in FAULT_CATEGORIES]
    if unknown:
        errors.append(("exclusions", f"unknown fault categories: {', '.join(unknown)}"))
    record = {
        "sku": _code(raw, "sku", errors),
        "name": _text(raw, "name", errors, required=True, max_len=200),
        "category": _text(raw, "category", errors, required=True, max_len=100),
        "warranty_months": _int(
            raw, "warranty_months", errors, required=True, minimum=0, maximum=240
        ),
        "extended_warranty_months": _int(
            raw, "extended_warranty_months", errors, required=False, minimum=0, maximum=240
        )
        or 0,
        "exclusions": exclusions,
        "labor_minutes": _int(
            raw, "labor_minutes", errors, required=False, minimum=0, maximum=10_000
        ),
        "released_on": _date(raw, "released_on", errors, ctx, required=False),
        "doa_days": _int(raw, "doa_days", errors, required=False, minimum=0, maximum=365),
        "review_after_claims": _int(raw, "review_after_claims", errors, required=False,
                                    minimum=1, maximum=100),
    }
    return (None, errors) if errors else (record, errors)


def validate_part(raw: Mapping[str, str], ctx: ImportContext) -> tuple[dict | None, RowErrors]:
    errors: RowErrors = []
    cost_raw = (raw.get("unit_cost") or "").strip()
    cost: Decimal | None = None
    if not cost_raw:
        errors.append(("unit_cost", "is required"))
    else:
        try:
            cost = Decimal(cost_raw)
            if not cost.is_finite() or cost < 0 or cost > Decimal("9999999999.99"):
                raise InvalidOperation
            if cost != cost.quantize(Decimal("0.01")):
                errors.append(("unit_cost", "has more than 2 decimals"))
                cost = None
        except InvalidOperation:
            errors.append(("unit_cost", f"must be a non-negative amount, got {cost_raw[:20]!r}"))
            cost = None
    record = {
        "part_number": _code(raw, "part_number", errors),
        "description": _text(raw, "description", errors, required=True, max_len=255),
        "unit_cost": cost.quantize(Decimal("0.01")) if cost is not None else None,
    }
    return (None, errors) if errors else (record, errors)


def validate_bom_line(raw: Mapping[str, str], ctx: ImportContext) -> tuple[dict | None, RowErrors]:
    errors: RowErrors = []
    sku = _code(raw, "sku", errors)
    part_number = _code(raw, "part_number", errors)
    if sku and sku not in ctx.skus:
        errors.append(("sku", f"unknown SKU {sku}; import products first"))
    if part_number and part_number not in ctx.part_numbers:
        errors.append(("part_number", f"unknown part {part_number}; import parts first"))
    record = {
        "sku": sku,
        "part_number": part_number,
        "max_qty": _int(raw, "max_qty", errors, required=True, minimum=1, maximum=1000),
    }
    return (None, errors) if errors else (record, errors)


def validate_purchase(raw: Mapping[str, str], ctx: ImportContext) -> tuple[dict | None, RowErrors]:
    errors: RowErrors = []
    sku = _code(raw, "sku", errors)
    if sku and sku not in ctx.skus:
        errors.append(("sku", f"unknown SKU {sku}; import products first"))
    email = _text(raw, "customer_email", errors, required=True, max_len=254)
    if email is not None:
        email = email.lower()
        if not _EMAIL.match(email):
            errors.append(("customer_email", "is not a valid email address"))
    country = _text(raw, "country", errors, required=True, max_len=2)
    if country is not None and not _COUNTRY.match(country):
        errors.append(("country", "must be an ISO 3166-1 alpha-2 code such as SE"))
    record = {
        "serial_number": _code(raw, "serial_number", errors),
        "sku": sku,
        "purchase_date": _date(raw, "purchase_date", errors, ctx, required=True),
        "customer_email": email,
        "customer_name": _text(raw, "customer_name", errors, required=True, max_len=200),
        "customer_phone": _text(raw, "customer_phone", errors, required=False, max_len=40),
        "country": country.upper() if country else None,
        "order_ref": _text(raw, "order_ref", errors, required=False, max_len=100),
        "retailer": _text(raw, "retailer", errors, required=False, max_len=100),
    }
    return (None, errors) if errors else (record, errors)


@dataclass(frozen=True)
class KindRules:
    """How one CSV kind is read: its columns, natural key and row validator."""

    kind: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    key: tuple[str, ...]
    validate: Callable[[Mapping[str, str], ImportContext], tuple[dict | None, RowErrors]]

    def __post_init__(self) -> None:
        # A million rows look their key up several times each: keep the getter ready.
        getter = itemgetter(*self.key)
        key_of = (lambda record: (getter(record),)) if len(self.key) == 1 else getter
        object.__setattr__(self, "key_of", key_of)

    def key_of(self, record: Mapping[str, Any]) -> tuple:
        """The record's natural key, e.g. ``("PH-1", "SN-1")`` for a purchase."""
        return tuple(record[name] for name in self.key)


KINDS: dict[str, KindRules] = {
    "products": KindRules(
        "products",
        ("sku", "name", "category", "warranty_months"),
        ("extended_warranty_months", "exclusions", "labor_minutes", "released_on", "doa_days",
         "review_after_claims"),
        ("sku",),
        validate_product,
    ),
    "parts": KindRules(
        "parts", ("part_number", "description", "unit_cost"), (), ("part_number",), validate_part
    ),
    "bom": KindRules(
        "bom", ("sku", "part_number", "max_qty"), (), ("sku", "part_number"), validate_bom_line
    ),
    "purchases": KindRules(
        "purchases",
        ("serial_number", "sku", "purchase_date", "customer_email", "customer_name", "country"),
        ("order_ref", "retailer", "customer_phone"),
        ("sku", "serial_number"),
        validate_purchase,
    ),
}


def register_kind(rules: KindRules) -> None:
    """Let another domain add an import kind (its table is registered in catalog.importing)."""
    KINDS[rules.kind] = rules
