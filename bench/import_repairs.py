"""Time a historic repairs CSV import against a raw executemany INSERT of the same rows.

``python -m bench.import_repairs [--rows 200000] [--database-url postgresql://...]``

Like ``bench.import_purchases``: SQLite (the default) uses a fresh temporary database migrated
with ``flask_migrate.upgrade()``; with ``--database-url`` the import runs against that PostgreSQL
database inside a scratch schema dropped at the end. The catalog (50 products, 100 parts) and 200
partners are imported first through ``catalog.importing.run_import`` (kinds ``products``,
``parts``, ``partners``); then ``--rows`` historic repairs (50 SKUs, 200 partners, 0-3 parts each)
are generated as CSV in memory and ``run_import("repairs", ...)`` is timed. No purchases are
loaded, so every row is kept with ``serial_registered`` false (the enrich query still runs).

The baseline, in the same run, is a raw ``executemany`` (sqlite3, or psycopg on PostgreSQL) of the
same rows, parsed before its clock starts, into a same-shaped scratch table (same columns, unique
key and index; no foreign keys) in one transaction. The time for 1,000,000 rows is extrapolated
linearly from the measured rate. The default of 200,000 rows keeps the run well under a minute;
``--rows 1000000`` measures the million directly and takes a few minutes (most of it the import).
``--reimport`` also times importing the same file again (every row unchanged).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sqlite3
import tempfile
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from flask import Flask

from bench.import_purchases import bench_app, line, scratch_postgres_schema

DEFAULT_ROWS = 200_000
MILLION = 1_000_000
SKUS = [f"SKU-{n:03d}" for n in range(50)]
PARTS = [f"PART-{n:03d}" for n in range(100)]
PARTNERS = [f"PTN-{n:03d}" for n in range(200)]
REPAIR_COLUMNS = (
    "partner_code",
    "serial_number",
    "sku",
    "received_date",
    "completed_date",
    "doa",
    "parts",
    "labor_minutes",
    "claimed_amount",
)
RAW_TABLE_SQL = """
CREATE TABLE historic_repairs_raw (
    id {id_type} PRIMARY KEY,
    partner_code VARCHAR(32) NOT NULL,
    serial_number VARCHAR(64) NOT NULL,
    sku VARCHAR(64) NOT NULL,
    rma_number VARCHAR(16),
    received_date DATE NOT NULL,
    completed_date DATE NOT NULL,
    doa BOOLEAN NOT NULL,
    parts {json_type} NOT NULL,
    labor_minutes INTEGER NOT NULL,
    claimed_amount NUMERIC(12, 2) NOT NULL,
    serial_registered BOOLEAN NOT NULL,
    import_id VARCHAR(36),
    UNIQUE (serial_number, received_date, partner_code),
    CHECK (completed_date >= received_date),
    CHECK (labor_minutes >= 0)
)
"""
RAW_INDEXES_SQL = (
    "CREATE INDEX ix_historic_repairs_raw_partner_sku ON historic_repairs_raw (partner_code, sku)",
)
RAW_INSERT_COLUMNS = (
    "partner_code, serial_number, sku, rma_number, received_date, completed_date, doa, parts, "
    "labor_minutes, claimed_amount, serial_registered, import_id"
)


def catalog_csvs() -> dict[str, bytes]:
    """The products, parts and partners files imported before the repairs."""
    products = "sku,name,category,warranty_months\n" + "".join(
        f"{sku},Product {sku},phone,24\n" for sku in SKUS
    )
    parts = "part_number,description,unit_cost\n" + "".join(
        f"{part},Part {part},{5 + n % 40}.50\n" for n, part in enumerate(PARTS)
    )
    partners = "code,name,country,contact_email,sla_days\n" + "".join(
        f"{code},Partner {code},{('SE', 'NO', 'DK', 'FI', 'DE')[n % 5]},"
        f"{code.lower()}@partners.example.com,{7 + n % 8}\n"
        for n, code in enumerate(PARTNERS)
    )
    return {"products": products.encode(), "parts": parts.encode(), "partners": partners.encode()}


def repairs_csv(rows: int) -> bytes:
    """``rows`` valid, distinct historic repairs over 50 SKUs and 200 partners, as UTF-8 CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPAIR_COLUMNS)
    first_day = date(2019, 1, 1)
    for n in range(rows):
        received = first_day + timedelta(days=n % 1800)
        parts = ";".join(
            f"{PARTS[(n + 37 * k) % len(PARTS)]}:{1 + (n + k) % 3}" for k in range(n % 4)
        )
        labor = 15 + n % 180
        writer.writerow(
            (
                PARTNERS[n % len(PARTNERS)],
                f"SN{n:09d}",
                SKUS[(n // 7) % len(SKUS)],
                received.isoformat(),
                (received + timedelta(days=n % 21)).isoformat(),
                "true" if n % 50 == 0 else "false",
                parts,
                labor,
                f"{labor + 10 * (n % 4)}.{n % 100:02d}",
            )
        )
    return out.getvalue().encode("utf-8")


def raw_rows(data: bytes, import_id: str, *, dates_as_text: bool) -> list[tuple[Any, ...]]:
    """The same rows as INSERT tuples (parts as JSON), parsed before the baseline's clock."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    next(reader)
    rows = []
    for partner, serial, sku, received, completed, doa, parts, labor, amount in reader:
        items = [
            {"part_number": number, "quantity": int(quantity)}
            for number, quantity in (item.split(":") for item in parts.split(";") if item)
        ]
        rows.append(
            (
                partner,
                serial,
                sku,
                None,
                received if dates_as_text else date.fromisoformat(received),
                completed if dates_as_text else date.fromisoformat(completed),
                doa == "true",
                json.dumps(items),
                int(labor),
                str(Decimal(amount)) if dates_as_text else Decimal(amount),
                False,
                import_id,
            )
        )
    return rows


def raw_sqlite_insert(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """executemany into a same-shaped table in its own WAL database, one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(RAW_TABLE_SQL.format(id_type="INTEGER", json_type="JSON"))
        for statement in RAW_INDEXES_SQL:
            conn.execute(statement)
        placeholders = ", ".join("?" * 12)
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(
            f"INSERT INTO historic_repairs_raw ({RAW_INSERT_COLUMNS}) VALUES ({placeholders})",
            rows,
        )
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        (count,) = conn.execute("SELECT count(*) FROM historic_repairs_raw").fetchone()
        assert count == len(rows), count
        return elapsed
    finally:
        conn.close()


def raw_postgres_insert(url: str, schema: str, rows: list[tuple[Any, ...]]) -> float:
    """psycopg executemany into a same-shaped scratch table, one transaction."""
    import psycopg

    plain_url = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain_url, options=f"-csearch_path={schema}") as conn:
        conn.execute(
            RAW_TABLE_SQL.format(
                id_type="BIGINT GENERATED BY DEFAULT AS IDENTITY", json_type="JSON"
            )
        )
        for statement in RAW_INDEXES_SQL:
            conn.execute(statement)
        conn.commit()
        placeholders = ", ".join(["%s"] * 12)
        started = time.perf_counter()
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO historic_repairs_raw ({RAW_INSERT_COLUMNS}) VALUES ({placeholders})",
                rows,
            )
        conn.commit()
        return time.perf_counter() - started


