"""Hot-path statements run straight on the DBAPI cursor of the caller's connection.

Filing a claim writes about ten rows in ten statements. Through SQLAlchemy Core each statement
cost ~100 µs of Python (cache key, parameter processing, result set-up) against ~20 µs for the
driver itself, which made SQLAlchemy's own machinery the largest single cost of a claim. A
``FastStatement`` is compiled once per dialect into the driver's SQL and paramstyle with the
columns' bind processors, and then only converts its parameters and calls the cursor.

What SQLAlchemy would still do for these statements is kept: ``before_cursor_execute``
listeners run (fault injection and statement counting rely on them), a driver error is raised
as SQLAlchemy's own exception class (``IntegrityError``, ``OperationalError``...), and a lost
connection is invalidated so the pool replaces it. Plain appends and small updates belong
here, and a hot read (``FastQuery``): a Core SELECT compiled once, whose rows get the columns'
result processing (SQLite's dates from text, JSON decoded); other reads stay on Core.

On PostgreSQL each statement cost a round trip, and a claim's dozen of them kept the web
workers waiting; pipelining them still cost the client a send and the server a message each.
``write_batch`` defers a transaction's writes and sends them at the commit as one statement
of data-modifying CTEs. Child rows name their parents by natural key
(``insert_into(references=)``) and RETURNING values are read only when needed (``Returned``),
so nothing forces the writes out before the commit.
"""

from __future__ import annotations

import functools
import json
import re
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import RawCursor
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Select,
    Table,
    UniqueConstraint,
    bindparam,
    event,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from common.extensions import db

_CONNECTION_KEY = "aftercare.fastsql.connection"


def connection_of(session: Session | None = None) -> Connection:
    """The connection of the session's current transaction (default: the app's session).

    ``Session.connection()`` walks the session's transaction state machine on every call; a
    claim filing asks for the connection a dozen times, so it is looked up once per transaction.
    """
    session = session if session is not None else db.session()
    transaction = session.get_transaction()
    cached = session.info.get(_CONNECTION_KEY)
    if cached is not None and transaction is not None and cached[0] is transaction \
            and transaction.is_active and not cached[1].invalidated:
        return cached[1]
    connection = session.connection()
    session.info[_CONNECTION_KEY] = (session.get_transaction(), connection)
    return connection


