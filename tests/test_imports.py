"""CSV imports end to end: the engine, the service, the API and the CLI on a real database."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from catalog import importing
from catalog.errors import ImportRejected
from catalog.importing import ImportFileError, ImportReport, run_import
from catalog.models import BomLine, ImportRun, Part, Product, Purchase
from catalog.service import import_csv
from common.extensions import db
from tests.factories import (
    PURCHASE_HEADER,
    TEST_ACTOR,
    bearer,
    csv_bytes,
    load_catalog,
    partner_key,
    purchase_row,
    staff_token,
)

PRODUCT_HEADER = (
    "sku,name,category,warranty_months,extended_warranty_months,exclusions,labor_minutes,"
    "released_on"
)
PART_HEADER = "part_number,description,unit_cost"
BOM_HEADER = "sku,part_number,max_qty"


def import_rows(kind: str, header: str, *rows: str) -> ImportReport:
    return run_import(kind, csv_bytes(header, *rows), actor=TEST_ACTOR)


def import_purchases(*rows: str) -> ImportReport:
    return import_rows("purchases", PURCHASE_HEADER, *rows)


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def counts(report: ImportReport) -> dict[str, int]:
    return {
        name: getattr(report, name)
        for name in ("rows", "inserted", "updated", "unchanged", "rejected")
    }


def errors_of(report: ImportReport) -> list[tuple[int, str, str]]:
    return [(error.row, error.field, error.reason) for error in report.errors]


def purchase(serial: str, sku: str = "PH-1") -> Purchase:
    return db.session.scalars(
        select(Purchase).where(Purchase.sku == sku, Purchase.serial_number == serial)
    ).one()


def audit_events(action: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by("seq"))
    )


def in_days(days: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=days)


# Each kind with a valid file (and what must exist before it) -------------------------------

PRODUCTS_FILE = (
    PRODUCT_HEADER,
    "PH-1,Phone One,phone,24,12,water_damage;physical_damage,45,2024-03-01",
    "TB-1,Tablet One,tablet,12,,,,",
    "EB-1,Earbuds,audio,6,0,water_damage,,2023-11-30",
)
PARTS_FILE = (PART_HEADER, "MB-1,Main board,120.00", "BAT-1,Battery,20.5", "SCR-1,Screen,60")
BOM_FILE = (BOM_HEADER, "PH-1,MB-1,1", "PH-1,BAT-1,2", "TB-1,SCR-1,1")
PURCHASES_FILE = (
    PURCHASE_HEADER,
    purchase_row("SN-1"),
    purchase_row("SN-2", sku="TB-1"),
    purchase_row("SN-3", email="bo@example.com"),
)
KIND_FILES = {
    "products": (PRODUCTS_FILE, Product),
    "parts": (PARTS_FILE, Part),
    "bom": (BOM_FILE, BomLine),
    "purchases": (PURCHASES_FILE, Purchase),
}


def prepare(kind: str) -> None:
    """Load what the kind's rows refer to: products and parts for bom, the catalog for purchases."""
    if kind == "bom":
        import_rows("products", *PRODUCTS_FILE)
        import_rows("parts", *PARTS_FILE)
    elif kind == "purchases":
        load_catalog()


def import_file(kind: str) -> ImportReport:
    file, _ = KIND_FILES[kind]
    return import_rows(kind, *file)


@pytest.mark.parametrize("kind", list(KIND_FILES))
def test_each_kind_imports_its_valid_rows(app, kind):
    prepare(kind)
    _, model = KIND_FILES[kind]
    before = count(model)

    report = import_file(kind)

    assert counts(report) == {"rows": 3, "inserted": 3, "updated": 0, "unchanged": 0, "rejected": 0}
    assert report.errors == []
    assert report.exit_code == 0
    assert count(model) == before + 3


def test_imported_products_carry_their_warranty_terms(app):
    import_rows("products", *PRODUCTS_FILE)

    phone = db.session.scalars(select(Product).where(Product.sku == "PH-1")).one()
    tablet = db.session.scalars(select(Product).where(Product.sku == "TB-1")).one()
    assert (phone.name, phone.category, phone.warranty_months) == ("Phone One", "phone", 24)
    assert phone.extended_warranty_months == 12
    assert phone.exclusions == ["physical_damage", "water_damage"]
    assert (phone.labor_minutes, phone.released_on) == (45, date(2024, 3, 1))
    assert tablet.extended_warranty_months == 0
    assert (tablet.exclusions, tablet.labor_minutes, tablet.released_on) == ([], None, None)


def test_imported_part_costs_are_kept_to_the_cent(app):
    import_rows("parts", *PARTS_FILE)

    costs = {part.part_number: part.unit_cost for part in db.session.scalars(select(Part))}
    assert costs == {"MB-1": Decimal("120.00"), "BAT-1": Decimal("20.50"), "SCR-1": Decimal("60")}