def timed_import(app: Flask, data: bytes, *, reimport: bool) -> tuple[float, float | None, Any]:
    """Migrate, import catalog and partners, then time ``run_import('repairs', data)``."""
    from flask_migrate import upgrade

    from catalog.importing import run_import
    from common.actors import Actor
    from common.extensions import db

    actor = Actor.system("bench")
    with app.app_context():
        upgrade()
        for kind, content in catalog_csvs().items():
            report = run_import(kind, io.BytesIO(content), actor=actor, filename=f"{kind}.csv")
            if report.rejected:
                raise RuntimeError(f"{kind} import rejected rows: {report.summary()}")
        started = time.perf_counter()
        report = run_import("repairs", io.BytesIO(data), actor=actor, filename="repairs.csv")
        elapsed = time.perf_counter() - started
        reimport_elapsed = None
        if reimport:
            started = time.perf_counter()
            try:
                again = run_import("repairs", io.BytesIO(data), actor=actor, filename="repairs.csv")
            except Exception as exc:  # reported, so the first import's figures still print
                db.session.rollback()
                print(f"re-import FAILED: {type(exc).__name__}: {exc}", flush=True)
            else:
                reimport_elapsed = time.perf_counter() - started
                if again.unchanged != report.inserted:
                    raise RuntimeError(f"re-import was not idempotent: {again.summary()}")
        db.session.remove()
        db.engine.dispose()
    return elapsed, reimport_elapsed, report


