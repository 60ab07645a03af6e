"""Streaming, idempotent CSV imports with a row-level error report.

The file is read row by row and written in chunks: new keys are inserted, existing keys whose
values differ are updated (each update audited with before/after), identical rows are left
alone, so importing the same file twice changes nothing. Invalid rows are reported with their
row number (the header is row 1), field and reason; valid rows are kept.

A chunk is written in a few statements whatever its size: ``INSERT ... ON CONFLICT (key) DO
NOTHING RETURNING key`` (fed by COPY on PostgreSQL), then one lookup of the keys that were not
inserted, which are compared and updated. While a file turns out to be mostly known rows (a
re-import) the keys are looked up before inserting instead. A key another import inserts
meanwhile is simply not inserted here, and is then treated as an existing row. A chunk's
INSERT runs on a thread of its own while the next chunk is read and validated.
"""

from __future__ import annotations

import csv
import functools
import gc
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import IO, Any

from sqlalchemy import (
    JSON,
    Connection,
    Date,
    DateTime,
    Numeric,
    Table,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import Dialect

from audit.service import record_event
from catalog.import_rules import KINDS, ImportContext, KindRules
from catalog.models import BomLine, ImportRun, Part, Product, Purchase
from common.actors import Actor
from common.extensions import db
from common.fastsql import bind_processor
from common.models import utcnow

# Rows validated, enriched and written together: a few statements per chunk, not per row.
CHUNK_ROWS = 5000
# Rows per transaction. SQLite writes every page a transaction touched to the WAL at commit, and
# new keys land on random index pages, so committing every few thousand rows rewrites the
# indexes over and over; a commit every 50,000 rows (about two seconds of holding the write
# lock) keeps that cost small.
COMMIT_ROWS = 50_000
# SQLite page cache (KiB) of the importing connection while an import runs.
SQLITE_IMPORT_CACHE_KIB = 256 * 1024
MAX_REPORTED_ERRORS = 1000
MAX_FIELD_BYTES = 10_000
# The file is read (and hashed) a megabyte at a time: hashing lets go of the GIL, and each time
# the import's insert thread may take it for as long as it likes.
_READ_BYTES = 1 << 20
# SQLite binds at most 32,766 parameters per statement.
_SQLITE_MAX_PARAMS = 32_000
_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
# Lone surrogates (undecodable bytes kept by surrogateescape) and NUL.
_BAD_TEXT = re.compile("[\udc80-\udcff\x00]")

_TABLES: dict[str, Table] = {
    "products": Product.__table__,
    "parts": Part.__table__,
    "bom": BomLine.__table__,
    "purchases": Purchase.__table__,
}
_ENTITY = {"products": "product", "parts": "part", "bom": "bom_line", "purchases": "purchase"}
_CONTEXT_LOADERS: dict[str, Callable[[], set[str]]] = {}
_ENRICHERS: dict[str, Callable[[list[dict], ImportContext], None]] = {}


def register_table(kind: str, table: Table, entity: str, *,
                   enrich: Callable[[list[dict], ImportContext], None] | None = None) -> None:
    """Where another domain's kind is written; ``enrich`` completes rows before comparing.

    ``enrich`` gets each chunk's valid records and the import's context; what it reads once per
    import (a catalog) it may keep in ``ctx.cache``.
    """
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
        io.BufferedReader(stream, buffer_size=_READ_BYTES), encoding="utf-8-sig",
        errors="surrogateescape", newline=""
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
        joined = "\x1f".join(values)  # one scan of the row instead of one per field
        if len(joined) <= MAX_FIELD_BYTES and not _BAD_TEXT.search(joined):
            yield row_number, dict(zip(columns, values, strict=True))
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
    return _BAD_TEXT.search(value) is not None


def _context() -> ImportContext:
    return ImportContext(
        today=datetime.now(UTC).date(),
        skus=set(db.session.scalars(select(Product.sku))),
        part_numbers=set(db.session.scalars(select(Part.part_number))),
        extra={name: loader() for name, loader in _CONTEXT_LOADERS.items()},
    )


# --- writing rows: plain SQL on the session's connection -----------------------------------
#
# The rows of a chunk go to the database in one or two statements, bypassing the SQL
# expression layer's per-row work; values are converted with the column types' own bind and
# result processors, so they are stored and read back exactly as through SQLAlchemy.


@dataclass(frozen=True)
class _TablePlan:
    """How to write and read ``table`` on one dialect: names, types and value converters."""

    table: Table
    dialect: Dialect
    quoted: dict[str, str]
    sql_types: dict[str, str]
    binders: dict[str, Callable[[Any], Any] | None]
    json: frozenset[str]
    # Columns whose bound value depends on the value alone (equal values, equal results).
    by_value: frozenset[str]

    def readers(self, description: Any) -> list[Callable[[Any], Any] | None]:
        """Result converters for the table's columns, given the cursor's column types."""
        return [column.type.dialect_impl(self.dialect).result_processor(self.dialect, info[1])
                for column, info in zip(self.table.c, description, strict=True)]

    @property
    def postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    def bind_column(self, name: str, values: list, json_texts: _JsonTexts | None = None) -> list:
        """One column's values as the driver takes them: a column at a time, so each value
        costs one C-level ``map`` step instead of a Python loop over every row."""
        convert = self.binders[name]
        if convert is None:
            return values
        if name in self.json:
            return list(map((json_texts or _JsonTexts()).wrap(convert), values))
        if name in self.by_value:
            # A chunk repeats a few dates and amounts: convert each distinct one once.
            converted = {value: convert(value) for value in set(values)}
            return list(map(converted.__getitem__, values))
        return list(map(convert, values))

    def bind_rows(self, columns: tuple[str, ...], rows: list[tuple]) -> list[tuple]:
        if not rows or all(self.binders[name] is None for name in columns):
            return rows
        bound = [self.bind_column(name, list(values))
                 for name, values in zip(columns, zip(*rows, strict=True), strict=True)]
        return list(zip(*bound, strict=True))


@functools.lru_cache(maxsize=64)
def _plan(table: Table, dialect: Dialect) -> _TablePlan:
    quote = dialect.identifier_preparer.quote
    binders, sql_types = {}, {}
    for column in table.c:
        binders[column.name] = bind_processor(column.type, dialect)
        sql_types[column.name] = column.type.compile(dialect)
    json = frozenset(c.name for c in table.c if isinstance(c.type, JSON))
    by_value = frozenset(c.name for c in table.c if isinstance(c.type, Date | Numeric)
                         and not isinstance(c.type, DateTime))
    return _TablePlan(table, dialect, {c.name: quote(c.name) for c in table.c}, sql_types,
                      binders, json, by_value)


class _JsonTexts:
    """JSON texts of the values one import bound, by object.

    Rows of a file often share one parsed value (the same parts list, see
    partners.importing), and serializing JSON is the dearest conversion: each shared object is
    serialized once per import, not once per row or chunk. The object is kept beside its text,
    so its ``id`` cannot be reused while it is remembered.
    """

    LIMIT = 100_000

    def __init__(self) -> None:
        self.texts: dict[int, tuple[Any, Any]] = {}

    def wrap(self, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
        texts = self.texts

        def converted(value: Any) -> Any:
            known = texts.get(id(value))
            if known is not None and known[0] is value:
                return known[1]
            text = convert(value)
            if len(texts) >= self.LIMIT:
                texts.clear()
            texts[id(value)] = (value, text)
            return text

        return converted


def _python_defaults(table: Table, given: set[str]) -> dict[str, Any]:
    """Python-side column defaults SQLAlchemy would apply to an INSERT that omits them."""
    values = {}
    for column in table.c:
        default = column.default
        if column.name in given or default is None or not (default.is_scalar
                                                            or default.is_callable):
            continue
        values[column.name] = default.arg(None) if default.is_callable else default.arg
    return values


def _prepare_insert(
    table: Table, rules: KindRules, rows: list[dict], extra: Mapping[str, Any] | None = None,
    *, json_texts: _JsonTexts | None = None, fresh: bool = False,
) -> Callable[[], set[tuple]]:
    """Bind ``rows`` (on PostgreSQL also COPY them); the function returned inserts them,
    skipping keys another transaction inserted meanwhile, and returns the keys it inserted.

    ``extra`` holds values every row gets (time stamps, the import id); ``json_texts``
    remembers serialized JSON values for the rest of the import; ``fresh`` says the keys are
    probably not in the table (see ``_copy_for_insert``). The function returned waits
    for the database almost all the time (the GIL let go) and needs no application context,
    so it may run on another thread while this one goes on.
    """
    if not rows:
        return set
    connection = db.session.connection()
    plan = _plan(table, connection.dialect)
    constants = {**(extra or {})}
    constants.update(_python_defaults(table, set(rows[0]) | set(constants)))
    # In the unique index's order, its pages (and those of any index led by the same columns)
    # are written one after the other instead of at random.
    order = _index_columns(table, rules.key)
    rows = sorted(rows, key=itemgetter(*order))
    given = tuple(rows[0])
    columns = given + tuple(constants)
    picked = list(map(itemgetter(*given), rows)) if len(given) > 1 else [
        (row[given[0]],) for row in rows]
    values = [plan.bind_column(name, list(column), json_texts)
              for name, column in zip(given, zip(*picked, strict=True), strict=True)]
    # Values every row shares are bound once.
    values += [plan.bind_column(name, [value]) * len(rows) for name, value in constants.items()]
    if plan.postgres:
        insert = _copy_for_insert(connection, plan, columns, rules.key, order, values,
                                  fresh=fresh)
    else:
        insert = _values_insert(connection, plan, columns, rules.key, values)
    keys = [rules.key_of(row) for row in rows]
    bound_keys = [values[columns.index(name)] for name in rules.key]

    def inserted() -> set[tuple]:
        returned = insert()  # None: every row was inserted
        if returned is None or len(returned) == len(keys):
            return set(keys)
        # Some keys were taken meanwhile: match the returned (bound) keys with the rows'.
        taken = set(map(tuple, returned))
        return {key for key, bound in zip(keys, zip(*bound_keys, strict=True), strict=True)
                if bound in taken}

    return inserted


@functools.lru_cache(maxsize=64)
def _index_columns(table: Table, key: tuple[str, ...]) -> tuple[str, ...]:
    """``key``'s columns in the order of the table's unique constraint on them."""
    for constraint in sorted(table.constraints, key=lambda c: c.name or ""):
        names = tuple(getattr(constraint, "columns", {}).keys())
        if isinstance(constraint, UniqueConstraint) and set(names) == set(key):
            return names
    return key


def _values_insert(connection: Connection, plan: _TablePlan, columns: tuple[str, ...],
                   key: tuple[str, ...], values: list[list]) -> Callable[[], list[tuple] | None]:
    """SQLite: multi-row ``INSERT ... VALUES ... ON CONFLICT DO NOTHING RETURNING key``."""
    table = plan.dialect.identifier_preparer.format_table(plan.table)
    names = ", ".join(plan.quoted[name] for name in columns)
    keys = ", ".join(plan.quoted[name] for name in key)
    one = "(" + ", ".join("?" * len(columns)) + ")"
    per_statement = max(1, _SQLITE_MAX_PARAMS // len(columns))
    rows = list(zip(*values, strict=True))
    statements = []
    for start in range(0, len(rows), per_statement):
        batch = rows[start:start + per_statement]
        statements.append((f"INSERT INTO {table} ({names}) VALUES "
                           f"{', '.join([one] * len(batch))} "
                           f"ON CONFLICT ({keys}) DO NOTHING RETURNING {keys}",
                           tuple(chain.from_iterable(batch))))
    raw = connection.connection.driver_connection
    return functools.partial(_fetch_all, raw, statements)


def _copy_for_insert(connection: Connection, plan: _TablePlan, columns: tuple[str, ...],
                     key: tuple[str, ...], order: tuple[str, ...], values: list[list],
                     *, fresh: bool) -> Callable[[], list[tuple] | None]:
    """PostgreSQL: COPY the rows into the table, or into a temporary table and from there
    with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING key``.

    COPY streams rows without a statement per row or a parameter per value, and straight
    into the table it writes them a thousand at a time, for half the server's work of the
    ``INSERT``, which takes them one by one (ready to skip each): when the keys are likely
    ``fresh`` (looked up, or the last chunk had no known key) COPY is tried first, in a
    savepoint, and a key another transaction holds sends the chunk the other way. The
    temporary table belongs to this connection, so concurrent imports do not meet there.
    """
    table = plan.dialect.identifier_preparer.format_table(plan.table)
    names = ", ".join(plan.quoted[name] for name in columns)
    keys = ", ".join(plan.quoted[name] for name in key)
    ordered = ", ".join(plan.quoted[name] for name in order)
    temp = f"pg_temp.import_{plan.table.name}"
    raw = connection.connection.driver_connection

    def insert() -> list[tuple] | None:
        with raw.cursor() as cursor:
            if fresh:
                cursor.execute("SAVEPOINT import_copy")
                try:
                    _copy(cursor, f"{table} ({names})", values)
                except Exception as exc:
                    if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                        raise
                    cursor.execute("ROLLBACK TO SAVEPOINT import_copy")
                else:
                    cursor.execute("RELEASE SAVEPOINT import_copy")
                    return None
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} ON COMMIT DELETE ROWS "
                           f"AS SELECT * FROM {table} WITH NO DATA")
            cursor.execute(f"TRUNCATE {temp}")
            _copy(cursor, f"{temp} ({names})", values)
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {temp} "
                           f"ORDER BY {ordered} ON CONFLICT ({keys}) DO NOTHING RETURNING {keys}")
            return cursor.fetchall()

    return insert


