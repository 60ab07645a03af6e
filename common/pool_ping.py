"""Ping a pooled database connection when it comes back from a rest, not at every checkout.

SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one round trip and the driver's
autocommit dance per request, about a tenth of a claim filing's time in the web worker on
PostgreSQL. A connection handed back to the pool a moment ago was answering then; the ones a
server restart or an idle timeout kills are the ones that sat in the pool. So a connection is
pinged only when it rested in the pool longer than ``DB_PING_AFTER_IDLE_SECONDS`` (a dead one
is replaced before the request sees it, as SQLAlchemy's ping would). A connection the server
drops while it is busy surfaces in the request that uses it: a 503 the client may retry, the
pool invalidated (``fastsql.session_ended``), so the next request gets a fresh connection.
``DB_PING_AFTER_IDLE_SECONDS=0`` keeps SQLAlchemy's ping on every checkout.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

_CHECKED_IN_AT = "aftercare.pool.checked_in_at"


def engine_options(options: dict[str, Any], idle_seconds: float) -> dict[str, Any]:
    """The engine options: SQLAlchemy's own ping only when every checkout is to be pinged
    (or when the options ask for it themselves)."""
    return {"pool_pre_ping": idle_seconds <= 0, **options}


def install(engine: Engine, idle_seconds: float, *, pre_ping: bool = False) -> None:
    """Ping ``engine``'s connections that rested longer than ``idle_seconds`` (if > 0), unless
    SQLAlchemy already pings every checkout (``pre_ping``)."""
    if pre_ping or idle_seconds <= 0 or engine.dialect.name == "sqlite":
        return  # SQLAlchemy pings every checkout; a SQLite file has no server to lose
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", functools.partial(_ping_if_rested, engine, idle_seconds))


def _note_checkin(dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_CHECKED_IN_AT] = time.monotonic()


def _ping_if_rested(engine: Engine, idle_seconds: float, dbapi_connection: Any, record: Any,
                    proxy: Any) -> None:
    checked_in_at = record.info.get(_CHECKED_IN_AT)
    if checked_in_at is None or time.monotonic() - checked_in_at <= idle_seconds:
        return  # a new connection, or one in use a moment ago
    try:
        engine.dialect.do_ping(dbapi_connection)
    except engine.dialect.loaded_dbapi.Error as exc:
        # The pool discards this connection and checks out another (a new one if need be).
        raise DisconnectionError(f"a pooled connection did not answer: {exc}") from exc