def bind_processor(type_: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """The column type's bind processor, or a cheaper one doing the same for common types.

    Both drivers take Python booleans as they are, SQLite stores a date as its ISO text, and
    PostgreSQL takes JSON as its text (psycopg's ``Json`` wrapper would serialize it again).
    """
    if isinstance(type_, Boolean):
        return None
    if isinstance(type_, Date) and not isinstance(type_, DateTime) and dialect.name == "sqlite":
        return _iso_date
    if isinstance(type_, JSON) and dialect.name == "postgresql":
        # The generic processor: the value's JSON text.
        return type_._make_bind_processor(None, dialect._json_serializer or json.dumps)
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _iso_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class _Plan:
    sql: str
    positional: tuple[str, ...] | None  # parameter order for positional paramstyles
    binders: tuple[tuple[str, Callable[[Any], Any] | None], ...]


class FastStatement:
    """A SQL statement with typed ``:name`` parameters, run on the connection's DBAPI cursor.

    ``ctes`` are the ``(name, sql)`` parts of its WITH clause, kept apart so that a
    ``write_batch`` can put them beside other statements'; ``returning`` names the columns its
    RETURNING gives back, which ``returned`` can then defer in a batch.
    """

    def __init__(self, sql: str, types: Mapping[str, TypeEngine],
                 defaults: Mapping[str, Callable[[], Any]] | None = None, *,
                 ctes: Sequence[tuple[str, str]] = (), returning: Sequence[str] = ()) -> None:
        self.sql, self.ctes, self.returning = sql, tuple(ctes), tuple(returning)
        self.types = dict(types)
        whole = f"WITH {_with_list(self.ctes)} {sql}" if self.ctes else sql
        self._clause = text(whole).bindparams(
            *(bindparam(name, type_=type_) for name, type_ in types.items()))
        self._names = tuple(types)
        self._defaults = dict(defaults or {})
        self._plans: dict[str, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled = self._clause.compile(dialect=dialect)
            binds = compiled.binds
            plan = self._plans[dialect.name] = _Plan(
                sql=compiled.string,
                positional=tuple(compiled.positiontup) if compiled.positional else None,
                binders=tuple((name, bind_processor(binds[name].type, dialect))
                              for name in self._names),
            )
        return plan

    def _bind(self, plan: _Plan, params: Mapping[str, Any]) -> Any:
        return _bind(plan, params, self._defaults)

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """Run once; returns the DBAPI cursor, or None when a ``write_batch`` took it."""
        plan = self._plan(connection.dialect)
        args = self._bind(plan, params)
        batch = _batch_of(connection)
        if batch is not None:
            batch.add(self, [args])
            return None
        return self._run(connection, plan, args, many=False)

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        plan = self._plan(connection.dialect)
        bound = [self._bind(plan, row) for row in rows]
        batch = _batch_of(connection)
        if batch is not None and self.composes_rows and bound:
            batch.add(self, bound)
            return
        self._run(connection, plan, bound, many=True).close()

    # An INSERT ... VALUES writes many rows as one statement in a batch (``_Insert``).
    composes_rows = False

    def scalar(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the one row a RETURNING statement gives back."""
        return self.returned(connection, params).value

    @staticmethod
    def _run(connection: Connection, plan: _Plan, args: Any, *, many: bool,
             cursor: Any = None) -> Any:
        if cursor is None:
            cursor = connection.connection.driver_connection.cursor()
        for listener in connection.dispatch.before_cursor_execute:
            listener(connection, cursor, plan.sql, args, None, many)
        with _translated(connection, plan.sql, args, many=many):
            if many:
                cursor.executemany(plan.sql, args)
            else:
                cursor.execute(plan.sql, args)
        return cursor

    def _numbered_plan(self, dialect: Dialect) -> _Plan:
        """PostgreSQL: the plan with ``$n`` placeholders, for psycopg's ``RawCursor``.

        psycopg rewrites ``%(name)s`` to ``$n`` on every run of a statement longer than 4 kB
        (or with more than 50 parameters), as a batch's usually is; this does it once.
        """
        key = f"{dialect.name}:numbered"  # beside the dialect's own plan in ``_plans``
        numbered = self._plans.get(key)
        if numbered is None:
            plan, order = self._plan(dialect), {}

            def number(match: re.Match) -> str:
                if match.group(1) is None:
                    return "%"
                return f"${order.setdefault(match.group(1), len(order) + 1)}"

            numbered = self._plans[key] = _Plan(
                _PYFORMAT.sub(number, plan.sql), tuple(order), plan.binders)
        return numbered

    def returned(self, connection: Connection, params: Mapping[str, Any]) -> Returned:
        """Run once; in a ``write_batch`` the RETURNING row is there when the batch has run."""
        plan = self._plan(connection.dialect)
        args = self._bind(plan, params)
        batch = _batch_of(connection)
        if batch is not None and self.returning:
            returned = Returned(batch=batch)
            batch.add(self, [args], returned)
            return returned
        cursor = self._run(connection, plan, args, many=False)
        try:
            with _translated(connection, plan.sql, args):
                return Returned(cursor.fetchone())
        finally:
            cursor.close()


def _with_list(ctes: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{name} AS ({sql})" for name, sql in ctes)


@contextmanager
def _translated(connection: Connection, sql: str, args: Any, *,
                many: bool = False) -> Iterator[None]:
    """Raise a driver error as SQLAlchemy's exception class; invalidate a lost connection."""
    dialect = connection.dialect
    error_class = dialect.loaded_dbapi.Error
    try:
        yield
    except error_class as exc:
        try:
            dbapi_connection = connection.connection.driver_connection
        except sa_exc.ResourceClosedError:  # read after the commit gave the connection back
            dbapi_connection = None
        lost = session_ended(exc) or (
            dbapi_connection is not None and dialect.is_disconnect(exc, dbapi_connection, None))
        if lost and dbapi_connection is not None:
            connection.invalidate(exc)
        raise sa_exc.DBAPIError.instance(
            sql, args, exc, error_class, connection_invalidated=lost, dialect=dialect,
            ismulti=many,
        ) from exc


class Returned:
    """A statement's RETURNING row; in a ``write_batch``, there once the batch has run.

    Reading it earlier runs the batch's statements so far (inside the transaction).
    """

    __slots__ = ("_batch", "_row")

    def __init__(self, row: tuple | None = None, *, batch: _Batch | None = None) -> None:
        self._row, self._batch = row, batch

    @property
    def row(self) -> tuple | None:
        """The returned row (None if the statement returned none)."""
        if self._batch is not None:
            self._batch.run_for(self)
        return self._row

    @property
    def value(self) -> Any:
        """The first returned column."""
        return self.row[0]


# --- one statement for a transaction's writes (PostgreSQL) --------------------------------------

_BATCH_KEY = "aftercare.fastsql.batch"  # in the DBAPI connection's info: the open batch
_PYFORMAT = re.compile(r"%%|%\((\w+)\)s")  # psycopg's named placeholder, or an escaped %
# A ``text()`` parameter, as SQLAlchemy finds them.
_TEXT_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def _batch_of(connection: Connection) -> _Batch | None:
    if connection.invalidated:  # its info is out of reach; ``write_batch`` clears it
        return None
    return connection.info.get(_BATCH_KEY)


def _end_batch(connection: Connection) -> _Batch | None:
    batch = _batch_of(connection)
    if batch is not None:
        del connection.info[_BATCH_KEY]
    return batch


@dataclass
class _Pending:
    statement: FastStatement
    rows: list[dict[str, Any]]  # each row's bound arguments
    returned: Returned | None


class _Batch:
    """The writes a ``write_batch`` block has deferred, run as one statement."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.driver = connection.connection.driver_connection
        self.pending: list[_Pending] = []
        self.cte_names: set[str] = set()
        self.autocommit = False  # the block switched the driver to autocommit

    def add(self, statement: FastStatement, rows: list[dict[str, Any]],
            returned: Returned | None = None) -> None:
        names = {name for name, _sql in statement.ctes}
        if names & self.cte_names:  # two of a kind cannot share one WITH clause
            self.run(final=False)
        self.cte_names |= names
        self.pending.append(_Pending(statement, rows, returned))

    def run_for(self, returned: Returned) -> None:
        if any(p.returned is returned for p in self.pending):
            self.run(final=False)
        if returned._batch is not None:
            raise RuntimeError("the statement was not written: its batch failed or was dropped")

    def run(self, *, final: bool) -> None:
        """Send the deferred writes as one statement.

        ``final``: at the commit. Otherwise something in the block needs the database to have
        the writes now; in autocommit they would then commit without the rest, so the block's
        transaction is begun first.
        """
        pending, self.pending, self.cte_names = self.pending, [], set()
        if not pending:
            return
        if self.autocommit and not final:
            self.restore_autocommit()
        connection = self.connection
        composed = _composed(tuple((p.statement, len(p.rows), p.returned is not None)
                                   for p in pending))
        plan = composed._numbered_plan(connection.dialect)
        values = {f"w{i}_{r}_{name}": value
                  for i, p in enumerate(pending) for r, row in enumerate(p.rows)
                  for name, value in row.items()}
        args = tuple(values[name] for name in plan.positional)
        cursor = FastStatement._run(connection, plan, args, many=False,
                                    cursor=RawCursor(self.driver))
        try:
            with _translated(connection, plan.sql, args):
                row = cursor.fetchone()
        finally:
            cursor.close()
        at = 0
        for p in pending:
            if p.returned is not None:
                width = len(p.statement.returning)
                p.returned._row, p.returned._batch = tuple(row[at:at + width]), None
                at += width

    def drop(self) -> None:
        self.pending, self.cte_names = [], set()

    def restore_autocommit(self) -> None:
        """Back out of autocommit, which must never reach the pool's next user."""
        if not self.autocommit:
            return
        self.autocommit = False
        driver = self.driver
        if driver.closed or not driver.autocommit:  # closed: invalidated, never pooled again
            return
        if driver.pgconn.transaction_status == _IDLE:
            driver.autocommit = False
        else:  # a statement still in progress after an error: not worth saving
            self.connection.invalidate()


@functools.lru_cache(maxsize=256)
def _composed(shape: tuple[tuple[FastStatement, int, bool], ...]) -> FastStatement:
    """One statement doing the writes of ``shape`` ((statement, rows, returned?) each).

    Every write becomes a data-modifying CTE ``w<i>``. They all see the snapshot taken before
    the statement, so a child naming its parent by natural key looks first in the CTEs that
    insert into the parent's table, then in the table. The main SELECT gives back the
    RETURNING values asked for, in order.
    """
    ctes: list[tuple[str, str]] = []
    types: dict[str, TypeEngine] = {}
    selected: list[str] = []
    inserted_into: dict[str, list[str]] = {}  # table -> CTEs inserting into it, so far
    referenced = {key.table.name for statement, _rows, _returned in shape
                  if isinstance(statement, _Insert) for key in statement.references.values()}
    for i, (statement, rows, returned) in enumerate(shape):
        name = f"w{i}"
        prefixes = [f"{name}_{r}_" for r in range(rows)]
        for prefix in prefixes:
            types.update({prefix + key: type_ for key, type_ in statement.types.items()})
        if isinstance(statement, _Insert):
            returns = returned or statement.table.name in referenced
            sql = statement.render(prefixes, inserted_into, returning="*" if returns else "")
            if returns:
                inserted_into.setdefault(statement.table.name, []).append(name)
        else:
            (prefix,) = prefixes

            def rename(sql: str, prefix: str = prefix) -> str:
                return _TEXT_BIND.sub(lambda m: f":{prefix}{m.group(1)}", sql)

            ctes.extend((cte_name, rename(cte_sql)) for cte_name, cte_sql in statement.ctes)
            sql = rename(statement.sql)
        ctes.append((name, sql))
        if returned:
            selected += [f"(SELECT {column} FROM {name})" for column in statement.returning]
    return FastStatement(f"SELECT {', '.join(selected) or '1'}", types, ctes=ctes)


@contextmanager
def write_batch(connection: Connection) -> Iterator[None]:
    """PostgreSQL: the block's writes reach the server as one statement, at the commit.

    Every ``FastStatement`` write in the block is deferred; the commit sends them together as
    one statement of data-modifying CTEs (``_composed``). When the block starts outside a
    transaction, the driver runs in autocommit until then: the block's reads need no BEGIN,
    and the one write statement is a transaction of its own, so no COMMIT follows it either.
    A filing is then two round trips, each one message: its read and its writes.

    Anything that needs the writes earlier gets them earlier, inside a transaction (a
    ``Returned`` read, a ``FastQuery``, SQLAlchemy's own statements, a block that ends without
    a commit), and the commit then ends that transaction as usual. A rollback or an error in
    the block drops what was not sent. Other databases run the block as it is: SQLite has no
    round trips to save.
    """
    if connection.dialect.name != "postgresql" or _BATCH_KEY in connection.info:
        yield  # a block inside another joins it
        return
    info = connection.info  # the DBAPI connection's; the Connection may be closed at the end
    batch = info[_BATCH_KEY] = _Batch(connection)
    driver = batch.driver
    if not driver.autocommit and driver.pgconn.transaction_status == _IDLE:
        driver.autocommit = batch.autocommit = True
    try:
        yield
        if info.get(_BATCH_KEY) is batch:  # no commit in the block: the caller's transaction
            batch.run(final=False)
    except BaseException:
        batch.drop()
        raise
    finally:
        if info.get(_BATCH_KEY) is batch:
            del info[_BATCH_KEY]
        batch.restore_autocommit()


_IDLE = 0  # libpq's PQTRANS_IDLE: no transaction open


def _commit_runs_batch(connection: Connection) -> None:
    """SQLAlchemy's ``commit`` event: send the open batch's writes, then let the commit end.

    In autocommit the statement committed itself and the driver's commit finds nothing to do.
    The batch ends here: the connection may serve someone else (an inline job) before the
    block ends, and what the block writes after the commit runs as usual.
    """
    batch = _end_batch(connection)
    if batch is None:
        return
    try:
        batch.run(final=True)
    finally:
        batch.restore_autocommit()


def _rollback_drops_batch(connection: Connection) -> None:
    batch = _end_batch(connection)
    if batch is not None:
        batch.drop()
        batch.restore_autocommit()


def _run_batch_before_sqlalchemys_own(connection: Connection, *args: Any) -> None:
    """SQLAlchemy's ``before_cursor_execute``: a statement outside the batch (SQLAlchemy's
    own, or fastsql's read) must find the batch's writes done.

    fastsql calls these listeners for its own statements too; running the batch empties it
    first, so its own statement passes through.
    """
    batch = _batch_of(connection)
    if batch is not None and batch.pending:
        batch.run(final=False)


def session_ended(error: BaseException) -> bool:
    """The server ended the session (terminated backend, shutdown, connection failure).

    psycopg reports the server's FATAL message before it sees the socket close: the driver
    then still calls the connection good, but it is gone.
    """
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


def _ended_session_is_a_disconnect(context: Any) -> None:
    """SQLAlchemy's ``handle_error``: invalidate the connection of an ended session."""
    if session_ended(context.original_exception):
        context.is_disconnect = True


def install_hooks(engine: Any = Engine) -> None:
    """Run a ``write_batch`` at the commit (or before a statement that needs it), drop it at a
    rollback, and count an ended session as a lost connection (idempotent)."""
    for name, hook in (("commit", _commit_runs_batch),
                       ("rollback", _rollback_drops_batch),
                       ("before_cursor_execute", _run_batch_before_sqlalchemys_own),
                       ("handle_error", _ended_session_is_a_disconnect)):
        if not event.contains(engine, name, hook):
            event.listen(engine, name, hook)


def _bind(plan: _Plan, params: Mapping[str, Any],
          defaults: Mapping[str, Callable[[], Any]]) -> Any:
    """The driver's arguments: each parameter (else its default) through its bind processor."""
    bound = {}
    for name, binder in plan.binders:
        if name in params:
            value = params[name]
        elif name in defaults:
            value = defaults[name]()
        else:
            raise KeyError(f"no value for {name!r} and no default")
        bound[name] = binder(value) if binder is not None and value is not None else value
    if plan.positional is None:
        return bound
    return tuple(bound[name] for name in plan.positional)


@dataclass(frozen=True)
class _QueryPlan(_Plan):
    defaults: dict[str, Callable[[], Any]]  # the statement's own literal values
    row: type  # a named tuple of the result columns
    loaders: tuple[Callable[[Any], Any] | None, ...]


class FastQuery:
    """A Core SELECT compiled once per dialect and run on the DBAPI cursor, like a statement.

    ``parameters`` names its ``bindparam``s given at each call; the rows come back as named
    tuples with each column's result processing applied.
    """

    def __init__(self, select: Select, parameters: Sequence[str] = ()) -> None:
        self._select = select
        self._parameters = frozenset(parameters)
        self._plans: dict[str, _QueryPlan] = {}

    def _plan(self, dialect: Dialect) -> _QueryPlan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            # The parameters given per call are not required here. (An IN list needs its values
            # as ``literal()``s: SQLAlchemy expands a plain list only at execution.)
            compiled = self._select.params(dict.fromkeys(self._parameters)).compile(
                dialect=dialect)
            columns = list(self._select.selected_columns)
            plan = self._plans[dialect.name] = _QueryPlan(
                sql=compiled.string,
                positional=tuple(compiled.positiontup) if compiled.positional else None,
                binders=tuple((name, bind_processor(bind.type, dialect))
                              for name, bind in compiled.binds.items()),
                defaults={name: functools.partial(_constant, bind.value)
                          for name, bind in compiled.binds.items()
                          if name not in self._parameters},
                row=namedtuple("Row", [column.key for column in columns]),  # noqa: PYI024
                loaders=tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
                              for column in columns),
            )
        return plan

    def all(self, connection: Connection, params: Mapping[str, Any] | None = None) -> list:
        plan = self._plan(connection.dialect)
        args = _bind(plan, params or {}, plan.defaults)
        cursor = FastStatement._run(connection, plan, args, many=False)
        try:
            with _translated(connection, plan.sql, args):
                raw = cursor.fetchall()
        finally:
            cursor.close()
        loaders = plan.loaders
        return [plan.row._make(value if load is None or value is None else load(value)
                               for load, value in zip(loaders, row, strict=True))
                for row in raw]


class _Insert(FastStatement):
    """An ``INSERT ... VALUES`` built by ``insert_into``; a batch writes its rows in one."""

    composes_rows = True

    def __init__(self, table: Table, columns: Sequence[str], references: Mapping[str, Column],
                 returning: Sequence[str], types: Mapping[str, TypeEngine],
                 defaults: Mapping[str, Callable[[], Any]]) -> None:
        self.table, self.columns, self.references = table, tuple(columns), dict(references)
        super().__init__(self.render([""], {}, returning=", ".join(returning)), types, defaults,
                         returning=returning)

    def render(self, prefixes: Sequence[str], inserted_into: Mapping[str, Sequence[str]], *,
               returning: str) -> str:
        """The INSERT of one row per parameter prefix; a parent is looked up first in the
        ``inserted_into`` CTEs of its table (see ``_composed``)."""
        rows = []
        for prefix in prefixes:
            values = []
            for name in self.columns:
                key = self.references.get(name)
                if key is None:
                    values.append(f":{prefix}{name}")
                    continue
                (parent_id,) = key.table.primary_key.columns
                lookups = [f"(SELECT {parent_id.name} FROM {source} "
                           f"WHERE {key.name} = :{prefix}{key.name})"
                           for source in (*inserted_into.get(key.table.name, ()), key.table.name)]
                values.append(lookups[0] if len(lookups) == 1
                              else f"COALESCE({', '.join(lookups)})")
            rows.append(f"({', '.join(values)})")
        sql = f"INSERT INTO {self.table.name} ({', '.join(self.columns)}) VALUES {', '.join(rows)}"
        return f"{sql} RETURNING {returning}" if returning else sql


def insert_into(table: Table, columns: Sequence[str] | None = None, *,
                returning: Sequence[str] = (),
                references: Mapping[str, Column] | None = None) -> FastStatement:
    """An INSERT of ``columns`` (default: all but an autoincrement primary key).

    A column left out of the parameters takes its Python default, else NULL if nullable.
    ``references`` fills a foreign key column by its parent's natural key instead of its id:
    ``{"claim_id": claims.c.claim_number}`` takes the parameter ``claim_number`` and writes
    ``(SELECT id FROM claims WHERE claim_number = :claim_number)``. A child row then needs
    nothing back from its parent's INSERT, so both go in one ``write_batch`` statement.
    """
    references = dict(references or {})
    if columns is None:
        columns = [c.name for c in table.c if not (c.primary_key and c.autoincrement)]
    for name, key in references.items():
        # A written column, filled from one parent row, by a parameter of its own name.
        if name not in columns or key.name in columns or not (key.unique or any(
                set(c.columns) == {key} for c in key.table.constraints
                if isinstance(c, UniqueConstraint))):
            raise ValueError(f"{table.name}.{name} by {key}: the column must be written, and "
                             f"{key} be a unique key with no namesake in {table.name}")
    types: dict[str, TypeEngine] = {}
    defaults: dict[str, Callable[[], Any]] = {}
    for name in columns:
        key = references.get(name)
        if key is not None:
            types[key.name] = key.type
            continue
        column = table.c[name]
        types[name] = column.type
        default = column.default
        if default is not None and default.is_scalar:
            defaults[name] = functools.partial(_constant, default.arg)
        elif default is not None and default.is_callable:
            defaults[name] = functools.partial(default.arg, None)  # SQLAlchemy passes a context
        elif column.nullable:
            defaults[name] = functools.partial(_constant, None)
    return _Insert(table, columns, references, returning, types, defaults)


def _constant(value: Any) -> Any:
    return value