def test_imported_bom_lines_link_products_to_parts(app):
    prepare("bom")
    import_rows("bom", *BOM_FILE)

    lines = db.session.execute(
        select(BomLine.sku, BomLine.part_number, BomLine.max_qty).order_by(BomLine.part_number)
    )
    assert [tuple(line) for line in lines] == [
        ("PH-1", "BAT-1", 2),
        ("PH-1", "MB-1", 1),
        ("TB-1", "SCR-1", 1),
    ]


def test_imported_purchases_are_registered_with_the_import_id(app):
    load_catalog()

    report = import_purchases(purchase_row("SN-1", bought=date(2024, 6, 30)))

    row = purchase("SN-1")
    assert (row.sku, row.purchase_date, row.customer_email) == (
        "PH-1",
        date(2024, 6, 30),
        "ann@example.com",
    )
    assert (row.customer_name, row.country, row.customer_phone) == ("Ann Example", "SE", None)
    assert row.import_id == report.import_id


def test_optional_purchase_columns_are_imported(app):
    load_catalog()

    import_rows(
        "purchases",
        PURCHASE_HEADER + ",order_ref,retailer,customer_phone",
        purchase_row("SN-1") + ",ORD-77,Elgiganten,+46 70 123 45 67",
    )

    row = purchase("SN-1")
    assert (row.order_ref, row.retailer, row.customer_phone) == (
        "ORD-77",
        "Elgiganten",
        "+46 70 123 45 67",
    )


def test_header_columns_may_come_in_any_order_and_case(app):
    load_catalog()

    report = import_rows(
        "purchases",
        " Country ,SKU,serial_number,Purchase_Date,customer_name,customer_email",
        "SE,PH-1,SN-1,2025-01-15,Ann Example,ann@example.com",
    )

    assert report.inserted == 1
    assert purchase("SN-1").country == "SE"


def test_a_byte_order_mark_before_the_header_is_ignored(app):
    load_catalog()
    body = ("\ufeff" + PURCHASE_HEADER + "\r\n" + purchase_row("SN-1") + "\r\n").encode()

    report = run_import("purchases", io.BytesIO(body), actor=TEST_ACTOR)

    assert (report.inserted, report.rejected) == (1, 0)


# Idempotency ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KIND_FILES))
def test_reimporting_the_same_file_changes_nothing(app, kind):
    prepare(kind)
    _, model = KIND_FILES[kind]
    import_file(kind)
    rows_after_first = count(model)
    events_after_first = count(AuditEvent)

    report = import_file(kind)

    assert counts(report) == {"rows": 3, "inserted": 0, "updated": 0, "unchanged": 3, "rejected": 0}
    assert count(model) == rows_after_first
    # Only the import's own summary event is new: no row was touched.
    assert count(AuditEvent) == events_after_first + 1


def test_a_changed_purchase_is_updated_and_audited_with_before_and_after(app):
    load_catalog()
    import_purchases(purchase_row("SN-1"), purchase_row("SN-2"))
    created_at = purchase("SN-1").created_at

    report = import_purchases(
        purchase_row("SN-1", email="new@example.com", bought=date(2025, 1, 16)),
        purchase_row("SN-2"),
    )

    assert counts(report) == {"rows": 2, "inserted": 0, "updated": 1, "unchanged": 1, "rejected": 0}
    db.session.expire_all()
    row = purchase("SN-1")
    assert (row.customer_email, row.purchase_date) == ("new@example.com", date(2025, 1, 16))
    assert row.created_at == created_at
    assert row.updated_at > created_at
    [event] = audit_events("purchase.updated")
    assert (event.entity_type, event.entity_id) == ("purchase", "PH-1/SN-1")
    assert event.data == {
        "customer_email": {"before": "ann@example.com", "after": "new@example.com"},
        "purchase_date": {"before": "2025-01-15", "after": "2025-01-16"},
    }
    assert report.import_id in event.reason
    assert "row 2" in event.reason


@pytest.mark.parametrize(
    ("kind", "header", "first", "changed", "action", "entity_id", "data"),
    [
        (
            "products",
            "sku,name,category,warranty_months,exclusions",
            "PH-1,Phone,phone,24,water_damage",
            "PH-1,Phone,phone,36,water_damage;audio",
            "product.updated",
            "PH-1",
            {
                "warranty_months": {"before": 24, "after": 36},
                "exclusions": {"before": ["water_damage"], "after": ["audio", "water_damage"]},
            },
        ),
        (
            "parts",
            PART_HEADER,
            "MB-1,Main board,120.00",
            "MB-1,Main board,99.5",
            "part.updated",
            "MB-1",
            {"unit_cost": {"before": "120.00", "after": "99.50"}},
        ),
    ],
)
def test_changed_catalog_rows_are_updated_and_audited(
    app, kind, header, first, changed, action, entity_id, data
):
    import_rows(kind, header, first)

    report = import_rows(kind, header, changed)

    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 0)
    [event] = audit_events(action)
    assert event.entity_id == entity_id
    assert event.data == data


