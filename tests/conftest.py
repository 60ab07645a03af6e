"""Fixtures: one migrated database per test session, emptied after every test.

SQLite by default; ``TEST_DATABASE_URL`` runs the same suite on PostgreSQL and
``TEST_REDIS_URL`` enables the tests that need a real Redis and rq worker.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app import create_app
from common.config import normalize_database_url
from common.extensions import db

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")

requires_postgres = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"),
    reason="needs TEST_DATABASE_URL=postgresql://... (CI sets it)",
)
requires_redis = pytest.mark.skipif(
    not TEST_REDIS_URL, reason="needs TEST_REDIS_URL=redis://... (CI sets it)"
)


def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated once per session with the real Alembic migrations."""
    if TEST_DATABASE_URL:
        url = normalize_database_url(TEST_DATABASE_URL)
        if url.startswith("postgresql"):
            _reset_postgres(url)
    else:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


def base_config(database_url: str, tmp_path: Path) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "PASSWORD_HASH_PROFILE": "fast-insecure-for-tests",
        "RATELIMIT_ENABLED": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        "REDIS_URL": None,
        "SERVER_NAME": "localhost",
        # The test's own folders, not the checkout's instance/ (which `make run` uses).
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "MAIL_FILE_DIR": str(tmp_path / "mail"),
    }


def _empty_tables(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
            else:
                for name in tables:
                    conn.execute(text(f"DELETE FROM {name}"))
            conn.execute(
                text("INSERT INTO audit_chain_head (id, last_seq, last_hash) VALUES (1, 0, :h)"),
                {"h": "0" * 64},
            )


class IsolatedClient(FlaskClient):
    """Runs each request in a fresh contextvars context, as a real server would.

    The test itself holds an app context; without this, requests would reuse it and share
    ``g`` (Flask-Login's cached user) and the SQLAlchemy session across requests. The test's
    own transaction is ended around each request so that it sees what the request committed.
    """

    def open(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        _end_test_transaction()
        try:
            return contextvars.Context().run(super().open, *args, **kwargs)
        finally:
            _end_test_transaction()


def _end_test_transaction() -> None:
    if has_app_context():
        db.session.rollback()


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator:
    """Build an app with config overrides; every app built is cleaned up after the test."""
    apps: list[Flask] = []

    def factory(**overrides: object) -> Flask:
        app = create_app({**base_config(database_url, tmp_path), **overrides})
        app.test_client_class = IsolatedClient
        apps.append(app)
        return app

    yield factory
    if apps:
        _empty_tables(apps[0])
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app) -> Iterator[Flask]:
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, "no CSRF token in page"
    return match.group(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With AFTERCARE_FORBID_SKIPS=1 (the CI run with every service) a skip is a failure."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("AFTERCARE_FORBID_SKIPS") == "1" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in a run that forbids skips: {report.longrepr}"
