"""Row rules of the CSV imports as pure functions: plain dicts in, record or errors out."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from catalog.faults import FAULT_CATEGORIES
from catalog.import_rules import (
    EARLIEST_DATE,
    KINDS,
    ImportContext,
    validate_bom_line,
    validate_part,
    validate_product,
    validate_purchase,
)

TODAY = date(2025, 6, 1)
CTX = ImportContext(today=TODAY, skus={"PH-1", "TB-1"}, part_numbers={"MB-1", "BAT-1"})

PURCHASE = {
    "serial_number": "SN-1",
    "sku": "PH-1",
    "purchase_date": "2025-01-15",
    "customer_email": "ann@example.com",
    "customer_name": "Ann Example",
    "country": "SE",
}
PRODUCT = {"sku": "PH-1", "name": "Phone", "category": "phone", "warranty_months": "24"}
PART = {"part_number": "MB-1", "description": "Main board", "unit_cost": "120.00"}
BOM = {"sku": "PH-1", "part_number": "MB-1", "max_qty": "1"}


def fields_of(errors: list[tuple[str, str]]) -> list[str]:
    return [name for name, _ in errors]


def assert_one_error(errors: list[tuple[str, str]], name: str, reason: str) -> None:
    """Exactly one error, on ``name``, whose message contains ``reason``."""
    [(field, message)] = errors
    assert field == name
    assert reason in message


# Purchases --------------------------------------------------------------------------------


def test_a_valid_purchase_becomes_a_record():
    record, errors = validate_purchase(PURCHASE, CTX)

    assert errors == []
    assert record == {
        "serial_number": "SN-1",
        "sku": "PH-1",
        "purchase_date": date(2025, 1, 15),
        "customer_email": "ann@example.com",
        "customer_name": "Ann Example",
        "customer_phone": None,
        "country": "SE",
        "order_ref": None,
        "retailer": None,
    }


@pytest.mark.parametrize(
    ("name", "raw", "stored"),
    [
        ("serial_number", " sn-abc.1/x_2 ", "SN-ABC.1/X_2"),
        ("sku", "ph-1", "PH-1"),
        ("customer_email", " Ann.Example@Example.COM ", "ann.example@example.com"),
        ("country", "se", "SE"),
        ("customer_name", "  Ann  Example ", "Ann  Example"),
        ("purchase_date", " 2025-06-01 ", TODAY),
        ("purchase_date", EARLIEST_DATE.isoformat(), EARLIEST_DATE),
        ("customer_phone", "+46 70 123", "+46 70 123"),
        ("order_ref", "ORD-1", "ORD-1"),
        ("retailer", "  ", None),
        ("customer_name", "Robert'); DROP TABLE purchases;--", "Robert'); DROP TABLE purchases;--"),
        ("customer_name", "<script>alert(1)</script>", "<script>alert(1)</script>"),
    ],
)
def test_purchase_values_are_normalised(name, raw, stored):
    record, errors = validate_purchase({**PURCHASE, name: raw}, CTX)

    assert errors == []
    assert record[name] == stored


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("serial_number", "", "is required"),
        ("serial_number", "SN 1", "may contain only letters, digits and . _ / -"),
        ("serial_number", "-SN1", "may contain only"),
        ("serial_number", "S" * 65, "is longer than 64 characters"),
        ("sku", "XX-9", "unknown SKU XX-9; import products first"),
        ("sku", "", "is required"),
        ("purchase_date", "", "is required"),
        ("purchase_date", "2025-02-30", "must be an ISO 8601 date (YYYY-MM-DD), got '2025-02-30'"),
        ("purchase_date", "15/01/2025", "must be an ISO 8601 date"),
        ("purchase_date", "20250115", "must be an ISO 8601 date (YYYY-MM-DD)"),
        ("purchase_date", "2025-W03-3", "must be an ISO 8601 date (YYYY-MM-DD)"),
        ("purchase_date", "2025-06-02", "is in the future"),
        ("purchase_date", "1989-12-31", "is before 1990-01-01"),
        ("customer_email", "", "is required"),
        ("customer_email", "ann.example.com", "is not a valid email address"),
        ("customer_email", "ann@example", "is not a valid email address"),
        ("customer_email", "ann@@example.com", "is not a valid email address"),
        ("customer_email", "ann smith@example.com", "is not a valid email address"),
        ("customer_email", "a,b@example.com", "is not a valid email address"),
        ("customer_email", "a" * 250 + "@x.se", "is longer than 254 characters"),
        ("customer_name", "", "is required"),
        ("customer_name", "   ", "is required"),
        ("customer_name", "A" * 201, "is longer than 200 characters"),
        ("country", "", "is required"),
        ("country", "S", "must be an ISO 3166-1 alpha-2 code such as SE"),
        ("country", "S1", "must be an ISO 3166-1 alpha-2 code"),
        ("country", "SWE", "is longer than 2 characters"),
        ("customer_phone", "1" * 41, "is longer than 40 characters"),
        ("order_ref", "R" * 101, "is longer than 100 characters"),
    ],
)
def test_an_invalid_purchase_value_is_reported_on_its_field(name, raw, reason):
    record, errors = validate_purchase({**PURCHASE, name: raw}, CTX)

    assert record is None
    assert_one_error(errors, name, reason)


def test_a_missing_purchase_column_counts_as_an_empty_value():
    raw = {key: value for key, value in PURCHASE.items() if key != "country"}

    record, errors = validate_purchase(raw, CTX)

    assert (record, errors) == (None, [("country", "is required")])


def test_every_invalid_purchase_field_is_reported():
    raw = {**PURCHASE, "sku": "XX-9", "customer_email": "nobody", "purchase_date": "soon"}

    _, errors = validate_purchase(raw, CTX)

    assert sorted(fields_of(errors)) == ["customer_email", "purchase_date", "sku"]


# Parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "stored"),
    [
        ("120", Decimal("120.00")),
        ("20.5", Decimal("20.50")),
        ("0", Decimal("0.00")),
        (" 7.10 ", Decimal("7.10")),
        ("1.230", Decimal("1.23")),
        ("9999999999.99", Decimal("9999999999.99")),
    ],
)
def test_unit_costs_are_kept_to_the_cent(cost, stored):
    record, errors = validate_part({**PART, "unit_cost": cost}, CTX)

    assert errors == []
    assert record["unit_cost"] == stored
    assert record["unit_cost"].as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("cost", "reason"),
    [
        ("", "is required"),
        ("-0.01", "must be a non-negative amount, got '-0.01'"),
        ("-5", "must be a non-negative amount"),
        ("12.345", "has more than 2 decimals"),
        ("0.001", "has more than 2 decimals"),
        ("twelve", "must be a non-negative amount"),
        ("12,50", "must be a non-negative amount"),
        ("NaN", "must be a non-negative amount"),
        ("Infinity", "must be a non-negative amount"),
        ("10000000000", "must be a non-negative amount"),
    ],
)
def test_an_invalid_unit_cost_is_rejected(cost, reason):
    record, errors = validate_part({**PART, "unit_cost": cost}, CTX)

    assert record is None
    assert_one_error(errors, "unit_cost", reason)


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("part_number", "", "is required"),
        ("part_number", "MB 1", "may contain only letters, digits and . _ / -"),
        ("description", "", "is required"),
        ("description", "d" * 256, "is longer than 255 characters"),
    ],
)
def test_an_invalid_part_value_is_reported_on_its_field(name, raw, reason):
    record, errors = validate_part({**PART, name: raw}, CTX)

    assert record is None
    assert_one_error(errors, name, reason)


# Products ---------------------------------------------------------------------------------


def test_a_product_without_optional_values_gets_the_defaults():
    record, errors = validate_product(PRODUCT, CTX)

    assert errors == []
    assert record == {
        "sku": "PH-1",
        "name": "Phone",
        "category": "phone",
        "warranty_months": 24,
        "extended_warranty_months": 0,
        "exclusions": [],
        "labor_minutes": None,
        "released_on": None,
        "doa_days": None,
        "review_after_claims": None,
    }


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("water_damage", ["water_damage"]),
        ("water_damage;physical_damage", ["physical_damage", "water_damage"]),
        (" Water_Damage ; audio ;; audio", ["audio", "water_damage"]),
        (";", []),
        (";".join(FAULT_CATEGORIES), sorted(FAULT_CATEGORIES)),
    ],
)
def test_exclusions_are_a_sorted_set_of_fault_categories(raw, stored):
    record, errors = validate_product({**PRODUCT, "exclusions": raw}, CTX)

    assert errors == []
    assert record["exclusions"] == stored


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("exclusions", "water_damage;dropped", "unknown fault categories: dropped"),
        ("exclusions", "lost, stolen", "unknown fault categories: lost, stolen"),
        ("sku", "", "is required"),
        ("name", "", "is required"),
        ("name", "n" * 201, "is longer than 200 characters"),
        ("category", "", "is required"),
        ("warranty_months", "", "is required"),
        ("warranty_months", "two", "must be a whole number, got 'two'"),
        ("warranty_months", "12.5", "must be a whole number"),
        ("warranty_months", "1_2", "must be a whole number"),
        ("labor_minutes", "99999999999999999999", "must be a whole number"),
        ("warranty_months", "-1", "must be between 0 and 240"),
        ("warranty_months", "241", "must be between 0 and 240"),
        ("extended_warranty_months", "300", "must be between 0 and 240"),
        ("labor_minutes", "10001", "must be between 0 and 10000"),
        ("released_on", "2025-13-01", "must be an ISO 8601 date"),
        ("released_on", "2030-01-01", "is in the future"),
    ],
)
def test_an_invalid_product_value_is_reported_on_its_field(name, raw, reason):
    record, errors = validate_product({**PRODUCT, name: raw}, CTX)

    assert record is None
    assert_one_error(errors, name, reason)


@pytest.mark.parametrize(
    ("name", "raw", "stored"),
    [
        ("warranty_months", "0", 0),
        ("warranty_months", " 240 ", 240),
        ("extended_warranty_months", "12", 12),
        ("labor_minutes", "0", 0),
        ("released_on", "2024-03-01", date(2024, 3, 1)),
    ],
)
def test_product_numbers_and_dates_are_parsed(name, raw, stored):
    record, errors = validate_product({**PRODUCT, name: raw}, CTX)

    assert errors == []
    assert record[name] == stored


# Bills of materials -----------------------------------------------------------------------


def test_a_bom_line_for_a_known_product_and_part_becomes_a_record():
    record, errors = validate_bom_line({"sku": "ph-1", "part_number": "mb-1", "max_qty": "2"}, CTX)

    assert errors == []
    assert record == {"sku": "PH-1", "part_number": "MB-1", "max_qty": 2}


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("sku", "XX-9", "unknown SKU XX-9; import products first"),
        ("part_number", "NOPE-1", "unknown part NOPE-1; import parts first"),
        ("part_number", "", "is required"),
        ("max_qty", "0", "must be between 1 and 1000"),
        ("max_qty", "1001", "must be between 1 and 1000"),
        ("max_qty", "", "is required"),
    ],
)
def test_an_invalid_bom_line_is_reported_on_its_field(name, raw, reason):
    record, errors = validate_bom_line({**BOM, name: raw}, CTX)

    assert record is None
    assert_one_error(errors, name, reason)


# Kinds ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "record", "key"),
    [
        ("products", {"sku": "PH-1"}, ("PH-1",)),
        ("parts", {"part_number": "MB-1"}, ("MB-1",)),
        ("bom", {"sku": "PH-1", "part_number": "MB-1"}, ("PH-1", "MB-1")),
        ("purchases", {"serial_number": "SN-1", "sku": "PH-1"}, ("PH-1", "SN-1")),
    ],
)
def test_each_kind_has_a_natural_key(kind, record, key):
    assert KINDS[kind].key_of(record) == key


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kinds_key_columns_are_required(kind):
    rules = KINDS[kind]

    assert set(rules.key) <= set(rules.required)
    assert not set(rules.required) & set(rules.optional)


def test_dates_remembered_within_an_import_give_the_same_results():
    ctx = ImportContext(today=TODAY, skus={"PH-1"})
    future = {**PURCHASE, "purchase_date": "2025-06-02"}

    first, _ = validate_purchase(PURCHASE, ctx)
    again, _ = validate_purchase(PURCHASE, ctx)
    _, errors = validate_purchase(future, ctx)
    _, errors_again = validate_purchase(future, ctx)

    assert first["purchase_date"] == again["purchase_date"] == date(2025, 1, 15)
    assert errors == errors_again == [("purchase_date", "is in the future")]
