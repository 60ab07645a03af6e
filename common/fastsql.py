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
"""

from __future__ import annotations

import functools
import json
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Select, Table, bindparam, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
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
    error_class: type[Exception]


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
                error_class=dialect.loaded_dbapi.Error,
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
        cursor = self.execute(connection, params)
        try:
            return cursor.fetchone()[0]
        finally:
            cursor.close()

    @staticmethod
    def _run(connection: Connection, plan: _Plan, args: Any, *, many: bool) -> Any:
        dbapi_connection = connection.connection.driver_connection
        cursor = dbapi_connection.cursor()
        for listener in connection.dispatch.before_cursor_execute:
            listener(connection, cursor, plan.sql, args, None, many)
        try:
            if many:
                cursor.executemany(plan.sql, args)
            else:
                cursor.execute(plan.sql, args)
        except plan.error_class as exc:
            dialect = connection.dialect
            lost = dialect.is_disconnect(exc, dbapi_connection, cursor)
            if lost:
                connection.invalidate(exc)
            raise sa_exc.DBAPIError.instance(
                plan.sql, args, exc, plan.error_class, connection_invalidated=lost,
                dialect=dialect, ismulti=many,
            ) from exc
        return cursor


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
                error_class=dialect.loaded_dbapi.Error,
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
            raw = cursor.fetchall()
        finally:
            cursor.close()
        loaders = plan.loaders
        return [plan.row._make(value if load is None or value is None else load(value)
                               for load, value in zip(loaders, row, strict=True))
                for row in raw]


def insert_into(table: Table, columns: Sequence[str] | None = None, *,
                returning: Sequence[str] = ()) -> FastStatement:
    """An INSERT of ``columns`` (default: all but an autoincrement primary key).

    A column left out of the parameters takes its Python default, else NULL if nullable.
    """
    if columns is None:
        columns = [c.name for c in table.c if not (c.primary_key and c.autoincrement)]
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"VALUES ({', '.join(f':{name}' for name in columns)})")
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    defaults: dict[str, Callable[[], Any]] = {}
    for name in columns:
        column = table.c[name]
        default = column.default
        if default is not None and default.is_scalar:
            defaults[name] = functools.partial(_constant, default.arg)
        elif default is not None and default.is_callable:
            defaults[name] = functools.partial(default.arg, None)  # SQLAlchemy passes a context
        elif column.nullable:
            defaults[name] = functools.partial(_constant, None)
    return FastStatement(sql, {name: table.c[name].type for name in columns}, defaults)


def _constant(value: Any) -> Any:
    return value