def test_a_changed_bom_line_is_updated(app):
    prepare("bom")
    import_rows("bom", BOM_HEADER, "PH-1,MB-1,1")

    report = import_rows("bom", BOM_HEADER, "PH-1,MB-1,3")

    assert (report.inserted, report.updated) == (0, 1)
    db.session.expire_all()
    assert db.session.scalar(select(BomLine.max_qty).where(BomLine.sku == "PH-1")) == 3
    [event] = audit_events("bom_line.updated")
    assert event.entity_id == "PH-1/MB-1"
    assert event.data == {"max_qty": {"before": 1, "after": 3}}


def test_exclusions_in_another_order_are_unchanged(app):
    header = "sku,name,category,warranty_months,exclusions"
    import_rows("products", header, "PH-1,Phone,phone,24,water_damage;audio")

    report = import_rows("products", header, "PH-1,Phone,phone,24, Audio ; water_damage")

    assert (report.updated, report.unchanged) == (0, 1)


def test_files_larger_than_one_chunk_are_imported_and_reimported(app, monkeypatch):
    monkeypatch.setattr(importing, "CHUNK_ROWS", 3)
    load_catalog()
    rows = [purchase_row(f"SN-{n}") for n in range(10)]

    first = import_purchases(*rows, purchase_row("SN-1"))
    second = import_purchases(*rows)

    assert (first.inserted, first.rejected) == (10, 1)
    assert errors_of(first) == [(12, "serial_number", "duplicate of row 3 in this file")]
    assert (second.inserted, second.unchanged) == (0, 10)
    assert count(Purchase) == 10


def test_a_row_another_import_inserted_meanwhile_is_treated_as_existing(app, monkeypatch):
    load_catalog()
    prepare_insert = importing._prepare_insert
    raced: list[dict] = []

    def racing_prepare(table, rules, rows, extra=None, **options):
        # Another import commits SN-1 after this one looked for existing keys.
        if rows and not raced:
            raced.append(dict(rows[0], customer_email="old@example.com"))
            with db.engine.begin() as other:
                other.execute(table.insert(), raced)
        return prepare_insert(table, rules, rows, extra, **options)

    monkeypatch.setattr(importing, "_prepare_insert", racing_prepare)

    report = import_purchases(purchase_row("SN-1"), purchase_row("SN-2"))

    assert (report.inserted, report.updated, report.unchanged) == (1, 1, 0)
    assert count(Purchase) == 2
    db.session.expire_all()
    assert purchase("SN-1").customer_email == "ann@example.com"
    [event] = audit_events("purchase.updated")
    assert event.data == {
        "customer_email": {"before": "old@example.com", "after": "ann@example.com"}
    }


def test_a_chunk_some_of_whose_keys_another_import_took_counts_each_row_once(app, monkeypatch):
    # Rows out of key order, chunks of 4 inserted while the next chunk is read, and in the
    # second chunk two keys (not the first ones in key order) taken by another import (which
    # SQLite lets commit once this one has committed its first chunk).
    monkeypatch.setattr(importing, "CHUNK_ROWS", 4)
    monkeypatch.setattr(importing, "COMMIT_ROWS", 4)
    load_catalog()
    prepare_insert = importing._prepare_insert
    calls: list[int] = []

    def racing_prepare(table, rules, rows, extra=None, **options):
        calls.append(len(rows))
        if len(calls) == 2:
            taken = [dict(row, customer_email="old@example.com") for row in rows
                     if row["serial_number"] in ("SN-5", "SN-7")]
            with db.engine.begin() as other:
                other.execute(table.insert(), taken)
        return prepare_insert(table, rules, rows, extra, **options)

    monkeypatch.setattr(importing, "_prepare_insert", racing_prepare)
    serials = ["SN-9", "SN-1", "SN-3", "SN-2", "SN-7", "SN-4", "SN-6", "SN-5", "SN-8"]

    report = import_purchases(*(purchase_row(serial) for serial in serials))

    assert counts(report) == {"rows": 9, "inserted": 7, "updated": 2, "unchanged": 0,
                              "rejected": 0}
    db.session.expire_all()
    assert {p.serial_number: p.customer_email for p in db.session.scalars(select(Purchase))} == {
        serial: "ann@example.com" for serial in serials}
    assert sorted(event.entity_id for event in audit_events("purchase.updated")) == [
        "PH-1/SN-5", "PH-1/SN-7"]