def _copy(cursor: Any, target: str, values: list[list]) -> None:
    with cursor.copy(f"COPY {target} FROM STDIN") as copy:
        for row in zip(*values, strict=True):
            copy.write_row(row)


def _fetch_all(raw: Any, statements: list[tuple[str, tuple | None]]) -> list[tuple]:
    """Run statements on the driver's connection; their rows as plain tuples."""
    cursor = raw.cursor()
    try:
        rows: list[tuple] = []
        for sql, params in statements:
            cursor.execute(sql, params)
            rows.extend(cursor.fetchall())
        return rows
    finally:
        cursor.close()


def _select_by_keys(table: Table, key: tuple[str, ...], keys: list[tuple]) -> dict[tuple, dict]:
    """The stored rows with these keys, as column -> value, by key.

    A join with the keys (a VALUES list on SQLite, arrays on PostgreSQL) so every key is an
    index lookup: SQLite scans the whole table for ``(a, b) IN ((...), ...)``.
    """
    if not keys:
        return {}
    connection = db.session.connection()
    plan = _plan(table, connection.dialect)
    quoted = plan.quoted
    name = plan.dialect.identifier_preparer.format_table(table)
    columns = ", ".join(f"t.{quoted[c.name]}" for c in table.c)
    on = " AND ".join(f"t.{quoted[k]} = k.{quoted[k]}" for k in key)
    bound = plan.bind_rows(key, keys)
    rows: list[tuple] = []
    readers = None
    if plan.postgres:
        arrays = ", ".join(f"%s::{plan.sql_types[k]}[]" for k in key)
        sql = (f"SELECT {columns} FROM {name} AS t JOIN unnest({arrays}) "
               f"AS k({', '.join(quoted[k] for k in key)}) ON {on}")
        statements = [(sql, tuple(list(column) for column in zip(*bound, strict=True)))]
    else:
        one = "(" + ", ".join("?" * len(key)) + ")"
        per_statement = _SQLITE_MAX_PARAMS // len(key)
        statements = []
        for start in range(0, len(bound), per_statement):
            batch = bound[start:start + per_statement]
            sql = (f"WITH k({', '.join(quoted[k] for k in key)}) AS "
                   f"(VALUES {', '.join([one] * len(batch))}) "
                   f"SELECT {columns} FROM k JOIN {name} AS t ON {on}")
            statements.append((sql, tuple(value for row in batch for value in row)))
    for sql, params in statements:
        result = connection.exec_driver_sql(sql, params)
        readers = readers or plan.readers(result.cursor.description)
        rows.extend(result.fetchall())
    names = [column.name for column in table.c]
    found = {}
    for row in rows:
        values = {column: read(value) if read is not None and value is not None else value
                  for column, read, value in zip(names, readers, row, strict=True)}
        found[tuple(values[k] for k in key)] = values
    return found


