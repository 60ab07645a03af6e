"""SQLite writers queue on ``<database>-writer``: taken at the first write, dropped at the end."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from contextlib import nullcontext

import pytest
from sqlalchemy import text

from app import create_app
from common.extensions import db
from common.sqlite_engine import (
    SerializedWritesConnection,
    WriterLockTimeout,
    engine_options,
)


def connect(path) -> SerializedWritesConnection:
    return sqlite3.connect(str(path), factory=SerializedWritesConnection, timeout=10,
                           check_same_thread=False)


def lock_is_free(path) -> bool:
    fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return True


@pytest.fixture
def database(tmp_path):
    path = tmp_path / "w.sqlite3"
    setup = connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    setup.commit()
    setup.close()
    return path


def test_reads_leave_the_lock_free_and_a_write_holds_it_until_commit(database):
    conn = connect(database)
    conn.execute("SELECT count(*) FROM t").fetchone()
    assert lock_is_free(database) and not conn.holds_writer_lock
    conn.execute("INSERT INTO t (v) VALUES ('a')")
    assert conn.holds_writer_lock and not lock_is_free(database)
    conn.commit()
    assert lock_is_free(database) and not conn.holds_writer_lock
    conn.close()


@pytest.mark.parametrize(("sql", "writes"), [
    ("SELECT 1", False),
    ("  select v from t", False),
    ("WITH k(v) AS (VALUES (?)) SELECT t.v FROM t JOIN k ON k.v = t.v", False),
    ("PRAGMA foreign_keys", False),
    ("INSERT INTO t (v) VALUES (?)", True),
    ("update t set v = ?", True),
    ("DELETE FROM t", True),
    ("WITH gone AS (SELECT id FROM t) DELETE FROM t WHERE id IN gone", True),
    ("CREATE TABLE u (v TEXT)", True),
])
def test_which_statements_take_the_lock(sql, writes):
    from common.sqlite_engine import _writes

    assert _writes(sql) is writes


@pytest.mark.parametrize("end", ["rollback", "close"])
def test_rollback_and_close_drop_the_lock(database, end):
    conn = connect(database)
    conn.cursor().executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
    assert not lock_is_free(database)
    getattr(conn, end)()
    assert lock_is_free(database)
    if end == "rollback":
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        conn.close()


def test_a_connection_dropped_without_close_lets_the_lock_go(database):
    import gc

    conn = connect(database)
    conn.execute("INSERT INTO t (v) VALUES ('a')")
    assert not lock_is_free(database)
    del conn
    gc.collect()
    assert lock_is_free(database)


@pytest.mark.parametrize("fails", [False, True])
def test_a_with_block_drops_the_lock_on_commit_and_on_rollback(database, fails):
    conn = connect(database)
    with pytest.raises(ZeroDivisionError) if fails else nullcontext():
        with conn:
            conn.execute("INSERT INTO t (v) VALUES ('a')")
            assert not lock_is_free(database)
            if fails:
                1 / 0  # noqa: B018
    assert lock_is_free(database)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0 if fails else 1,)
    conn.close()


def test_a_second_writer_waits_for_the_first_and_then_writes(database):
    first, second = connect(database), connect(database)
    first.execute("INSERT INTO t (v) VALUES ('first')")
    committed_at: list[float] = []

    def write_second() -> None:
        second.execute("INSERT INTO t (v) VALUES ('second')")
        committed_at.append(time.monotonic())
        second.commit()

    writer = threading.Thread(target=write_second)
    writer.start()
    time.sleep(0.2)
    assert not committed_at, "the second writer must wait for the first one's commit"
    released_at = time.monotonic()
    first.commit()
    writer.join(5)
    assert committed_at and committed_at[0] >= released_at
    assert [v for (v,) in first.execute("SELECT v FROM t ORDER BY id")] == ["first", "second"]
    first.close()
    second.close()


def test_a_writer_gives_up_like_sqlite_after_the_timeout(database):
    holder = os.open(f"{database}-writer", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    conn = connect(database)
    conn.lock_timeout = 0.2
    try:
        started = time.monotonic()
        with pytest.raises(WriterLockTimeout, match="database is locked"):
            conn.execute("INSERT INTO t (v) VALUES ('late')")
        assert time.monotonic() - started >= 0.2
        assert isinstance(WriterLockTimeout("x"), sqlite3.OperationalError)
    finally:
        os.close(holder)
    conn.execute("INSERT INTO t (v) VALUES ('now')")
    conn.commit()
    conn.close()


def test_in_memory_databases_have_no_lock_file(tmp_path):
    conn = sqlite3.connect(":memory:", factory=SerializedWritesConnection)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('x')")
    conn.commit()
    assert conn.holds_writer_lock  # nothing to wait for
    conn.close()


def test_engine_options_add_the_factory_and_drop_the_ping_for_sqlite_only():
    sqlite = engine_options("sqlite:///x.db", {"pool_pre_ping": True})
    assert sqlite == {"pool_pre_ping": False,
                      "connect_args": {"factory": SerializedWritesConnection}}
    assert engine_options("postgresql+psycopg://h/d", {"pool_pre_ping": True}) == {
        "pool_pre_ping": True}
    kept = engine_options("sqlite:///x.db", {"connect_args": {"timeout": 3}, "echo": False})
    assert kept["echo"] is False
    assert kept["connect_args"] == {"timeout": 3, "factory": SerializedWritesConnection}


def test_the_app_writes_through_serialized_connections(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "REDIS_URL", "AFTERCARE_ENV"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "app.sqlite3"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    with app.app_context():
        db.session.execute(text("CREATE TABLE t (v TEXT)"))
        db.session.commit()
        db.session.execute(text("INSERT INTO t VALUES ('x')"))
        raw = db.session.connection().connection.driver_connection
        assert isinstance(raw, SerializedWritesConnection)
        assert not lock_is_free(path)
        db.session.commit()
        assert lock_is_free(path)
        db.session.remove()
        db.engine.dispose()


def test_the_bare_benchmark_endpoint_gets_the_pragmas_but_not_the_lock(tmp_path):
    from bench.bare_insert_app import create_app as create_bare_app
    from bench.bare_insert_app import db as bare_db

    app = create_bare_app(f"sqlite:///{tmp_path}/bare.sqlite3")
    with app.app_context():
        raw = bare_db.session.connection().connection.driver_connection
        assert not isinstance(raw, SerializedWritesConnection)
        assert bare_db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert bare_db.session.execute(text("PRAGMA busy_timeout")).scalar() == 10000
        bare_db.session.remove()
        bare_db.engine.dispose()
