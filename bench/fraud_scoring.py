"""Import and score a million historic repair claims; time both beside a bare GROUP BY.

``python -m bench.fraud_scoring [--rows 1000000] [--database-url postgresql://...]``

SQLite (the default) uses a fresh temporary database migrated with ``flask_migrate.upgrade()``;
with ``--database-url`` everything runs inside a scratch schema of that PostgreSQL database,
dropped at the end (as ``bench.import_purchases`` does).

Untimed set-up: the catalog (50 SKUs, each with a bill of materials of its own main board,
display, battery and camera plus three shared small parts; 216 parts with costs) and 200
partners go through ``run_import``; the registered purchases (every unit but a few) are
bulk-loaded (COPY on PostgreSQL, then ``VACUUM ANALYZE`` as autovacuum would have done long
before a history import; executemany on SQLite) so ``derive``'s purchase lookup has real work
to do. The claims CSV is generated in memory, sorted by received date like a history
export: about 3 % repeat repairs of the same unit, 4 % DOA (one partner inflates it, one in ten
DOAs is late), 0-3 BOM parts per claim, and a few hundred hard-rule breaks (unregistered
serials, parts outside the BOM, units past their warranty, the same unit at two partners at
once), so the rules produce hits but not a flood of flags.

Timed: ``run_import("repairs", ...)`` (rows/s); then ``fraud.service.score_all`` (cube, numpy
scoring, rules and flag upserts, first run and a rescore with the flags in place); then, each
the median of three runs, ``load_cube()`` (with its two queries also timed alone),
``find_rule_hits()`` (and each rule alone), and the bare
``SELECT partner_code, sku, count(*) FROM historic_repairs GROUP BY partner_code, sku``.
On PostgreSQL the table is ``VACUUM ANALYZE``d after the import (timed, shown) as autovacuum
would soon do, so the scoring figures are those of a settled table. ``--profile`` writes a
cProfile of the import (and of ``score_all``) to the current directory and prints the top.

To iterate on scoring without importing again: keep a run's data (``--keep-schema`` on
PostgreSQL, ``--sqlite-file`` on SQLite) and time the scoring alone over it with ``--reuse
SCHEMA`` (with the same ``--database-url``) or ``--reuse FILE``; the flags of earlier runs are
deleted first, so the first run is a first run again.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import gc
import io
import pstats
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from bench.import_purchases import bench_app, scratch_postgres_schema

DEFAULT_ROWS = 1_000_000
SKUS = [f"SKU-{n:03d}" for n in range(50)]
PARTNERS = [f"PTN-{n:03d}" for n in range(200)]
OWN_PARTS = ("MB", "DSP", "BAT", "CAM")  # each SKU's own: main board, display, battery, camera
SHARED_PARTS = [f"GEN-{n:02d}" for n in range(16)]  # screws, adhesive, flex cables
REPAIR_COLUMNS = ("partner_code", "serial_number", "sku", "received_date", "completed_date",
                  "doa", "parts", "labor_minutes", "claimed_amount", "diagnosis_code")
PURCHASE_COLUMNS = ("serial_number", "sku", "purchase_date", "customer_email",
                    "customer_name", "country", "created_at", "updated_at")
HISTORY_DAYS = 1065  # about 35 months, ending a month ago (no date may lie in the future)
REPEAT_RATE = 0.03  # another claim on a unit repaired before
OVERLAP_RATE = 0.0001  # a claim at a second partner while the first still has the unit
UNREGISTERED_RATE = 0.0003
OUTSIDE_WARRANTY_RATE = 0.0003
OUTSIDE_BOM_RATE = 0.0003
DOA_RATE = 0.04
FRAUDSTER = "PTN-007"  # triples its DOA claims in the last year
BARE_GROUP_BY = ("SELECT partner_code, sku, count(*) FROM historic_repairs "
                 "GROUP BY partner_code, sku")


@dataclass
class World:
    """Everything the bench loads: catalog files, purchases and the claims CSV."""

    catalog: dict[str, bytes]
    purchases: list[tuple[Any, ...]]
    repairs: bytes
    rows: int
    planted: dict[str, int] = field(default_factory=dict)


def _serial(unit: int) -> str:
    # A bijection of the unit number (the multiplier is coprime with 10**10): serials come in
    # no particular order, as in a real export sorted by date.
    return f"SN{unit * 2654435761 % 10**10:010d}"


def _catalog(rng: random.Random) -> tuple[dict[str, bytes], dict[str, dict], dict[str, float]]:
    costs: dict[str, float] = {}
    for sku in SKUS:
        tag = sku[4:]
        costs[f"MB-{tag}"] = rng.randint(90, 260) + 0.5
        costs[f"DSP-{tag}"] = rng.randint(40, 130) + 0.9
        costs[f"BAT-{tag}"] = rng.randint(12, 35) + 0.25
        costs[f"CAM-{tag}"] = rng.randint(8, 30) + 0.75
    for number in SHARED_PARTS:
        costs[number] = rng.randint(1, 9) + 0.1
    products, boms = [], {}
    for n, sku in enumerate(SKUS):
        warranty = 12 if n % 3 == 0 else 24
        doa_days = 14 if n % 5 == 0 else ""
        products.append(f"{sku},Product {sku},phone,{warranty},0,,45,,{doa_days}")
        shared = rng.sample(SHARED_PARTS, 3)
        bom = {f"{kind}-{sku[4:]}": 1 for kind in OWN_PARTS} | dict.fromkeys(shared, 4)
        boms[sku] = {"bom": bom, "warranty_days": round(warranty * 30.4375),
                     "doa_days": doa_days or 30}
    files = {
        "products": "\n".join(["sku,name,category,warranty_months,extended_warranty_months,"
                               "exclusions,labor_minutes,released_on,doa_days", *products]),
        "parts": "\n".join(["part_number,description,unit_cost",
                            *(f"{p},Part {p},{c:.2f}" for p, c in costs.items())]),
        "bom": "\n".join(["sku,part_number,max_qty",
                          *(f"{sku},{p},{q}" for sku, facts in boms.items()
                            for p, q in facts["bom"].items())]),
        "partners": "\n".join(["code,name,country,contact_email,sla_days",
                               *(f"{c},Partner {c},{('SE', 'NO', 'DK', 'FI', 'DE')[n % 5]},"
                                 f"{c.lower()}@partners.example.com,{7 + n % 8}"
                                 for n, c in enumerate(PARTNERS))]),
    }
    return {kind: (text + "\n").encode() for kind, text in files.items()}, boms, costs


def _again(rng: random.Random, before: tuple, i: int, *, overlap: bool, last: date,
           boms: dict[str, dict], bought_on: dict[str, date | None],
           keys: set) -> tuple | None:
    """Another claim on the unit of ``before``: a repeat repair, or (``overlap``) a claim at a
    second partner while the first still had the unit. None when it would not fit."""
    b_partner, serial, sku, b_received, b_completed = before[:5]
    other = PARTNERS[(PARTNERS.index(b_partner) + 1 + i % 199) % len(PARTNERS)]
    if overlap:
        partner = other
        received = b_received + timedelta(days=rng.randint(0, (b_completed - b_received).days))
    else:
        partner = b_partner if rng.random() < 0.85 else other
        received = b_completed + timedelta(days=rng.randint(1, 120))
    bought = bought_on[serial]
    if received > last or (partner, serial, received) in keys:
        return None
    if bought is not None and (received - bought).days >= boms[sku]["warranty_days"]:
        return None  # keep the planted outside-warranty claims the only ones
    return partner, serial, sku, received


def generate(rows: int, seed: int = 7) -> World:
    """``rows`` valid, distinct claims with a few planted hard-rule breaks, and the purchases."""
    rng = random.Random(seed)
    catalog, boms, costs = _catalog(rng)
    last = datetime.now(UTC).date() - timedelta(days=30)
    first = last - timedelta(days=HISTORY_DAYS)
    fraud_from = last - timedelta(days=365)
    partner_weights = [rng.lognormvariate(0, 0.8) for _ in PARTNERS]
    sku_weights = [rng.lognormvariate(0, 0.6) for _ in SKUS]
    partners = rng.choices(PARTNERS, weights=partner_weights, k=rows)
    skus = rng.choices(SKUS, weights=sku_weights, k=rows)
    line_counts = rng.choices((0, 1, 2, 3), weights=(35, 40, 17, 8), k=rows)
    claims: list[tuple] = []
    keys: set[tuple[str, str, date]] = set()
    purchases: list[tuple] = []
    bought_on: dict[str, date | None] = {}
    planted = dict.fromkeys(("unregistered", "outside_warranty", "outside_bom", "overlap",
                             "repeat"), 0)
    now = datetime.now(UTC)
    unit = 0
    for i in range(rows):
        partner, sku = partners[i], skus[i]
        roll = rng.random()
        claim = None
        if claims and roll < REPEAT_RATE + OVERLAP_RATE:
            claim = _again(rng, claims[rng.randrange(len(claims))], i, overlap=roll < OVERLAP_RATE,
                           last=last, boms=boms, bought_on=bought_on, keys=keys)
            if claim is not None:
                planted["overlap" if roll < OVERLAP_RATE else "repeat"] += 1
        doa_rate = DOA_RATE * (3 if partner == FRAUDSTER else 1)
        if claim is None:
            unit += 1
            serial = _serial(unit)
            received = first + timedelta(days=rng.randrange(HISTORY_DAYS + 1))
            if partner == FRAUDSTER and received < fraud_from:
                doa_rate = DOA_RATE
            doa = rng.random() < doa_rate
            facts = boms[sku]
            if rng.random() < UNREGISTERED_RATE:
                bought = None
                planted["unregistered"] += 1
            else:
                if rng.random() < OUTSIDE_WARRANTY_RATE:
                    age = facts["warranty_days"] + rng.randint(10, 300)
                    planted["outside_warranty"] += 1
                elif doa:  # dead on arrival: a young unit, one in ten past the DOA window
                    age = (rng.randint(0, facts["doa_days"]) if rng.random() < 0.9
                           else rng.randint(facts["doa_days"] + 1, 200))
                else:
                    age = rng.randint(facts["doa_days"] + 1, facts["warranty_days"] - 1)
                bought = received - timedelta(days=age)
            bought_on[serial] = bought
            claim = (partner, serial, sku, received, doa)
        else:
            claim = (*claim, rng.random() < doa_rate / 4)  # a repaired unit is rarely DOA
        partner, serial, sku, received, doa = claim
        facts = boms[sku]
        completed = min(last, received + timedelta(days=rng.randint(0, 20)))
        bom = facts["bom"]
        lines = rng.sample(list(bom), line_counts[i])
        if rng.random() < OUTSIDE_BOM_RATE:
            lines.append(f"MB-{SKUS[(SKUS.index(sku) + 1) % len(SKUS)][4:]}")
            planted["outside_bom"] += 1
        quantities = [1 if bom.get(number, 1) == 1 else rng.randint(1, 2) for number in lines]
        labor = min(600, 15 + int(rng.expovariate(1 / 40)))
        amount = sum(costs[n] * q for n, q in zip(lines, quantities, strict=True)) + labor
        keys.add((partner, serial, received))
        claims.append((partner, serial, sku, received, completed, doa,
                       ";".join(f"{n}:{q}" for n, q in zip(lines, quantities, strict=True)),
                       labor, f"{amount:.2f}", f"D{1 + i % 23:02d}"))
    skus_of = {claim[1]: claim[2] for claim in claims}
    for n, (serial, bought) in enumerate(bought_on.items()):
        if bought is not None:
            purchases.append((serial, skus_of[serial], bought, f"customer{n % 90_000}@example.com",
                              f"Customer {n}", ("SE", "NO", "DK", "FI", "DE")[n % 5], now, now))
    claims.sort(key=lambda claim: claim[3])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPAIR_COLUMNS)
    for claim in claims:
        writer.writerow((*claim[:3], claim[3].isoformat(), claim[4].isoformat(),
                         "true" if claim[5] else "false", *claim[6:]))
    return World(catalog, purchases, out.getvalue().encode(), rows, planted)


def _load_purchases(purchases: list[tuple[Any, ...]]) -> float:
    """Bulk-load the registered purchases (not timed as part of the import)."""
    from common.extensions import db

    started = time.perf_counter()
    connection = db.session.connection()
    columns = ", ".join(PURCHASE_COLUMNS)
    if connection.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(
                f"COPY purchases ({columns}) FROM STDIN") as copy:
            for row in purchases:
                copy.write_row(row)
    else:
        placeholders = ", ".join("?" * len(PURCHASE_COLUMNS))
        connection.exec_driver_sql(
            f"INSERT INTO purchases ({columns}) VALUES ({placeholders})", purchases)
    db.session.commit()
    return time.perf_counter() - started


def _bare_insert(rows: int) -> float:
    """The imported rows written again, raw, into an empty twin of the table: the floor.

    Same columns, indexes and checks (on SQLite also the foreign keys), written in chunks of
    5,000 with a commit every 50,000 rows as the import does, by COPY on PostgreSQL and
    executemany on SQLite; nothing validated, derived or looked up.
    """
    from sqlalchemy import text

    from common.extensions import db

    connection = db.session.connection()
    postgres = connection.dialect.name == "postgresql"
    names = [c.name for c in db.metadata.tables["historic_repairs"].c if c.name != "id"]
    columns = ", ".join(names)
    # JSON as its text, which COPY takes as it is.
    selected = ", ".join(f"CAST({name} AS TEXT)" if name == "parts" else name for name in names)
    data = [tuple(row) for row in connection.exec_driver_sql(
        f"SELECT {selected} FROM historic_repairs ORDER BY id")]
    if postgres:
        connection.execute(text("CREATE TABLE bare_repairs (LIKE historic_repairs "
                                "INCLUDING ALL)"))
    else:
        for (sql,) in connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'historic_repairs' "
                "AND sql IS NOT NULL").fetchall():
            connection.exec_driver_sql(sql.replace("historic_repairs", "bare_repairs"))
    db.session.commit()
    started = time.perf_counter()
    for start in range(0, len(data), 5000):
        batch = data[start:start + 5000]
        connection = db.session.connection()
        if postgres:
            raw = connection.connection.driver_connection
            with raw.cursor() as cursor, cursor.copy(
                    f"COPY bare_repairs ({columns}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
        else:
            connection.exec_driver_sql(
                f"INSERT INTO bare_repairs ({columns}) VALUES ({', '.join('?' * len(names))})",
                batch)
        if (start // 5000) % 10 == 9:
            db.session.commit()
    db.session.commit()
    seconds = time.perf_counter() - started
    db.session.execute(text("DROP TABLE bare_repairs"))
    db.session.commit()
    assert len(data) == rows, len(data)
    return seconds


def _median(function: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    """Median wall time of ``runs`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _profiled(name: str, function: Callable[[], Any], enabled: bool) -> Any:
    if not enabled:
        return function()
    profiler = cProfile.Profile()
    result = profiler.runcall(function)
    path = Path(f"bench-{name}.prof")
    profiler.dump_stats(path)
    print(f"\n--- profile of {name} ({path}) ---")
    stats = pstats.Stats(profiler).sort_stats("tottime")
    stats.print_stats(25)
    return result




def measure(app: Flask, world: World, *, profile: bool) -> list[tuple[str, float, str]]:
    """Set up, import, score; return (label, seconds, note) lines for the table."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from catalog.importing import run_import
    from common.actors import Actor
    from common.extensions import db

    actor = Actor.system("bench")
    lines: list[tuple[str, float, str]] = []
    with app.app_context():
        upgrade()
        for kind, content in world.catalog.items():
            report = run_import(kind, io.BytesIO(content), actor=actor, filename=f"{kind}.csv")
            if report.rejected:
                raise RuntimeError(f"{kind} import rejected rows: {report.errors[:3]}")
        seconds = _load_purchases(world.purchases)
        if db.session.get_bind().dialect.name == "postgresql":
            # Registered long before the history arrives: autovacuum has vacuumed and
            # analyzed them (so the import's purchase lookups are index-only scans).
            with db.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE purchases"))
        print(f"set-up: {len(world.purchases):,} purchases bulk-loaded in {seconds:.1f} s",
              flush=True)
        postgres = db.session.get_bind().dialect.name == "postgresql"

        started = time.perf_counter()
        report = _profiled("import", lambda: run_import(
            "repairs", io.BytesIO(world.repairs), actor=actor, filename="repairs.csv"), profile)
        seconds = time.perf_counter() - started
        if (report.inserted, report.rejected) != (world.rows, 0):
            raise RuntimeError(f"unexpected import report: {report.summary()} "
                               f"{report.errors[:3]}")
        lines.append(("run_import('repairs')", seconds, f"{world.rows / seconds:,.0f} rows/s"))
        print(f"import: {seconds:.1f} s", flush=True)
        if postgres:
            db.session.commit()
            started = time.perf_counter()
            with db.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE historic_repairs"))
            lines.append(("VACUUM ANALYZE (untimed by the issue)",
                          time.perf_counter() - started, "as autovacuum would"))
        lines += measure_scoring(profile=profile)
        # Last: writing a million rows again disturbs what is read after it (WAL, autovacuum).
        seconds = _bare_insert(world.rows)
        lines.insert(1, ("  bare insert, same rows (baseline)", seconds,
                         f"{world.rows / seconds:,.0f} rows/s, "
                         f"{'COPY' if postgres else 'executemany'} into a same-shaped table"))
        db.session.remove()
        db.engine.dispose()
    return lines


def measure_scoring(*, profile: bool) -> list[tuple[str, float, str]]:
    """Time ``score_all`` (first run, rescore) and its parts over the claims in the database.

    Runs inside an app context; the flags of earlier runs are deleted first, so the first
    run creates every flag as it would after a fresh import.
    """
    from sqlalchemy import delete, func, select, text

    from common.actors import Actor
    from common.extensions import db
    from fraud import facts, rules
    from fraud.models import FraudFlag, PaymentHold
    from fraud.service import score_all
    from partners.models import Partner

    actor = Actor.system("bench")
    lines: list[tuple[str, float, str]] = []
    db.session.execute(delete(PaymentHold))
    db.session.execute(delete(FraudFlag))
    db.session.commit()
    started = time.perf_counter()
    summary = _profiled("score_all", lambda: score_all(actor=actor), profile)
    flags = db.session.scalar(select(func.count()).select_from(FraudFlag))
    lines.append(("score_all (first run)", time.perf_counter() - started,
                  f"{summary.rule_hits:,} rule hits, {summary.flagged} partners flagged, "
                  f"{flags:,} flags"))
    started = time.perf_counter()
    again = score_all(actor=actor)
    lines.append(("score_all (rescore)", time.perf_counter() - started,
                  f"{again.updated} flags updated, {again.created} created"))

    codes = list(db.session.scalars(select(Partner.code)))
    seconds, cube = _median(lambda: facts.load_cube(partners=codes))
    lines.append(("load_cube()", seconds,
                  f"{int(cube['claims'].sum()):,} claims, {len(cube.months)} months"))
    lines.append(("  cube GROUP BY", _median(lambda: db.session.execute(
        facts._cube_query(None)).all())[0], "partner, sku, month: 11 sums"))
    lines.append(("  repeats query", _median(lambda: db.session.execute(
        facts._repeats_query(None)).all())[0], "window over serial"))
    seconds, hits = _median(rules.find_rule_hits)
    lines.append(("find_rule_hits()", seconds, f"{len(hits):,} hits"))
    for name, rule in rules.RULES.items():
        seconds, found = _median(lambda rule=rule: list(rule()))
        lines.append((f"  {name}", seconds, f"{len(found):,} hits"))
    seconds, groups = _median(lambda: db.session.execute(text(BARE_GROUP_BY)).all())
    lines.append(("bare GROUP BY partner, sku", seconds, f"{len(groups):,} groups"))
    db.session.commit()
    return lines


def rescore(database_url: str | None, reuse: str, *, profile: bool) -> int:
    """Time the scoring again over an earlier run's claims (``--reuse``): no import.

    ``reuse`` is the schema an earlier PostgreSQL run kept (``--keep-schema``), or the
    SQLite file it wrote (``--sqlite-file``).
    """
    from sqlalchemy import func, select

    from common.config import normalize_database_url
    from common.extensions import db
    from partners.models import HistoricRepair

    if database_url:
        app = bench_app(normalize_database_url(database_url),
                        {"connect_args": {"options": f"-csearch_path={reuse}"}})
    else:
        app = bench_app(f"sqlite:///{reuse}")
    with app.app_context():
        rows = db.session.scalar(select(func.count()).select_from(HistoricRepair))
        lines = measure_scoring(profile=profile)
        db.session.remove()
        db.engine.dispose()
    _print_table("PostgreSQL" if database_url else "SQLite", rows, lines)
    return 0


def _print_table(database: str, rows: int, lines: list[tuple[str, float, str]]) -> None:
    print(f"\n{database}, {rows:,} claims, {len(PARTNERS)} partners, {len(SKUS)} SKUs")
    print(f"{'step':<40} {'seconds':>9}  note")
    for label, seconds, note in lines:
        print(f"{label:<40} {seconds:>9.3f}  {note}")


def run(rows: int, database_url: str | None, *, profile: bool, seed: int,
        sqlite_file: str | None = None, keep_schema: bool = False) -> int:
    """Generate, measure and print the table."""
    from common.config import normalize_database_url

    started = time.perf_counter()
    world = generate(rows, seed)
    # The generated world (millions of objects) is scaffolding: keep the garbage collector
    # from walking it again and again while the timed code runs.
    gc.collect()
    gc.freeze()
    print(f"claims CSV: {rows:,} rows, {len(world.repairs) / 1e6:.1f} MB, generated in "
          f"{time.perf_counter() - started:.1f} s; planted: "
          + ", ".join(f"{k} {v:,}" for k, v in world.planted.items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="aftercare-bench-") as tmp:
        if database_url:
            url = normalize_database_url(database_url)
            with scratch_postgres_schema(url, keep=keep_schema) as schema:
                app = bench_app(url, {"connect_args": {"options": f"-csearch_path={schema}"}})
                lines = measure(app, world, profile=profile)
            database = "PostgreSQL"
        else:
            app = bench_app("sqlite:///" + (sqlite_file or str(Path(tmp) / "aftercare.sqlite3")))
            lines = measure(app, world, profile=profile)
            database = "SQLite"
    _print_table(database, rows, lines)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.fraud_scoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="claims to import")
    parser.add_argument("--database-url",
                        help="PostgreSQL URL to run against (a scratch schema is used)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the import and the first score_all")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the data")
    parser.add_argument("--sqlite-file", help="keep the SQLite database in this (new) file")
    parser.add_argument("--keep-schema", action="store_true",
                        help="PostgreSQL: keep the scratch schema (for a look, or --reuse)")
    parser.add_argument("--reuse", metavar="SCHEMA_OR_FILE",
                        help="skip generating and importing: score the claims of a schema kept "
                             "by --keep-schema (with --database-url) or of a --sqlite-file "
                             "database; earlier flags are deleted first")
    args = parser.parse_args(argv)
    if args.reuse:
        return rescore(args.database_url, args.reuse, profile=args.profile)
    if args.rows < 1000:
        parser.error("--rows must be at least 1000")
    if args.database_url and not args.database_url.startswith("postgres"):
        parser.error("--database-url must be a postgresql:// URL (SQLite is the default)")
    if args.sqlite_file and Path(args.sqlite_file).exists():
        parser.error(f"{args.sqlite_file} exists; the bench starts from an empty database")
    return run(args.rows, args.database_url, profile=args.profile, seed=args.seed,
               sqlite_file=args.sqlite_file, keep_schema=args.keep_schema)


if __name__ == "__main__":
    raise SystemExit(main())
