"""Pooled connections are pinged after a rest, not at every checkout (common/pool_ping.py)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from common.extensions import db
from tests.conftest import requires_postgres


def backend_pid() -> int:
    """The PostgreSQL backend of the connection the session is using now."""
    return db.session.connection().connection.dbapi_connection.info.backend_pid


def use_connection() -> int:
    pid = backend_pid()
    assert db.session.execute(text("SELECT 1")).scalar() == 1
    db.session.commit()  # back to the pool
    return pid


def terminate(database_url: str, pid: int) -> None:
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        admin.dispose()


def count_pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pings of the app's engine (inside its app context)."""
    counted: list[int] = []
    dialect = db.engine.dialect
    real = dialect.do_ping

    def counting(dbapi_connection):  # noqa: ANN001, ANN202
        counted.append(1)
        return real(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counting)
    return counted


@pytest.mark.parametrize(("idle", "options", "pre_ping"), [
    (1.0, {}, False), (0, {}, True), (-1, {}, True), (1.0, {"pool_pre_ping": True}, True)])
def test_sqlalchemys_ping_at_every_checkout_only_when_asked_for(make_app, idle, options,
                                                                 pre_ping):
    app = make_app(DB_PING_AFTER_IDLE_SECONDS=idle, SQLALCHEMY_ENGINE_OPTIONS=options)
    with app.app_context():
        expected = pre_ping and db.engine.dialect.name != "sqlite"  # SQLite: never
        assert db.engine.pool._pre_ping is expected


@requires_postgres
def test_a_connection_used_a_moment_ago_is_not_pinged(make_app, monkeypatch):
    app = make_app(DB_PING_AFTER_IDLE_SECONDS=60)
    with app.app_context():
        first = use_connection()
        pings = count_pings(monkeypatch)
        assert use_connection() == first and use_connection() == first
        assert pings == []


@requires_postgres
def test_a_rested_connection_is_pinged_and_a_dead_one_replaced_unseen(
        make_app, database_url, monkeypatch):
    app = make_app(DB_PING_AFTER_IDLE_SECONDS=0.05)
    with app.app_context():
        first = use_connection()
        pings = count_pings(monkeypatch)
        terminate(database_url, first)  # a server restart while the pool rests
        time.sleep(0.1)
        second = use_connection()  # no error: the ping found it dead and the pool replaced it
        assert second != first and pings == [1]
        time.sleep(0.1)
        assert use_connection() == second and pings == [1, 1]  # alive: pinged and kept


@requires_postgres
def test_a_connection_dropped_while_busy_fails_one_request_and_the_pool_recovers(
        make_app, database_url):
    app = make_app(DB_PING_AFTER_IDLE_SECONDS=3600)
    with app.app_context():
        first = use_connection()
        terminate(database_url, first)
        with pytest.raises(OperationalError) as raised:
            use_connection()
        assert raised.value.connection_invalidated
        db.session.rollback()
        assert use_connection() != first
