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

On PostgreSQL each statement used to be a round trip of its own, and a claim's dozen of them
kept the web workers waiting about half of the time. ``pipeline`` sends a block's statements
without waiting; child rows name their parents by natural key (``insert_into(references=)``)
and RETURNING values are read only when needed (``Returned``), so nothing forces a wait
until the commit, whose COMMIT then travels with the block's last statements.
"""

from __future__ import annotations

import functools
import json
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

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
    """A SQL statement with typed ``:name`` parameters, run on the connection's DBAPI cursor."""

    def __init__(self, sql: str, types: Mapping[str, TypeEngine],
                 defaults: Mapping[str, Callable[[], Any]] | None = None) -> None:
        self._clause = text(sql).bindparams(
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
        """Run once; returns the DBAPI cursor (``fetchone()`` for RETURNING)."""
        plan = self._plan(connection.dialect)
        return self._run(connection, plan, self._bind(plan, params), many=False)

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        plan = self._plan(connection.dialect)
        self._run(connection, plan, [self._bind(plan, row) for row in rows], many=True).close()

    def scalar(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the one row a RETURNING statement gives back."""
        return self.returned(connection, params).value

    @staticmethod
    def _run(connection: Connection, plan: _Plan, args: Any, *, many: bool) -> Any:
        dbapi_connection = connection.connection.driver_connection
        cursor = dbapi_connection.cursor()
        for listener in connection.dispatch.before_cursor_execute:
            listener(connection, cursor, plan.sql, args, None, many)
        with _translated(connection, plan.sql, args, many=many):
            if many:
                cursor.executemany(plan.sql, args)
            else:
                cursor.execute(plan.sql, args)
        return cursor

    def returned(self, connection: Connection, params: Mapping[str, Any]) -> Returned:
        """Run once; the RETURNING value is read only when asked for (see ``pipeline``)."""
        plan = self._plan(connection.dialect)
        args = self._bind(plan, params)
        returned = Returned(connection, self._run(connection, plan, args, many=False), plan.sql,
                            args)
        if not _in_pipeline(connection):
            # The answer is already here: read it now and close the cursor (SQLite would keep
            # an unread RETURNING statement in progress, which can block the COMMIT).
            returned.row  # noqa: B018
        return returned


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
    """A statement's RETURNING row, fetched on first use.

    Inside a ``pipeline`` the statement is only sent, not waited for; reading the value waits
    for it (and everything queued before it), so a caller that does not need the value right
    away costs no round trip.
    """

    __slots__ = ("_args", "_connection", "_cursor", "_row", "_sql")

    def __init__(self, connection: Connection, cursor: Any, sql: str, args: Any) -> None:
        self._connection, self._cursor, self._sql, self._args = connection, cursor, sql, args
        self._row: tuple | None = None  # read from the cursor, which is then closed

    @property
    def row(self) -> tuple | None:
        """The returned row (None if the statement returned none)."""
        if self._cursor is not None:
            with _translated(self._connection, self._sql, self._args):
                self._row = self._cursor.fetchone()
            self._cursor.close()
            self._cursor = None
        return self._row

    @property
    def value(self) -> Any:
        """The first returned column."""
        return self.row[0]


_PIPELINE_KEY = "aftercare.fastsql.pipeline"  # in the DBAPI connection's info: the open one


def _in_pipeline(connection: Connection) -> bool:
    return _PIPELINE_KEY in connection.info


@contextmanager
def pipeline(connection: Connection) -> Iterator[None]:
    """Send the block's statements without waiting for each answer (PostgreSQL).

    psycopg's pipeline mode: statements are queued and sent together, and the server's answers
    are read when a result is needed (a ``FastQuery``, a ``Returned.value``) or when the
    pipeline ends. A statement that fails makes the rest of the transaction fail; the error
    comes out as SQLAlchemy's exception class, from wherever it was read.

    The pipeline ends with the block, or earlier at the transaction's commit: a commit inside
    the block sends its COMMIT with the block's last statements, so they cost one round trip
    together, and the connection goes back to the pool out of pipeline mode. Other databases
    run the block as it is: SQLite has no round trips to save.
    """
    dbapi_connection = connection.connection.driver_connection
    if connection.dialect.name != "postgresql" or not hasattr(dbapi_connection, "pipeline"):
        yield
        return
    info = connection.info  # the DBAPI connection's; the Connection may be closed at the end
    if _PIPELINE_KEY in info:  # inside another block on this connection: join it
        yield
        return
    block = dbapi_connection.pipeline()
    with _translated(connection, "-- pipeline start", None):
        info[_PIPELINE_KEY] = _Open(block, block.__enter__())
    try:
        yield
    except BaseException as exc:
        if info.pop(_PIPELINE_KEY, None) is not None:
            block.__exit__(type(exc), exc, exc.__traceback__)  # psycopg logs its own errors
        raise
    if info.pop(_PIPELINE_KEY, None) is not None:
        with _translated(connection, "-- pipeline sync", None):
            block.__exit__(None, None, None)


@dataclass(frozen=True)
class _Open:
    """An open pipeline: psycopg's context manager and the ``Pipeline`` it entered."""

    block: Any
    pipeline: Any


def _commit_ends_pipeline(connection: Connection) -> None:
    """SQLAlchemy's ``commit`` event: queue COMMIT in the open pipeline and end it.

    The driver's own commit, which follows, then finds the transaction done. (Committing
    inside the pipeline instead would cost the COMMIT's sync, a sync when the pool resets the
    connection and one more when the pipeline ends.)
    """
    opened = connection.info.pop(_PIPELINE_KEY, None)
    if opened is None:
        return
    with _translated(connection, "COMMIT", None):
        try:
            connection.connection.driver_connection.execute("COMMIT")
        except BaseException as exc:
            opened.block.__exit__(type(exc), exc, exc.__traceback__)
            raise
        opened.block.__exit__(None, None, None)


def _wait_for_sqlalchemys_own(connection: Connection, *args: Any) -> None:
    """SQLAlchemy's ``after_cursor_execute``: in a pipeline, wait for the statement's answer.

    SQLAlchemy reads a result's shape right after executing (an ORM flush reads the ids its
    INSERT returns), which a pipelined statement does not have yet; such statements inside a
    ``pipeline`` block therefore cost a round trip each, as they would outside it.
    """
    opened = connection.info.get(_PIPELINE_KEY)
    if opened is not None:
        opened.pipeline.sync()


def session_ended(error: BaseException) -> bool:
    """The server ended the session (terminated backend, shutdown, connection failure).

    psycopg reports the server's FATAL message before it sees the socket close, and in a
    pipeline it may read that message while collecting an earlier statement's answer: the
    driver then still calls the connection good, but it is gone.
    """
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


def _ended_session_is_a_disconnect(context: Any) -> None:
    """SQLAlchemy's ``handle_error``: invalidate the connection of an ended session."""
    if session_ended(context.original_exception):
        context.is_disconnect = True


def install_pipeline_hooks(engine: Any = Engine) -> None:
    """Let a commit end a ``pipeline``, make SQLAlchemy's statements in one wait for their
    answers, and count an ended session as a lost connection (idempotent)."""
    for name, hook in (("commit", _commit_ends_pipeline),
                       ("after_cursor_execute", _wait_for_sqlalchemys_own),
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


def insert_into(table: Table, columns: Sequence[str] | None = None, *,
                returning: Sequence[str] = (),
                references: Mapping[str, Column] | None = None) -> FastStatement:
    """An INSERT of ``columns`` (default: all but an autoincrement primary key).

    A column left out of the parameters takes its Python default, else NULL if nullable.
    ``references`` fills a foreign key column by its parent's natural key instead of its id:
    ``{"claim_id": claims.c.claim_number}`` takes the parameter ``claim_number`` and writes
    ``(SELECT id FROM claims WHERE claim_number = :claim_number)``. A child row then needs
    nothing back from its parent's INSERT, so both can be sent in one ``pipeline`` round trip.
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
    values, types = [], {}
    for name in columns:
        key = references.get(name)
        if key is None:
            values.append(f":{name}")
            types[name] = table.c[name].type
        else:
            (parent_id,) = key.table.primary_key.columns
            values.append(f"(SELECT {parent_id.name} FROM {key.table.name} "
                          f"WHERE {key.name} = :{key.name})")
            types[key.name] = key.type
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(values)})"
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    defaults: dict[str, Callable[[], Any]] = {}
    for name in columns:
        column = table.c[name]
        default = column.default
        if name in references:
            continue
        if default is not None and default.is_scalar:
            defaults[name] = functools.partial(_constant, default.arg)
        elif default is not None and default.is_callable:
            defaults[name] = functools.partial(default.arg, None)  # SQLAlchemy passes a context
        elif column.nullable:
            defaults[name] = functools.partial(_constant, None)
    return FastStatement(sql, types, defaults)


def _constant(value: Any) -> Any:
    return value
