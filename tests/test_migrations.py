"""Migrations build the schema from empty, and match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from app import create_app
from common.extensions import db
from tests.conftest import TEST_DATABASE_URL, _reset_postgres


def test_migrated_schema_matches_the_models(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_upgrade_from_empty_then_downgrade_to_empty(tmp_path):
    if TEST_DATABASE_URL and TEST_DATABASE_URL.startswith("postgres"):
        # A scratch database beside the suite's, so the shared schema stays intact.
        base = TEST_DATABASE_URL.rsplit("/", 1)[0]
        admin = create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS aftercare_migration_test"))
            conn.execute(text("CREATE DATABASE aftercare_migration_test"))
        admin.dispose()
        url = base + "/aftercare_migration_test"
        _reset_postgres(url.replace("postgresql://", "postgresql+psycopg://"))
    else:
        url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True})
    with app.app_context():
        upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {"purchases", "audit_events", "outbox_jobs", "partner_api_keys"} <= tables
        head = db.session.execute(text("SELECT last_seq FROM audit_chain_head")).scalar()
        assert head == 0
        db.session.remove()
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()
