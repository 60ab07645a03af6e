"""Streaming, idempotent CSV imports with a row-level error report.

The file is read row by row and written in chunks: new keys are inserted, existing keys whose
values differ are updated (each update audited with before/after), identical rows are left
alone, so importing the same file twice changes nothing. Invalid rows are reported with their
row number (the header is row 1), field and reason; valid rows are kept.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import Table, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from audit.service import record_event
from catalog.import_rules import KINDS, ImportContext, KindRules
from catalog.models import BomLine, ImportRun, Part, Product, Purchase
from common.actors import Actor
from common.extensions import db
from common.models import utcnow

CHUNK_ROWS = 2000
MAX_REPORTED_ERRORS = 1000
MAX_FIELD_BYTES = 10_000

_TABLES: dict[str, Table] = {
    "products": Product.__table__,
    "parts": Part.__table__,
    "bom": BomLine.__table__,
    "purchases": Purchase.__table__,
}
_ENTITY = {"products": "product", "parts": "part", "bom": "bom_line", "purchases": "purchase"}
_CONTEXT_LOADERS: dict[str, Callable[[], set[str]]] = {}
_ENRICHERS: dict[str, Callable[[list[dict], ImportReport], None]] = {}


def register_table(kind: str, table: Table, entity: str, *,
                   enrich: Callable[[list[dict], ImportReport], None] | None = None) -> None:
    """Where another domain's kind is written; ``enrich`` completes rows before comparing."""
    _TABLES[kind] = table
    _ENTITY[kind] = entity
    if enrich is not None:
        _ENRICHERS[kind] = enrich


def register_context(name: str, loader: Callable[[], set[str]]) -> None:
    """A set the row rules need from the database (``ImportContext.extra[name]``)."""
    _CONTEXT_LOADERS[name] = loader


class ImportFileError(Exception):
    """The file as a whole cannot be imported (encoding, header, CSV syntax)."""

    def __init__(self, message: str, *, field: str = "file") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "reason": self.reason}


@dataclass
class ImportReport:
    import_id: str
    kind: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    sha256: str | None = None

    @property
    def errors_truncated(self) -> bool:
        return len(self.errors) < self._error_count

    _error_count: int = 0

    def add_error(self, error: RowError) -> None:
        self._error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected else 0

    def summary(self) -> str:
        return (
            f"{self.kind}: {self.rows} rows, {self.inserted} inserted, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.rejected} rejected"
        )


