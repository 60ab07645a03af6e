"""The baseline for ``bench.claims_api``: a bare Flask-SQLAlchemy app that inserts one row.

``gunicorn 'bench.bare_insert_app:create_app()'`` with ``DATABASE_URL`` set (a SQLite file, put
in WAL mode with the same pragmas as the real app, or a PostgreSQL URL). ``POST /insert`` with a
JSON object ``{"name", "email", "note"}`` stores one row and answers 201 with its id. The table
is created by ``init_db(url)`` before the server starts, never by the workers.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from common.config import normalize_database_url
from common.sqlite_engine import install_pragmas

db = SQLAlchemy()


class BareInsert(db.Model):
    __tablename__ = "bench_bare_inserts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    note: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=lambda: datetime.now(UTC)
    )


def create_app(database_url: str | None = None) -> Flask:
    app = Flask(__name__)
    # The app's SQLite pragmas; its writer lock is its own engineering, so the bare endpoint
    # goes without.
    install_pragmas()
    app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(
        database_url or os.environ["DATABASE_URL"]
    )
    db.init_app(app)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.post("/insert")
    def insert() -> Any:
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not data.get("name") or not data.get("email"):
            return jsonify(error="name and email are required"), 422
        row = BareInsert(
            name=str(data["name"]),
            email=str(data["email"]),
            note=str(data.get("note") or "") or None,
        )
        db.session.add(row)
        db.session.flush()
        row_id = row.id  # read before commit: no reload after it
        db.session.commit()
        return jsonify(id=row_id), 201

    return app


def init_db(database_url: str) -> None:
    """Create (or empty) the table, in the benchmark process before gunicorn starts."""
    app = create_app(database_url)
    with app.app_context():
        BareInsert.__table__.drop(db.engine, checkfirst=True)
        db.create_all()
        db.engine.dispose()


def count_rows(database_url: str) -> int:
    app = create_app(database_url)
    with app.app_context():
        count = db.session.query(db.func.count(BareInsert.id)).scalar() or 0
        db.session.remove()
        db.engine.dispose()
        return int(count)