def test_an_insert_that_fails_rolls_its_chunk_back_and_is_audited(app, monkeypatch):
    monkeypatch.setattr(importing, "CHUNK_ROWS", 2)
    load_catalog()
    prepare_insert = importing._prepare_insert
    calls: list[int] = []

    def failing_prepare(table, rules, rows, extra=None, **options):
        insert = prepare_insert(table, rules, rows, extra, **options)
        calls.append(len(rows))
        if len(calls) < 2:
            return insert

        def fail() -> set:
            raise RuntimeError("the database went away")

        return fail

    monkeypatch.setattr(importing, "_prepare_insert", failing_prepare)

    with pytest.raises(RuntimeError, match="went away"):
        import_purchases(*(purchase_row(f"SN-{n}") for n in range(5)))

    assert count(Purchase) == 0  # the first chunk was not committed either
    [run] = db.session.scalars(select(ImportRun).where(ImportRun.kind == "purchases"))
    assert run.finished_at is not None
    [event] = audit_events("purchases.import_failed")
    assert event.reason == "the database went away"
    assert gc.isenabled()


def test_the_garbage_collector_is_paused_only_while_rows_are_imported(app, monkeypatch):
    load_catalog()
    rules = importing.KINDS["purchases"]
    during: list[bool] = []

    def watching(raw, ctx):
        during.append(gc.isenabled())
        return rules.validate(raw, ctx)

    monkeypatch.setitem(importing.KINDS, "purchases", dataclasses.replace(rules, validate=watching))
    gc.disable()
    try:
        import_purchases(purchase_row("SN-1"))
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
    import_purchases(purchase_row("SN-2"))

    assert during == [False, False] and gc.isenabled()


def test_shared_json_values_are_serialized_once_and_by_identity():
    texts = importing._JsonTexts()
    serialized: list[object] = []

    def serialize(value):
        serialized.append(value)
        return repr(value)

    convert = texts.wrap(serialize)
    shared, equal = [1, 2], [1, 2]

    assert [convert(shared), convert(shared), convert(equal), convert([3])] == [
        "[1, 2]", "[1, 2]", "[1, 2]", "[3]"]
    assert len(serialized) == 3  # the same object once; an equal one is another object


# Row-level errors -------------------------------------------------------------------------

VALID = purchase_row("SN-OK")


@pytest.mark.parametrize(
    ("bad_row", "field", "reason"),
    [
        (purchase_row("SN-2", sku="XX-9"), "sku", "unknown SKU XX-9; import products first"),
        ("SN-2,PH-1,2025-13-01,ann@example.com,Ann,SE", "purchase_date", "ISO 8601 date"),
        ("SN-2,PH-1,15/01/2025,ann@example.com,Ann,SE", "purchase_date", "ISO 8601 date"),
        (purchase_row("SN-2", bought=in_days(2)), "purchase_date", "is in the future"),
        (purchase_row("SN-2", bought=date(1989, 12, 31)), "purchase_date", "is before 1990"),
        (purchase_row("SN-2", email="ann.example.com"), "customer_email", "not a valid email"),
        (purchase_row("SN-2", email="ann@example"), "customer_email", "not a valid email"),
        ("SN-2,PH-1,2025-01-15,ann@example.com,Ann,S1", "country", "ISO 3166-1 alpha-2"),
        ("SN-2,PH-1,2025-01-15,ann@example.com,Ann,Sweden", "country", "longer than 2"),
        ("SN-2,PH-1,2025-01-15,ann@example.com,,SE", "customer_name", "is required"),
        ("SN-2,PH-1,2025-01-15,ann@example.com,   ,SE", "customer_name", "is required"),
        (",PH-1,2025-01-15,ann@example.com,Ann,SE", "serial_number", "is required"),
        ("SN 2,PH-1,2025-01-15,ann@example.com,Ann,SE", "serial_number", "may contain only"),
        ("SN-2,PH-1,2025-01-15,ann@example.com,Ann", "row", "has 5 fields, the header has 6"),
        ("SN-2,PH-1,2025-01-15,ann@example.com,Ann,SE,x", "row", "has 7 fields"),
    ],
)
def test_an_invalid_purchase_row_is_reported_and_the_valid_rows_kept(app, bad_row, field, reason):
    load_catalog()

    report = import_purchases(VALID, bad_row, purchase_row("SN-LAST"))

    assert counts(report) == {"rows": 3, "inserted": 2, "updated": 0, "unchanged": 0, "rejected": 1}
    [(row, error_field, error_reason)] = errors_of(report)
    assert (row, error_field) == (3, field)
    assert reason in error_reason
    assert report.exit_code == 1
    assert {p.serial_number for p in db.session.scalars(select(Purchase))} == {"SN-OK", "SN-LAST"}


