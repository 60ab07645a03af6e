"""Importing partners and historic repair claims: same engine, same exit codes and reports."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

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