@dataclass
class _Inserting:
    """A chunk whose new rows are being inserted on the writer's thread."""

    keyed: list[tuple[int, dict, tuple]]
    existing: dict[tuple, dict]
    now: datetime
    inserted: Future[set[tuple]]


class _ChunkWriter:
    """Writes one import's valid rows chunk by chunk: insert the new, update the changed.

    A chunk's INSERT runs on a thread of its own while the caller reads and validates the next
    chunk: the database (or the driver, which lets go of the GIL while it waits) works while
    Python parses. Nothing else touches the connection meanwhile: every other statement, and
    every commit, first waits for that insert (``finish``).
    """

    def __init__(self, rules: KindRules, report: ImportReport, actor: Actor,
                 ctx: ImportContext) -> None:
        self.rules, self.report, self.actor, self.ctx = rules, report, actor, ctx
        self.table = _TABLES[rules.kind]
        self.enrich = _ENRICHERS.get(rules.kind)
        # Look existing keys up before inserting while the file is mostly known rows (a
        # re-import); once a chunk is mostly new, insert first and look up only the conflicts.
        self.lookup_first = True
        self.json_texts = _JsonTexts()
        # Whether the last chunk's new rows were all inserted: then this chunk's keys are
        # probably new too.
        self.all_new = True
        self.inserter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-insert")
        self.inserting: _Inserting | None = None

    def write(self, chunk: list[tuple[int, dict]]) -> None:
        """Start writing ``chunk``, once the previous chunk is finished."""
        self.finish()
        if not chunk:
            return
        rules = self.rules
        records = [record for _, record in chunk]
        if self.enrich is not None:
            # Before comparing, so a changed row gets its derived columns recomputed too.
            self.enrich(records, self.ctx)
        keyed = [(row_number, record, rules.key_of(record)) for row_number, record in chunk]
        existing = (_select_by_keys(self.table, rules.key, [key for _, _, key in keyed])
                    if self.lookup_first else {})
        now = utcnow()
        new = [record for _, record, key in keyed if key not in existing]
        fresh = self.lookup_first or self.all_new
        self.inserting = _Inserting(keyed, existing, now, self.inserter.submit(_prepare_insert(
            self.table, rules, new, self._stamps(now), json_texts=self.json_texts, fresh=fresh)))

    def finish(self) -> None:
        """Wait for the chunk being inserted, then update its known rows that changed."""
        if self.inserting is None:
            return
        pending, self.inserting = self.inserting, None
        keyed, existing, now = pending.keyed, pending.existing, pending.now
        inserted = pending.inserted.result()
        self.report.inserted += len(inserted)
        known = [(n, record, key) for n, record, key in keyed if key not in inserted]
        # Keys not inserted and not seen before: another import inserted them after we looked
        # (or we did not look); they are existing rows now.
        missing = [key for _, _, key in known if key not in existing]
        self.all_new = not missing
        if missing:
            existing.update(_select_by_keys(self.table, self.rules.key, missing))
        for row_number, record, key in known:
            current = existing.get(key)
            if current is not None:
                self._update(row_number, record, key, current, now)
        self.lookup_first = 2 * len(known) > len(keyed)

    def close(self) -> None:
        """Let the insert under way end (its outcome is the caller's to handle), then stop."""
        self.inserter.shutdown(wait=True)

    def _stamps(self, now: datetime) -> dict[str, Any]:
        columns = self.table.c
        stamps: dict[str, Any] = {name: now for name in ("created_at", "updated_at")
                                  if name in columns}
        if "import_id" in columns:
            stamps["import_id"] = self.report.import_id
        return stamps

    def _update(self, row_number: int, record: dict, key: tuple, current: Mapping[str, Any],
                now: datetime) -> None:
        changes = {
            name: (current[name], value)
            for name, value in record.items()
            if _normalized(current[name]) != _normalized(value)
        }
        if not changes:
            self.report.unchanged += 1
            return
        key_columns = [self.table.c[name] for name in self.rules.key]
        db.session.execute(
            self.table.update()
            .where(*(column == value for column, value in zip(key_columns, key, strict=True)))
            .values({**{name: new for name, (_, new) in changes.items()},
                     **({"updated_at": now} if "updated_at" in self.table.c else {})})
        )
        self.report.updated += 1
        entity = _ENTITY[self.rules.kind]
        record_event(
            entity_type=entity,
            entity_id="/".join(str(part) for part in key),
            action=f"{entity}.updated",
            actor=self.actor,
            reason=f"import {self.report.import_id} row {row_number}",
            data={name: {"before": old, "after": new} for name, (old, new) in changes.items()},
        )