def test_every_invalid_field_of_a_row_is_reported(app):
    load_catalog()

    report = import_purchases(VALID, "SN 2,XX-9,tomorrow,nobody,Ann,S")

    assert {(row, field) for row, field, _ in errors_of(report)} == {
        (3, "serial_number"),
        (3, "sku"),
        (3, "purchase_date"),
        (3, "customer_email"),
        (3, "country"),
    }
    assert report.rejected == 1


def test_a_serial_repeated_in_the_file_is_rejected_after_its_first_row(app):
    load_catalog()

    report = import_purchases(
        purchase_row("SN-1"),
        purchase_row("SN-2"),
        purchase_row("sn-1", email="other@example.com"),
        purchase_row("SN-1", sku="TB-1"),
    )

    assert errors_of(report) == [(4, "serial_number", "duplicate of row 2 in this file")]
    assert (report.inserted, report.rejected) == (3, 1)
    assert purchase("SN-1").customer_email == "ann@example.com"
    assert purchase("SN-1", sku="TB-1").sku == "TB-1"


def test_invalid_utf8_in_one_row_rejects_only_that_row(app):
    load_catalog()
    body = (
        (PURCHASE_HEADER + "\n" + purchase_row("SN-1") + "\n").encode()
        + b"SN-2,PH-1,2025-01-15,ann@example.com,Ann \xff\xfe Example,SE\n"
        + (purchase_row("SN-3", email="j\u00f6rg@example.com") + "\n").encode()
    )

    report = run_import("purchases", io.BytesIO(body), actor=TEST_ACTOR)

    assert errors_of(report) == [(3, "customer_name", "is not valid UTF-8")]
    assert (report.inserted, report.rejected) == (2, 1)
    assert purchase("SN-3").customer_email == "j\u00f6rg@example.com"


def test_a_nul_byte_in_a_row_rejects_that_row(app):
    load_catalog()

    report = import_purchases(VALID, "SN-2,PH-1,2025-01-15,ann@example.com,Ann\x00,SE")

    assert errors_of(report) == [(3, "customer_name", "is not valid UTF-8")]


def test_a_quoted_field_may_hold_commas_and_line_breaks(app):
    load_catalog()

    report = import_purchases(
        'SN-1,PH-1,2025-01-15,ann@example.com,"Example, Ann\nsecond line",SE',
        purchase_row("SN-2", sku="XX-9"),
    )

    assert purchase("SN-1").customer_name == "Example, Ann\nsecond line"
    # Rows are CSV records: the quoted line break does not shift the next row's number.
    assert [(row, field) for row, field, _ in errors_of(report)] == [(3, "sku")]


def test_blank_lines_are_skipped_but_keep_their_row_numbers(app):
    load_catalog()

    report = import_purchases(VALID, "", purchase_row("SN-2", sku="XX-9"))

    assert report.rows == 2
    assert [(row, field) for row, field, _ in errors_of(report)] == [(4, "sku")]


@pytest.mark.parametrize(
    ("cost", "reason"),
    [
        ("-0.01", "must be a non-negative amount"),
        ("12.345", "has more than 2 decimals"),
        ("twelve", "must be a non-negative amount"),
        ("NaN", "must be a non-negative amount"),
        ("", "is required"),
    ],
)
def test_an_invalid_unit_cost_rejects_the_part(app, cost, reason):
    report = import_rows("parts", PART_HEADER, "MB-1,Main board,120", f"BAT-1,Battery,{cost}")

    [(row, field, error)] = errors_of(report)
    assert (row, field) == (3, "unit_cost")
    assert reason in error
    assert list(db.session.scalars(select(Part.part_number))) == ["MB-1"]


def test_an_unknown_exclusion_category_rejects_the_product(app):
    report = import_rows(
        "products",
        "sku,name,category,warranty_months,exclusions",
        "PH-1,Phone,phone,24,water_damage",
        "TB-1,Tablet,tablet,12,water_damage;dropped;lost",
    )

    assert errors_of(report) == [(3, "exclusions", "unknown fault categories: dropped, lost")]
    assert list(db.session.scalars(select(Product.sku))) == ["PH-1"]


def test_a_bom_line_for_an_unknown_part_or_product_is_rejected(app):
    prepare("bom")

    report = import_rows(
        "bom", BOM_HEADER, "PH-1,MB-1,1", "PH-1,NOPE-1,1", "XX-9,MB-1,1", "TB-1,SCR-1,0"
    )

    assert errors_of(report) == [
        (3, "part_number", "unknown part NOPE-1; import parts first"),
        (4, "sku", "unknown SKU XX-9; import products first"),
        (5, "max_qty", "must be between 1 and 1000"),
    ]
    assert count(BomLine) == 1


