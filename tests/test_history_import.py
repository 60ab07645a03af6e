"""Importing partners and historic repair claims: same engine, same exit codes and reports."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from audit.models import AuditEvent
from catalog import importing
from catalog.importing import run_import
from common.extensions import db
from partners.models import HistoricRepair, Partner
from tests.factories import TEST_ACTOR, csv_bytes, load_catalog, register_purchase

PARTNERS = "code,name,country"
REPAIRS = ("partner_code,serial_number,sku,received_date,completed_date,doa,parts,"
           "labor_minutes,claimed_amount")


def test_partners_import_is_idempotent(app):
    body = csv_bytes(PARTNERS, "fixit,Fix It AB,se", "IBER,Iberia SL,ES")
    first = run_import("partners", body, actor=TEST_ACTOR)
    assert (first.inserted, first.rejected) == (2, 0)
    again = run_import("partners", csv_bytes(PARTNERS, "fixit,Fix It AB,se", "IBER,Iberia SL,ES"),
                       actor=TEST_ACTOR)
    assert (again.inserted, again.unchanged) == (0, 2)
    assert db.session.scalar(select(Partner.country).where(Partner.code == "FIXIT")) == "SE"


def test_repairs_import_flags_unregistered_serials_and_reports_bad_rows(app):
    load_catalog()
    register_purchase("KNOWN-1")
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)
    report = run_import("repairs", csv_bytes(
        REPAIRS,
        "FIXIT,KNOWN-1,PH-1,2025-03-01,2025-03-05,false,MB-1:1;BAT-1:1,45,185.50",
        "FIXIT,GHOST-9,PH-1,2025-03-02,2025-03-04,true,,30,30.00",
        "NOPE,KNOWN-1,PH-1,2025-03-01,2025-03-05,false,,45,10",
        "FIXIT,KNOWN-1,PH-1,2025-03-09,2025-03-01,false,,45,10",
        "FIXIT,KNOWN-1,PH-1,2025-04-01,2025-04-02,maybe,MB-1x1,-5,abc",
    ), actor=TEST_ACTOR)
    assert (report.inserted, report.rejected) == (2, 3)
    fields = {(e.row, e.field) for e in report.errors}
    assert {(4, "partner_code"), (5, "completed_date"), (6, "doa"), (6, "parts"),
            (6, "labor_minutes"), (6, "claimed_amount")} <= fields
    rows = {r.serial_number: r for r in db.session.scalars(select(HistoricRepair))}
    assert rows["KNOWN-1"].serial_registered and not rows["GHOST-9"].serial_registered
    assert rows["KNOWN-1"].parts == [{"part_number": "MB-1", "quantity": 1},
                                     {"part_number": "BAT-1", "quantity": 1}]
    assert rows["KNOWN-1"].claimed_amount == Decimal("185.50") and rows["GHOST-9"].doa


def test_repairs_cli_exit_codes(app, runner, tmp_path):
    load_catalog()
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)
    good = tmp_path / "good.csv"
    good.write_text(REPAIRS + "\nFIXIT,S1,PH-1,2025-03-01,2025-03-05,false,,45,45.00\n")
    assert runner.invoke(args=["import", "repairs", str(good)]).exit_code == 0
    assert runner.invoke(args=["import", "repairs", str(good)]).exit_code == 0  # idempotent
    bad = tmp_path / "bad.csv"
    bad.write_text(REPAIRS + "\nFIXIT,S2,XX-1,2025-03-01,2025-03-05,false,,45,45.00\n")
    result = runner.invoke(args=["import", "repairs", str(bad)])
    assert result.exit_code == 1 and "row 2: sku" in result.output
    header = tmp_path / "header.csv"
    header.write_text("partner_code,serial\n")
    assert runner.invoke(args=["import", "repairs", str(header)]).exit_code == 2
    assert db.session.scalar(select(HistoricRepair.serial_number)) == "S1"


def test_reimporting_repairs_with_several_parts_changes_nothing(app):
    load_catalog()
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)
    row = "FIXIT,S1,PH-1,2025-03-01,2025-03-05,false,MB-1:1;BAT-1:1,45,185.50"
    assert run_import("repairs", csv_bytes(REPAIRS, row), actor=TEST_ACTOR).inserted == 1
    again = run_import("repairs", csv_bytes(REPAIRS, row.replace("MB-1:1;BAT-1:1",
                                                                 "BAT-1:1;MB-1:1")),
                       actor=TEST_ACTOR)
    assert (again.unchanged, again.updated) == (1, 0)


def test_a_changed_repair_is_updated_audited_and_its_facts_recomputed(app):
    load_catalog()
    register_purchase("KNOWN-1")
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)
    row = "FIXIT,KNOWN-1,PH-1,2025-03-01,2025-03-05,false,BAT-1:1,45,30.50"
    run_import("repairs", csv_bytes(REPAIRS, row), actor=TEST_ACTOR)

    again = run_import("repairs", csv_bytes(REPAIRS, row.replace("BAT-1:1,45,30.50",
                                                                 "MB-1:1,45,150.50")),
                       actor=TEST_ACTOR)

    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 0)
    db.session.expire_all()
    stored = db.session.scalars(select(HistoricRepair)).one()
    assert stored.parts == [{"part_number": "MB-1", "quantity": 1}]
    assert (stored.parts_cost, stored.claimed_amount) == (Decimal("120.00"), Decimal("150.50"))
    [event] = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "historic_repair.updated"))
    assert event.entity_id == "FIXIT/KNOWN-1/2025-03-01"
    assert event.data["claimed_amount"] == {"before": "30.50", "after": "150.50"}


def test_a_file_of_new_and_known_repairs_over_many_chunks_is_counted_exactly(app, monkeypatch):
    # Small chunks and commits: the writer switches between looking keys up first (mostly
    # known rows) and inserting first (mostly new rows) from one chunk to the next.
    monkeypatch.setattr(importing, "CHUNK_ROWS", 3)
    monkeypatch.setattr(importing, "COMMIT_ROWS", 6)
    load_catalog()
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)

    def rows(serials, amount="45.00"):
        return [f"FIXIT,S{n},PH-1,2025-03-01,2025-03-05,false,BAT-1:1,45,{amount}"
                for n in serials]

    first = run_import("repairs", csv_bytes(REPAIRS, *rows(range(0, 20, 2))), actor=TEST_ACTOR)
    mixed = rows(range(0, 10, 2)) + rows(range(1, 20, 2)) + rows(range(10, 20, 2), "46.00")
    second = run_import("repairs", csv_bytes(REPAIRS, *mixed), actor=TEST_ACTOR)

    assert (first.inserted, first.rejected) == (10, 0)
    assert (second.inserted, second.updated, second.unchanged) == (10, 5, 5)
    amounts = dict(db.session.execute(
        select(HistoricRepair.serial_number, HistoricRepair.claimed_amount)).all())
    assert len(amounts) == 20
    assert amounts["S12"] == Decimal("46.00") and amounts["S2"] == Decimal("45.00")


def test_repairs_sharing_a_parts_text_each_keep_their_own_facts(app):
    load_catalog()
    register_purchase("A-1")
    register_purchase("B-1", sku="TB-1")
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)

    run_import("repairs", csv_bytes(
        REPAIRS,
        "FIXIT,A-1,PH-1,2025-03-01,2025-03-05,false,MB-1:1,45,150.00",
        "FIXIT,B-1,TB-1,2025-03-01,2025-03-05,false,MB-1:1,45,150.00",
    ), actor=TEST_ACTOR)

    rows = {r.serial_number: r for r in db.session.scalars(select(HistoricRepair))}
    assert rows["A-1"].parts == rows["B-1"].parts == [{"part_number": "MB-1", "quantity": 1}]
    # The main board is in the phone's bill of materials, not the tablet's.
    assert (rows["A-1"].outside_bom_parts, rows["B-1"].outside_bom_parts) == (0, 1)
    assert rows["A-1"].parts_cost == rows["B-1"].parts_cost == Decimal("120.00")


def _history_rows(count: int, amount: str = "45.00") -> list[str]:
    parts = ("", "BAT-1:1", "MB-1:1;BAT-1:2", "SCR-1:1")
    return [f"FIXIT,S{n:03d},{('PH-1', 'TB-1')[n % 2]},2025-03-{1 + n % 28:02d},"
            f"2025-03-{1 + n % 28:02d},{'true' if n % 5 == 0 else 'false'},{parts[n % 4]},"
            f"{15 + n},{amount}" for n in range(count)]


def _stored_history() -> list[tuple]:
    db.session.expire_all()
    skip = {"id", "import_id"}
    return sorted(tuple(getattr(row, column.name) for column in HistoricRepair.__table__.c
                        if column.name not in skip)
                  for row in db.session.scalars(select(HistoricRepair)))


def test_inserting_by_copy_or_by_insert_on_conflict_stores_the_same(app, monkeypatch):
    # PostgreSQL COPYs a chunk whose keys are probably new straight into the table, and other
    # chunks through a temporary table and INSERT ... ON CONFLICT: both store the same rows.
    monkeypatch.setattr(importing, "CHUNK_ROWS", 4)
    load_catalog()
    register_purchase("S004")
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)
    prepare_insert = importing._prepare_insert
    stored = []
    for fresh in (False, True):
        def forced(table, rules, rows, extra=None, fresh=fresh, **options):
            return prepare_insert(table, rules, rows, extra, fresh=fresh, **options)

        monkeypatch.setattr(importing, "_prepare_insert", forced)
        report = run_import("repairs", csv_bytes(REPAIRS, *_history_rows(10)), actor=TEST_ACTOR)
        assert (report.inserted, report.rejected) == (10, 0)
        stored.append(_stored_history())
        db.session.execute(HistoricRepair.__table__.delete())
        db.session.commit()

    assert stored[0] == stored[1] and len(stored[0]) == 10


def test_a_chunk_copied_into_keys_another_import_took_falls_back_and_counts_exactly(
        app, monkeypatch):
    monkeypatch.setattr(importing, "CHUNK_ROWS", 4)
    monkeypatch.setattr(importing, "COMMIT_ROWS", 4)  # SQLite lets the other import commit
    load_catalog()
    run_import("partners", csv_bytes(PARTNERS, "FIXIT,Fix It AB,SE"), actor=TEST_ACTOR)
    prepare_insert = importing._prepare_insert
    fresh_chunks: list[bool] = []

    def racing(table, rules, rows, extra=None, **options):
        fresh_chunks.append(options["fresh"])
        if len(fresh_chunks) == 2:  # another import takes two keys of the second chunk
            taken = [dict(row, claimed_amount=Decimal("1.00")) for row in rows[1:3]]
            with db.engine.begin() as other:
                other.execute(table.insert(), taken)
        return prepare_insert(table, rules, rows, extra, **options)

    monkeypatch.setattr(importing, "_prepare_insert", racing)
    first = run_import("repairs", csv_bytes(REPAIRS, *_history_rows(10)), actor=TEST_ACTOR)
    monkeypatch.setattr(importing, "_prepare_insert", prepare_insert)
    # A re-import with every amount changed, and two new rows.
    again = run_import("repairs", csv_bytes(REPAIRS, *_history_rows(12, amount="46.00")),
                       actor=TEST_ACTOR)

    assert fresh_chunks == [True, True, False]  # the third follows a chunk with taken keys
    assert (first.inserted, first.updated, first.unchanged) == (8, 2, 0)
    assert (again.inserted, again.updated, again.unchanged) == (2, 10, 0)
    amounts = db.session.scalars(select(HistoricRepair.claimed_amount)).all()
    assert len(amounts) == 12 and set(amounts) == {Decimal("46.00")}
