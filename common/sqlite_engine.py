"""The embedded default's SQLite connections: WAL pragmas, and writers that queue on a file lock.

SQLite lets one connection write at a time. A second writer gets ``SQLITE_BUSY`` and SQLite's
busy handler sleeps 1, 2, 5, 10, 15, 20, 25... ms between retries, so two gunicorn workers
filing claims spent a quarter of their time asleep waiting for writes that took ~0.5 ms (the
claims benchmark ran with the CPUs 27 % idle). Here a connection takes an exclusive ``flock``
on ``<database>-writer`` before its transaction's first write and drops it when the transaction
ends: a waiting writer is let in as soon as the lock is free instead of when its sleep ends.
This changes no semantics: SQLite allows one writer at a time anyway, and readers (WAL) never
take the lock. Connections that do not come from this factory (the ``sqlite3`` shell, say)
still meet SQLite's own lock and its busy timeout.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

# WAL pages written before SQLite folds the log back into the database file. Each checkpoint
# fsyncs twice, and a claim filing writes ~28 pages: at SQLite's default of 1,000 pages that was
# a checkpoint every ~36 claims, ~0.5 ms a claim on a virtual disk. 10,000 pages (~40 MB of log)
# makes checkpoints ten times rarer; durability is that of synchronous=NORMAL either way.
WAL_AUTOCHECKPOINT_PAGES = 10_000
# How long a writer waits for another (SQLite's busy timeout and the writer lock alike).
BUSY_TIMEOUT_SECONDS = 10.0
# Waiting writers poll the lock: a blocking flock cannot time out, and a writer that waits for
# itself (two connections in one thread) must fail like SQLite would rather than hang.
_FIRST_POLL_SECONDS = 0.00005
_LONGEST_POLL_SECONDS = 0.0005
# Statements that never write; anything else takes the writer lock first. A ``WITH`` is a write
# when a DML keyword appears in it (one inside a string literal only costs concurrency).
_READ_ONLY = ("SELECT", "PRAGMA", "BEGIN", "SAVEPOI", "RELEASE", "ROLLBAC", "COMMIT", "EXPLAIN",
              "VALUES")
_DML = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


def _writes(sql: str) -> bool:
    head = sql.lstrip()[:7].upper()
    if head.startswith("WITH"):
        return _DML.search(sql) is not None
    return not head.startswith(_READ_ONLY)


class WriterLockTimeout(sqlite3.OperationalError):
    """Another writer held the database longer than the busy timeout."""


class SerializedWritesCursor(sqlite3.Cursor):
    """Takes the connection's writer lock before the first write of a transaction."""

    connection: SerializedWritesConnection

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if not self.connection.holds_writer_lock and _writes(sql):
            self.connection.take_writer_lock()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> sqlite3.Cursor:
        if not self.connection.holds_writer_lock and _writes(sql):
            self.connection.take_writer_lock()
        return super().executemany(sql, seq_of_parameters)


class SerializedWritesConnection(sqlite3.Connection):
    """A ``sqlite3`` connection whose write transactions queue on ``<database>-writer``."""

    lock_timeout: float = BUSY_TIMEOUT_SECONDS

    def __init__(self, database: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        path = os.fspath(database)
        self._lock_fd: int | None = None
        self._holding = False
        if path and path != ":memory:" and not path.startswith("file:"):
            self._lock_fd = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT, 0o600)

    @property
    def holds_writer_lock(self) -> bool:
        # A private in-memory database has no other writer to wait for.
        return self._holding or self._lock_fd is None

    def cursor(self, factory: Any = SerializedWritesCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:  # type: ignore[override]
        return self.cursor().executemany(sql, parameters)

    def take_writer_lock(self) -> None:
        assert self._lock_fd is not None
        if not _try_lock(self._lock_fd):
            delay, deadline = _FIRST_POLL_SECONDS, time.monotonic() + self.lock_timeout
            while not _try_lock(self._lock_fd):
                if time.monotonic() >= deadline:
                    raise WriterLockTimeout("database is locked (another writer held it for "
                                            f"more than {self.lock_timeout:g} s)")
                time.sleep(delay)
                delay = min(2 * delay, _LONGEST_POLL_SECONDS)
        self._holding = True

    def _release_writer_lock(self) -> None:
        if self._holding and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._holding = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release_writer_lock()

    def __exit__(self, *exc_info: Any) -> Any:
        # ``with connection:`` commits or rolls back in C, past the overrides above.
        try:
            return super().__exit__(*exc_info)
        finally:
            self._release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._close_lock_file()

    def __del__(self) -> None:
        # A connection dropped without close() must not keep the lock until the process ends.
        self._close_lock_file()

    def _close_lock_file(self) -> None:
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        self._holding = False
        if fd is not None:
            os.close(fd)  # closing the file drops a lock held on it


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def engine_options(database_uri: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """SQLAlchemy engine options for SQLite URIs: serialized writes, and no pre-ping.

    Pinging a pooled connection before each checkout finds connections a database server
    dropped; a SQLite file has no server to drop them, so the ping would only cost a statement
    per request.
    """
    merged = dict(options or {})
    if database_uri.startswith("sqlite"):
        connect_args = dict(merged.get("connect_args") or {})
        connect_args.setdefault("factory", SerializedWritesConnection)
        merged["connect_args"] = connect_args
        merged["pool_pre_ping"] = False
    return merged


def install_pragmas() -> None:
    """Apply ``apply_pragmas`` to every new connection of every engine (idempotent)."""
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)


def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    apply_pragmas(dbapi_connection)


def apply_pragmas(dbapi_connection: Any) -> None:
    """WAL (fast concurrent commits), enforced foreign keys and a busy timeout on SQLite."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()
