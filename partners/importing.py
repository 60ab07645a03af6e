"""CSV import kinds for partners and historic repair claims (through the catalog engine)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from flask import current_app
from sqlalchemy import select

from catalog.import_rules import (  # the shared row parsers
    ImportContext,
    KindRules,
    RowErrors,
    _code,
    _date,
    _int,
    _text,
    register_kind,
)
from catalog.importing import register_context, register_table
from common.extensions import db
from fraud.facts import CatalogFacts, derive
from partners.models import HistoricRepair, Partner

_PARTS = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._/-]*)\s*:\s*(\d{1,3})\s*$")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}
_BOOLEAN = _TRUE | _FALSE
_MEMO_LIMIT = 100_000  # distinct parts lists (and other field texts) remembered per import
# Texts the full rules would take as they are: a serial needing no trimming, an amount already
# in cents (so Decimal(text) is the value the rules would quantize it to).
_PLAIN_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")
_PLAIN_AMOUNT = re.compile(r"[0-9]{1,10}\.[0-9]{2}")


def validate_partner(raw: Mapping[str, str], ctx: ImportContext) -> tuple[dict | None, RowErrors]:
    errors: RowErrors = []
    country = _text(raw, "country", errors, required=True, max_len=2)
    if country is not None and not re.fullmatch(r"[A-Za-z]{2}", country):
        errors.append(("country", "must be an ISO 3166-1 alpha-2 code such as SE"))
    code = _code(raw, "code", errors)
    if code is not None and len(code) > 32:
        errors.append(("code", "is longer than 32 characters"))
    record = {
        "code": code,
        "name": _text(raw, "name", errors, required=True, max_len=200),
        "country": country.upper() if country else None,
        "contact_email": _text(raw, "contact_email", errors, required=False, max_len=254),
        "sla_days": _int(raw, "sla_days", errors, required=False, minimum=1, maximum=365) or 10,
    }
    return (None, errors) if errors else (record, errors)


def validate_repair(raw: Mapping[str, str], ctx: ImportContext) -> tuple[dict | None, RowErrors]:
    """A repair row as a record, or its errors; a history file repeats most of its values.

    Partner codes, SKUs, dates, DOA flags, labor minutes, diagnosis codes and parts lists come
    from a few thousand distinct texts: each text is checked once per import (by the full
    rules below) and remembered when valid, so a row made of known texts is a few dictionary
    lookups. Anything else, and every invalid row, goes through the full rules.
    """
    known = ctx.cache.get("repair_texts")
    if known is None:
        known = ctx.cache["repair_texts"] = _KnownTexts(ctx)
    record = known.record(raw)
    if record is not None:
        return record, []
    record, errors = _validate_repair(raw, ctx)
    if record is not None:
        known.learn(raw, record)
    return record, errors


class _KnownTexts:
    """Valid field texts seen in this import, each with the value the full rules made of it."""

    def __init__(self, ctx: ImportContext) -> None:
        self.dates = ctx.dates
        self.parts: dict[str, list[dict]] = ctx.cache.setdefault("parts", {})
        self.partners: dict[str, str] = {}
        self.skus: dict[str, str] = {}
        self.doa: dict[str, bool] = {}
        self.labor: dict[str, int] = {}
        self.diagnosis: dict[str, str | None] = {"": None}

    def record(self, raw: Mapping[str, str]) -> dict | None:
        """The record of a row made only of known texts (and a plain serial and amount), or
        None: then the full rules decide."""
        try:  # every required column is in every row the reader yields
            partner = self.partners[raw["partner_code"]]
            sku = self.skus[raw["sku"]]
            received = self.dates[raw["received_date"]]
            completed = self.dates[raw["completed_date"]]
            doa = self.doa[raw["doa"]]
            parts = self.parts[raw["parts"]]
            labor = self.labor[raw["labor_minutes"]]
            diagnosis = self.diagnosis[raw.get("diagnosis_code") or ""]
        except KeyError:
            return None
        serial, amount = raw["serial_number"], raw["claimed_amount"]
        if (completed < received or raw.get("rma_number") or not _PLAIN_SERIAL.fullmatch(serial)
                or not _PLAIN_AMOUNT.fullmatch(amount)):
            return None
        return {
            "partner_code": partner, "serial_number": serial.upper(), "sku": sku,
            "rma_number": None, "received_date": received, "completed_date": completed,
            "doa": doa, "parts": parts, "labor_minutes": labor,
            "claimed_amount": Decimal(amount), "diagnosis_code": diagnosis,
        }

    def learn(self, raw: Mapping[str, str], record: dict) -> None:
        """Remember the texts of a row the full rules accepted."""
        for memo, text, value in (
                (self.partners, raw["partner_code"], record["partner_code"]),
                (self.skus, raw["sku"], record["sku"]),
                (self.doa, raw["doa"], record["doa"]),
                (self.labor, raw["labor_minutes"], record["labor_minutes"]),
                (self.diagnosis, raw.get("diagnosis_code") or "", record["diagnosis_code"])):
            if len(memo) < _MEMO_LIMIT:
                memo[text] = value


def _validate_repair(raw: Mapping[str, str], ctx: ImportContext) -> tuple[dict | None, RowErrors]:
    errors: RowErrors = []
    partner = _code(raw, "partner_code", errors)
    if partner and partner not in ctx.extra.get("partner_codes", set()):
        errors.append(("partner_code", f"unknown partner {partner}; import partners first"))
    sku = _code(raw, "sku", errors)
    if sku and sku not in ctx.skus:
        errors.append(("sku", f"unknown SKU {sku}; import products first"))
    received = _date(raw, "received_date", errors, ctx, required=True)
    completed = _date(raw, "completed_date", errors, ctx, required=True)
    if received and completed and completed < received:
        errors.append(("completed_date", "is before received_date"))
    doa_raw = (raw.get("doa") or "").strip().lower()
    if doa_raw not in _BOOLEAN:
        errors.append(("doa", "must be true or false"))
    parts = _parts(raw.get("parts") or "", errors, ctx)
    amount = _amount(raw.get("claimed_amount"), errors)
    rma = (raw.get("rma_number") or "").strip().upper() or None
    diagnosis = _text(raw, "diagnosis_code", errors, required=False, max_len=40)
    record = {
        "partner_code": partner, "serial_number": _code(raw, "serial_number", errors), "sku": sku,
        "rma_number": rma[:16] if rma else None, "received_date": received,
        "completed_date": completed, "doa": doa_raw in _TRUE, "parts": parts,
        "labor_minutes": _int(raw, "labor_minutes", errors, required=True, minimum=0,
                              maximum=10_000),
        "claimed_amount": amount, "diagnosis_code": diagnosis or None,
    }
    return (None, errors) if errors else (record, errors)


def _parts(text: str, errors: RowErrors, ctx: ImportContext) -> list[dict]:
    """``PART:QTY;PART:QTY`` as part lines; the same text recurs, so valid ones are kept.

    Rows with the same text share one list: the import only reads it (derive, compare,
    serialize), and serializing a shared list once per chunk is much of the saving.
    """
    memo = ctx.cache.setdefault("parts", {})
    known = memo.get(text)
    if known is None:
        parsed = _parse_parts(text, errors, ctx.part_numbers)
        if parsed is None:
            return []
        known = [{"part_number": number, "quantity": quantity} for number, quantity in parsed]
        if len(memo) < _MEMO_LIMIT:
            memo[text] = known
    return known


def _parse_parts(text: str, errors: RowErrors,
                 part_numbers: set[str]) -> tuple[tuple[str, int], ...] | None:
    parts, valid = [], True
    for item in filter(None, (p.strip() for p in text.split(";"))):
        match = _PARTS.match(item)
        if not match or int(match.group(2)) < 1:
            errors.append(("parts", f"{item[:30]!r} is not PART:QTY"))
            valid = False
            continue
        number = match.group(1).upper()
        if number not in part_numbers:
            errors.append(("parts", f"unknown part {number}"))
            valid = False
            continue
        parts.append((number, int(match.group(2))))
    return tuple(parts) if valid else None


def _amount(value: str | None, errors: RowErrors) -> Decimal | None:
    text = (value or "").strip()
    if not text:
        errors.append(("claimed_amount", "is required"))
        return None
    try:
        amount = Decimal(text)
        if not amount.is_finite() or amount < 0 or amount > Decimal("9999999999.99"):
            raise InvalidOperation
    except InvalidOperation:
        errors.append(("claimed_amount", f"must be a non-negative amount, got {text[:20]!r}"))
        return None
    return amount.quantize(Decimal("0.01"))


def _derive_facts(rows: list[dict], ctx: ImportContext) -> None:
    """Complete new rows with what fraud scoring counts (unregistered serials are kept)."""
    catalog = ctx.cache.get("catalog_facts")
    if catalog is None:  # read once per import, not once per chunk
        catalog = ctx.cache["catalog_facts"] = CatalogFacts(
            current_app.config["DOA_REPLACEMENT_DAYS"])
    derive(rows, catalog)


register_kind(KindRules("partners", ("code", "name", "country"), ("contact_email", "sla_days"),
                        ("code",), validate_partner))
register_kind(KindRules(
    "repairs",
    ("partner_code", "serial_number", "sku", "received_date", "completed_date", "doa", "parts",
     "labor_minutes", "claimed_amount"),
    ("rma_number", "diagnosis_code"),
    ("partner_code", "serial_number", "received_date"),
    validate_repair,
))
register_table("partners", Partner.__table__, "partner")
register_table("repairs", HistoricRepair.__table__, "historic_repair", enrich=_derive_facts)
register_context("partner_codes", lambda: set(db.session.scalars(select(Partner.code))))