class _HashingReader(io.RawIOBase):
    """Feeds the CSV reader while computing the file's SHA-256 for the audit trail."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        self.digest.update(data)
        buffer[: len(data)] = data
        return len(data)


def _read_rows(
    stream: IO[bytes], rules: KindRules, report: ImportReport
) -> Iterator[tuple[int, dict[str, str]]]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so a bad byte costs one row
    # (reported) instead of the whole file.
    text = io.TextIOWrapper(
        io.BufferedReader(stream), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
        while header == []:  # leading blank lines
            header = next(reader)
    except StopIteration:
        raise ImportFileError("the file is empty; a header row is required") from None
    except csv.Error as exc:
        raise ImportFileError(f"the header row is not valid CSV: {exc}") from None
    columns = [name.strip().lower() for name in header]
    if any(_has_bad_bytes(name) for name in columns):
        raise ImportFileError("the header is not valid UTF-8; save the file as UTF-8 CSV")
    missing = [name for name in rules.required if name not in columns]
    unknown = [name for name in columns if name not in rules.required + rules.optional]
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if missing or unknown or duplicated:
        parts = []
        if missing:
            parts.append("missing columns: " + ", ".join(missing))
        if unknown:
            parts.append("unknown columns: " + ", ".join(unknown))
        if duplicated:
            parts.append("repeated columns: " + ", ".join(duplicated))
        raise ImportFileError("; ".join(parts), field="header")
    row_number = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(
                f"CSV syntax error after row {row_number}: {exc}; rows before it were processed"
            ) from None
        row_number += 1
        report.rows += 1
        if not values or values == [""]:
            report.rows -= 1
            continue
        if len(values) != len(columns):
            report.rejected += 1
            report.add_error(
                RowError(
                    row_number, "row", f"has {len(values)} fields, the header has {len(columns)}"
                )
            )
            continue
        bad = [name for name, value in zip(columns, values, strict=True) if _has_bad_bytes(value)]
        too_long = [
            name
            for name, value in zip(columns, values, strict=True)
            if len(value) > MAX_FIELD_BYTES
        ]
        if bad or too_long:
            report.rejected += 1
            for name in bad:
                report.add_error(RowError(row_number, name, "is not valid UTF-8"))
            for name in too_long:
                report.add_error(RowError(row_number, name, "is too long"))
            continue
        yield row_number, dict(zip(columns, values, strict=True))


def _has_bad_bytes(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value) or "\x00" in value


def _context() -> ImportContext:
    return ImportContext(
        today=datetime.now(UTC).date(),
        skus=set(db.session.scalars(select(Product.sku))),
        part_numbers=set(db.session.scalars(select(Part.part_number))),
        extra={name: loader() for name, loader in _CONTEXT_LOADERS.items()},
    )


def _insert_ignoring_conflicts(table: Table, rules: KindRules, rows: list[dict]) -> set[tuple]:
    """Insert rows, skipping keys another transaction inserted meanwhile; return inserted keys."""
    if not rows:
        return set()
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    key_columns = [table.c[name] for name in rules.key]
    stmt = insert(table).on_conflict_do_nothing(index_elements=key_columns).returning(*key_columns)
    return {tuple(row) for row in db.session.execute(stmt, rows)}


def _write_chunk(
    rules: KindRules,
    chunk: list[tuple[int, dict]],
    report: ImportReport,
    actor: Actor,
    *,
    retry_conflicts: bool = True,
) -> None:
    if not chunk:
        return
    table = _TABLES[rules.kind]
    key_columns = [table.c[name] for name in rules.key]
    keys = [rules.key_of(record) for _, record in chunk]
    key_filter = (
        key_columns[0].in_([k[0] for k in keys])
        if len(key_columns) == 1
        else tuple_(*key_columns).in_(keys)
    )
    existing = {
        tuple(row._mapping[name] for name in rules.key): row._mapping
        for row in db.session.execute(select(table).where(key_filter))
    }
    if rules.kind in _ENRICHERS:
        # Before comparing, so a changed row gets its derived columns recomputed too.
        _ENRICHERS[rules.kind]([record for _, record in chunk], report)
    now = utcnow()
    new_rows: list[dict] = []
    for row_number, record in chunk:
        key = rules.key_of(record)
        current = existing.get(key)
        if current is None:
            values = dict(record)
            for stamp in ("created_at", "updated_at"):
                if stamp in table.c:
                    values[stamp] = now
            if "import_id" in table.c:
                values["import_id"] = report.import_id
            new_rows.append(values)
            continue
        changes = {
            name: (current[name], value)
            for name, value in record.items()
            if _normalized(current[name]) != _normalized(value)
        }
        if not changes:
            report.unchanged += 1
            continue
        db.session.execute(
            table.update()
            .where(*(column == value for column, value in zip(key_columns, key, strict=True)))
            .values({**{name: new for name, (_, new) in changes.items()},
                     **({"updated_at": now} if "updated_at" in table.c else {})})
        )
        report.updated += 1
        record_event(
            entity_type=_ENTITY[rules.kind],
            entity_id="/".join(str(part) for part in key),
            action=f"{_ENTITY[rules.kind]}.updated",
            actor=actor,
            reason=f"import {report.import_id} row {row_number}",
            data={name: {"before": old, "after": new} for name, (old, new) in changes.items()},
        )
    inserted = _insert_ignoring_conflicts(table, rules, new_rows)
    report.inserted += len(inserted)
    lost = [
        (n, r)
        for n, r in chunk
        if rules.key_of(r) not in inserted and rules.key_of(r) not in existing
    ]
    if lost and retry_conflicts:
        # Another import inserted these keys after we looked: treat them as existing rows.
        _write_chunk(rules, lost, report, actor, retry_conflicts=False)


def _normalized(value: Any) -> Any:
    if isinstance(value, list):
        # Lists of strings (exclusions) or of dicts (a repair's parts): order does not matter.
        return sorted(value, key=lambda item: json.dumps(item, sort_keys=True, default=str))
    return value


def run_import(
    kind: str, stream: IO[bytes], *, actor: Actor, filename: str | None = None
) -> ImportReport:
    """Import one CSV stream of ``kind``; commits chunk by chunk and returns the report."""
    rules = KINDS[kind]
    report = ImportReport(import_id=str(uuid.uuid4()), kind=kind)
    # The name comes from the caller (an HTTP header, a path): keep its tail within the column.
    filename = filename[-255:] if filename else None
    run = ImportRun(id=report.import_id, kind=kind, filename=filename, actor=str(actor))
    db.session.add(run)
    db.session.commit()
    ctx = _context()
    hashing = _HashingReader(stream)
    seen: dict[tuple, int] = {}
    chunk: list[tuple[int, dict]] = []
    try:
        try:
            for row_number, raw in _read_rows(hashing, rules, report):
                record, errors = rules.validate(raw, ctx)
                if record is None:
                    report.rejected += 1
                    for field_name, reason in errors:
                        report.add_error(RowError(row_number, field_name, reason))
                    continue
                key = rules.key_of(record)
                if key in seen:
                    report.rejected += 1
                    report.add_error(
                        RowError(
                            row_number, rules.key[-1], f"duplicate of row {seen[key]} in this file"
                        )
                    )
                    continue
                seen[key] = row_number
                chunk.append((row_number, record))
                if len(chunk) >= CHUNK_ROWS:
                    _write_chunk(rules, chunk, report, actor)
                    db.session.commit()
                    chunk = []
        except ImportFileError:
            # A syntax error part-way keeps the rows before it, as the message says and as the
            # chunks already committed are kept, whatever side of a chunk boundary it falls.
            _write_chunk(rules, chunk, report, actor)
            db.session.commit()
            raise
        _write_chunk(rules, chunk, report, actor)
    except BaseException as exc:
        db.session.rollback()
        _finish(run, report, hashing, actor, failure=str(exc) or exc.__class__.__name__)
        raise
    _finish(run, report, hashing, actor)
    return report


def _finish(
    run: ImportRun,
    report: ImportReport,
    hashing: _HashingReader,
    actor: Actor,
    failure: str | None = None,
) -> None:
    report.sha256 = hashing.digest.hexdigest()
    run = db.session.merge(run)
    run.finished_at = utcnow()
    run.sha256 = report.sha256
    run.rows, run.inserted, run.updated = report.rows, report.inserted, report.updated
    run.unchanged, run.rejected = report.unchanged, report.rejected
    run.errors = [error.as_dict() for error in report.errors]
    record_event(
        entity_type="import",
        entity_id=report.import_id,
        action=f"{report.kind}.import_failed" if failure else f"{report.kind}.imported",
        actor=actor,
        reason=failure,
        data={
            "filename": run.filename,
            "sha256": report.sha256,
            "rows": report.rows,
            "inserted": report.inserted,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "rejected": report.rejected,
        },
    )
    db.session.commit()