def test_only_the_first_errors_are_kept_but_every_rejection_is_counted(app, monkeypatch):
    monkeypatch.setattr(importing, "MAX_REPORTED_ERRORS", 2)
    load_catalog()

    report = import_purchases(*(purchase_row(f"SN-{n}", sku="XX-9") for n in range(5)))

    assert report.rejected == 5
    assert [row for row, _, _ in errors_of(report)] == [2, 3]
    assert report.errors_truncated


# File-level errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (b"", "file", "the file is empty"),
        (
            b"serial_number,sku,purchase_date,customer_email,customer_name\nSN-1,PH-1,,,\n",
            "header",
            "missing columns: country",
        ),
        (
            (PURCHASE_HEADER + ",colour\n" + VALID + ",red\n").encode(),
            "header",
            "unknown columns: colour",
        ),
        (
            (PURCHASE_HEADER + ",SKU\n" + VALID + ",PH-1\n").encode(),
            "header",
            "repeated columns: sku",
        ),
        (b"serial_number,sk\xffu\n", "file", "the header is not valid UTF-8"),
    ],
)
def test_a_file_with_a_bad_header_is_rejected_whole(app, body, field, message):
    load_catalog()

    with pytest.raises(ImportFileError) as raised:
        run_import("purchases", io.BytesIO(body), actor=TEST_ACTOR)

    assert raised.value.field == field
    assert message in str(raised.value)
    assert count(Purchase) == 0


def test_the_service_turns_a_file_error_into_a_422_with_an_errors_map(app):
    with pytest.raises(ImportRejected) as raised:
        import_csv("purchases", io.BytesIO(b"sku\n"), actor=TEST_ACTOR)

    assert raised.value.status == 422
    assert list(raised.value.errors) == ["header"]
    assert "missing columns: serial_number" in raised.value.errors["header"][0]


def test_the_service_rejects_an_unknown_kind(app):
    with pytest.raises(ImportRejected) as raised:
        import_csv("customers", io.BytesIO(b"x\n"), actor=TEST_ACTOR)

    assert "kind" in raised.value.errors


def test_rows_before_a_csv_syntax_error_are_kept(app):
    load_catalog()
    body = csv_bytes(
        PURCHASE_HEADER,
        purchase_row("SN-1"),
        'SN-2,PH-1,2025-01-15,ann@example.com,"Ann" Example,SE',
        purchase_row("SN-3"),
    )

    with pytest.raises(ImportFileError) as raised:
        run_import("purchases", body, actor=TEST_ACTOR)

    assert "CSV syntax error after row 2" in str(raised.value)
    assert "rows before it were processed" in str(raised.value)
    assert list(db.session.scalars(select(Purchase.serial_number))) == ["SN-1"]


# Stored verbatim, normalised keys ---------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Robert'); DROP TABLE purchases;--",
        "x' OR '1'='1",
        "<script>alert('x')</script>",
        '<img src=x onerror="alert(1)">',
        '=HYPERLINK("http://evil.test")',
    ],
)
def test_injection_strings_in_names_are_stored_verbatim(app, name):
    load_catalog()
    quoted = '"' + name.replace('"', '""') + '"'

    report = import_purchases(f"SN-1,PH-1,2025-01-15,ann@example.com,{quoted},SE", VALID)

    assert (report.inserted, report.rejected) == (2, 0)
    assert purchase("SN-1").customer_name == name
    assert count(Purchase) == 2


def test_product_names_with_markup_are_stored_verbatim(app):
    import_rows(
        "products",
        "sku,name,category,warranty_months",
        'PH-1,"<b>Phone</b>; DELETE FROM products",phone,24',
    )

    assert db.session.scalar(select(Product.name)) == "<b>Phone</b>; DELETE FROM products"


def test_serials_and_skus_are_upper_case_and_emails_lower_case(app):
    load_catalog()

    import_purchases(" sn-abc.1 , ph-1 ,2025-01-15, Ann.Example@Example.COM ,Ann Example,se")

    row = purchase("SN-ABC.1")
    assert (row.sku, row.customer_email, row.country) == ("PH-1", "ann.example@example.com", "SE")


def test_the_same_purchase_in_another_case_is_unchanged(app):
    load_catalog()
    import_purchases(purchase_row("SN-ABC", email="ann@example.com"))

    report = import_purchases(purchase_row("sn-abc", sku="ph-1", email="ANN@example.com"))

    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 1)


def test_catalog_codes_are_upper_case(app):
    import_rows("parts", PART_HEADER, "mb-1,Main board,1")
    import_rows("products", "sku,name,category,warranty_months", "ph-1,Phone,phone,24")

    assert db.session.scalar(select(Part.part_number)) == "MB-1"
    assert db.session.scalar(select(Product.sku)) == "PH-1"


# Import runs and their audit event --------------------------------------------------------