def run(rows: int, database_url: str | None, *, reimport: bool) -> int:
    """Run both timings and print them."""
    from common.config import normalize_database_url

    started = time.perf_counter()
    data = repairs_csv(rows)
    print(
        f"repairs CSV: {rows:,} rows, {len(data) / 1e6:.1f} MB "
        f"(generated in {time.perf_counter() - started:.1f} s); "
        f"{len(SKUS)} SKUs, {len(PARTNERS)} partners, {len(PARTS)} parts",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="aftercare-bench-") as tmp:
        if database_url:
            url = normalize_database_url(database_url)
            with scratch_postgres_schema(url) as schema:
                app = bench_app(url, {"connect_args": {"options": f"-csearch_path={schema}"}})
                import_seconds, reimport_seconds, report = timed_import(
                    app, data, reimport=reimport
                )
                raw = raw_rows(data, report.import_id, dates_as_text=False)
                raw_seconds = raw_postgres_insert(url, schema, raw)
            database, baseline = "PostgreSQL", "psycopg executemany"
        else:
            app = bench_app("sqlite:///" + str(Path(tmp) / "aftercare.sqlite3"))
            import_seconds, reimport_seconds, report = timed_import(app, data, reimport=reimport)
            raw = raw_rows(data, report.import_id, dates_as_text=True)
            raw_seconds = raw_sqlite_insert(Path(tmp) / "raw.sqlite3", raw)
            database, baseline = "SQLite", "sqlite3 executemany"
    if (report.inserted, report.rejected) != (rows, 0):
        print(f"unexpected report: {report.summary()}")
        return 2
    print(f"database: {database}")
    print(line("run_import('repairs')", rows, import_seconds))
    if reimport_seconds is not None:
        print(line("re-import (all unchanged)", rows, reimport_seconds))
    print(line(f"raw {baseline}", rows, raw_seconds))
    print(f"ratio (import / raw): {import_seconds / raw_seconds:.1f}x")
    scaled = import_seconds * MILLION / rows
    print(
        f"extrapolated to {MILLION:,} rows: import {scaled:.1f} s ({scaled / 60:.1f} min), "
        f"raw {raw_seconds * MILLION / rows:.1f} s"
        + (" (measured)" if rows == MILLION else " (linear in rows)")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.import_repairs", description=__doc__)
    parser.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_ROWS,
        help="repairs to import (1000000 takes a few minutes)",
    )
    parser.add_argument(
        "--database-url", help="PostgreSQL URL to run against (a scratch schema is used)"
    )
    parser.add_argument(
        "--reimport", action="store_true", help="also time importing the same file again"
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.database_url and not args.database_url.startswith("postgres"):
        parser.error("--database-url must be a postgresql:// URL (SQLite is the default)")
    return run(args.rows, args.database_url, reimport=args.reimport)


if __name__ == "__main__":
    raise SystemExit(main())