def _normalized(value: Any) -> Any:
    if isinstance(value, list):
        # Lists of strings (exclusions) or of dicts (a repair's parts): order does not matter.
        return sorted(value, key=lambda item: json.dumps(item, sort_keys=True, default=str))
    return value


def run_import(
    kind: str, stream: IO[bytes], *, actor: Actor, filename: str | None = None
) -> ImportReport:
    """Import one CSV stream of ``kind``; commits every ``COMMIT_ROWS`` rows, returns the report."""
    rules = KINDS[kind]
    report = ImportReport(import_id=str(uuid.uuid4()), kind=kind)
    # The name comes from the caller (an HTTP header, a path): keep its tail within the column.
    filename = filename[-255:] if filename else None
    run = ImportRun(id=report.import_id, kind=kind, filename=filename, actor=str(actor))
    db.session.add(run)
    db.session.commit()
    page_cache = _PageCache()
    page_cache.widen()
    ctx = _context()
    writer = _ChunkWriter(rules, report, actor, ctx)
    hashing = _HashingReader(stream)
    seen: dict[tuple, int] = {}
    chunk: list[tuple[int, dict]] = []
    uncommitted = 0
    validate, key_of, last_key = rules.validate, rules.key_of, rules.key[-1]
    try:
        with _collector_paused():
            try:
                for row_number, raw in _read_rows(hashing, rules, report):
                    record, errors = validate(raw, ctx)
                    if record is None:
                        report.rejected += 1
                        for field_name, reason in errors:
                            report.add_error(RowError(row_number, field_name, reason))
                        continue
                    key = key_of(record)
                    first = seen.setdefault(key, row_number)
                    if first != row_number:
                        report.rejected += 1
                        report.add_error(RowError(row_number, last_key,
                                                  f"duplicate of row {first} in this file"))
                        continue
                    chunk.append((row_number, record))
                    if len(chunk) >= CHUNK_ROWS:
                        writer.write(chunk)
                        uncommitted += len(chunk)
                        chunk = []
                        if uncommitted >= COMMIT_ROWS:
                            writer.finish()
                            db.session.commit()
                            page_cache.widen()
                            uncommitted = 0
            except ImportFileError:
                # A syntax error part-way keeps the rows before it, as the message says and as
                # the chunks already committed are kept, whatever side of a chunk boundary it
                # falls.
                writer.write(chunk)
                writer.finish()
                db.session.commit()
                raise
            writer.write(chunk)
            writer.finish()
    except BaseException as exc:
        writer.close()  # nothing may use the connection while it is rolled back
        db.session.rollback()
        page_cache.restore()
        _finish(run, report, hashing, actor, failure=str(exc) or exc.__class__.__name__)
        raise
    writer.close()
    page_cache.restore()
    _finish(run, report, hashing, actor)
    return report


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while rows are imported.

    Every row makes a few short-lived containers, so the collector runs thousands of times
    per million rows, and its full passes walk every object the process holds: a fifth of
    the import's time, to find no garbage (rows are freed by reference counting). Garbage
    of other threads meanwhile waits for the collector to be enabled again at the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _PageCache:
    """SQLite: a bigger page cache on the importing connection while the import runs.

    New keys land on random pages of every index; with SQLite's default 2 MB cache most of
    them are read back from the file and written out again mid-transaction. The cache grows
    only as pages are used and is shrunk back when the import ends. PostgreSQL: nothing.
    """

    def __init__(self) -> None:
        self.original: int | None = None

    def widen(self) -> None:
        connection = db.session.connection()
        if connection.dialect.name != "sqlite":
            return
        if self.original is None:
            self.original = connection.exec_driver_sql("PRAGMA cache_size").scalar()
        connection.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}")

    def restore(self) -> None:
        if self.original is not None:
            db.session.connection().exec_driver_sql(f"PRAGMA cache_size = {self.original:d}")


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