def test_an_import_run_is_recorded_with_the_files_digest(app):
    load_catalog()
    body = csv_bytes(PURCHASE_HEADER, VALID, purchase_row("SN-2", sku="XX-9")).getvalue()

    report = run_import("purchases", io.BytesIO(body), actor=TEST_ACTOR, filename="june.csv")

    digest = hashlib.sha256(body).hexdigest()
    assert report.sha256 == digest
    run = db.session.get(ImportRun, report.import_id)
    assert (run.kind, run.filename, run.sha256, run.actor) == (
        "purchases",
        "june.csv",
        digest,
        str(TEST_ACTOR),
    )
    assert (run.rows, run.inserted, run.updated, run.unchanged, run.rejected) == (2, 1, 0, 0, 1)
    assert run.errors == [
        {"row": 3, "field": "sku", "reason": "unknown SKU XX-9; import products first"}
    ]
    assert run.finished_at is not None


def test_an_import_writes_one_audit_event_with_the_files_digest(app):
    load_catalog()
    body = csv_bytes(PURCHASE_HEADER, VALID).getvalue()

    report = run_import("purchases", io.BytesIO(body), actor=TEST_ACTOR, filename="june.csv")

    [event] = audit_events("purchases.imported")
    assert (event.entity_type, event.entity_id) == ("import", report.import_id)
    assert (event.actor_type, event.actor_id) == ("system", "tests")
    assert event.data == {
        "filename": "june.csv",
        "sha256": hashlib.sha256(body).hexdigest(),
        "rows": 1,
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }


def test_a_long_filename_is_stored_by_its_tail(app):
    load_catalog()
    filename = "/" + "d" * 300 + "/june.csv"

    report = run_import(
        "purchases", csv_bytes(PURCHASE_HEADER, VALID), actor=TEST_ACTOR, filename=filename
    )

    stored = db.session.get(ImportRun, report.import_id).filename
    assert len(stored) == 255
    assert stored.endswith("/june.csv")


def test_the_digest_covers_a_file_larger_than_the_read_buffer(app, monkeypatch):
    monkeypatch.setattr(importing, "_READ_BYTES", 16 * 1024)
    load_catalog()
    body = csv_bytes(PURCHASE_HEADER, *(purchase_row(f"SN-{n}") for n in range(2000))).getvalue()
    assert len(body) > 4 * importing._READ_BYTES

    report = run_import("purchases", io.BytesIO(body), actor=TEST_ACTOR)

    assert report.sha256 == hashlib.sha256(body).hexdigest()
    assert report.inserted == 2000


# API --------------------------------------------------------------------------------------

IMPORT_URL = "/api/v1/imports/purchases"


def post_csv(client, body: bytes, headers: dict[str, str], url: str = IMPORT_URL):
    return client.post(url, data=body, headers={**headers, "Content-Type": "text/csv"})


def test_an_admin_imports_purchases_through_the_api(app, client):
    load_catalog()
    token = staff_token("admin")
    body = csv_bytes(PURCHASE_HEADER, VALID, purchase_row("SN-2", sku="XX-9")).getvalue()

    response = post_csv(client, body, {**bearer(token), "X-Filename": "june.csv"})

    assert response.status_code == 200
    report = response.json
    assert {k: report[k] for k in ("kind", "rows", "inserted", "updated", "unchanged")} == {
        "kind": "purchases",
        "rows": 2,
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
    }
    assert report["rejected"] == 1
    assert report["errors"] == [
        {"row": 3, "field": "sku", "reason": "unknown SKU XX-9; import products first"}
    ]
    assert report["errors_truncated"] is False
    assert report["sha256"] == hashlib.sha256(body).hexdigest()
    assert db.session.get(ImportRun, report["import_id"]).filename == "june.csv"


def test_the_api_rejects_a_bad_header_with_problem_details(app, client):
    token = staff_token("admin")

    response = post_csv(client, (PURCHASE_HEADER + ",colour\n").encode(), bearer(token))

    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 422
    assert response.json["errors"] == {"header": ["unknown columns: colour"]}


def test_the_api_rejects_an_empty_body_with_problem_details(app, client):
    response = post_csv(client, b"", bearer(staff_token("admin")))

    assert response.status_code == 422
    assert "file" in response.json["errors"]


def test_an_unknown_kind_is_refused_naming_the_kinds(app, client):
    response = post_csv(client, b"x\n", bearer(staff_token("admin")), "/api/v1/imports/users")

    assert response.status_code == 422
    assert "repairs" in response.json["errors"]["kind"][0]
    assert count(ImportRun) == 0


@pytest.mark.parametrize("role", ["support", "warehouse", "finance"])
def test_staff_other_than_admins_may_not_import(app, client, role):
    response = post_csv(client, (PURCHASE_HEADER + "\n").encode(), bearer(staff_token(role)))

    assert response.status_code == 403
    assert count(ImportRun) == 0


def test_partners_may_not_import(app, client):
    _, key = partner_key()

    response = post_csv(client, (PURCHASE_HEADER + "\n").encode(), bearer(key))

    assert response.status_code == 403


def test_anonymous_callers_may_not_import(app, client):
    response = post_csv(client, (PURCHASE_HEADER + "\n").encode(), {})

    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert count(ImportRun) == 0


def test_a_body_over_the_import_limit_is_refused_with_413(make_app):
    small = make_app(IMPORT_MAX_BYTES=200)
    with small.app_context():
        load_catalog()
        token = staff_token("admin")
        body = csv_bytes(PURCHASE_HEADER, *(purchase_row(f"SN-{n}") for n in range(10)))

        response = post_csv(small.test_client(), body.getvalue(), bearer(token))

        assert response.status_code == 413
        assert response.mimetype == "application/problem+json"
        assert count(Purchase) == 0


def test_the_import_limit_not_the_general_body_limit_applies_to_imports(make_app):
    small = make_app(MAX_CONTENT_LENGTH=100, IMPORT_MAX_BYTES=10_000)
    with small.app_context():
        load_catalog()
        token = staff_token("admin")
        body = csv_bytes(PURCHASE_HEADER, *(purchase_row(f"SN-{n}") for n in range(10)))
        assert 100 < len(body.getvalue()) < 10_000

        response = post_csv(small.test_client(), body.getvalue(), bearer(token))

        assert response.status_code == 200
        assert response.json["inserted"] == 10


# CLI --------------------------------------------------------------------------------------


def write_csv(tmp_path: Path, *lines: str, name: str = "purchases.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_cli_exits_0_when_every_row_is_accepted(app, runner, tmp_path):
    load_catalog()
    path = write_csv(tmp_path, PURCHASE_HEADER, VALID, purchase_row("SN-2"))

    result = runner.invoke(args=["import", "purchases", str(path)])

    assert result.exit_code == 0, result.output
    assert "purchases: 2 rows, 2 inserted, 0 updated, 0 unchanged, 0 rejected" in result.stdout
    assert result.stderr == ""
    run = db.session.scalars(select(ImportRun).where(ImportRun.kind == "purchases")).one()
    assert (run.filename, run.actor) == (str(path), "system:cli")


def test_the_cli_exits_1_and_lists_rejected_rows_on_stderr(app, runner, tmp_path):
    load_catalog()
    path = write_csv(
        tmp_path, PURCHASE_HEADER, VALID, purchase_row("SN-2", sku="XX-9"), "SN-3,PH-1"
    )

    result = runner.invoke(args=["import", "purchases", str(path)])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "row 3: sku: unknown SKU XX-9; import products first",
        "row 4: row: has 2 fields, the header has 6",
    ]
    assert "1 inserted" in result.stdout and "2 rejected" in result.stdout
    assert count(Purchase) == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((), "the file is empty"),
        (("sku,serial_number",), "missing columns"),
        ((PURCHASE_HEADER + ",colour",), "unknown columns: colour"),
        ((PURCHASE_HEADER + ",sku",), "repeated columns: sku"),
    ],
)
def test_the_cli_exits_2_when_the_file_is_unusable(app, runner, tmp_path, lines, message):
    path = tmp_path / "bad.csv"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    result = runner.invoke(args=["import", "purchases", str(path)])

    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.startswith(f"error: {path}: ")


def test_the_cli_exits_2_when_the_file_does_not_exist(app, runner, tmp_path):
    missing = tmp_path / "nope.csv"

    result = runner.invoke(args=["import", "purchases", str(missing)])

    assert result.exit_code == 2
    assert f"error: cannot read {missing}" in result.stderr
    assert count(ImportRun) == 0


def test_the_cli_refuses_an_unknown_kind(app, runner, tmp_path):
    path = write_csv(tmp_path, PURCHASE_HEADER)

    result = runner.invoke(args=["import", "customers", str(path)])

    assert result.exit_code == 2
    assert count(ImportRun) == 0


def test_a_file_that_cannot_be_read_is_audited_as_a_failed_import(app):
    load_catalog()
    with pytest.raises(ImportFileError):
        run_import("purchases", csv_bytes("serial_number,colour"), actor=TEST_ACTOR)

    assert audit_events("purchases.imported") == []
    [event] = audit_events("purchases.import_failed")
    assert "missing columns" in event.reason


def test_leading_blank_lines_before_the_header_are_skipped(app):
    load_catalog()
    body = io.BytesIO(b"\n\n" + csv_bytes(PURCHASE_HEADER, VALID).getvalue())
    assert run_import("purchases", body, actor=TEST_ACTOR).inserted == 1
    with pytest.raises(ImportFileError, match="empty"):
        run_import("purchases", io.BytesIO(b"\n\n\n"), actor=TEST_ACTOR)
