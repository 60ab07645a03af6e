"""The front page and the health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template
from sqlalchemy import text

from common import jobs
from common.extensions import db

bp = Blueprint("core", __name__)


@bp.route("/")
def index() -> Any:
    """Landing page: what a visitor can do here."""
    return render_template("core/index.html")


@bp.route("/healthz")
def healthz() -> Any:
    """Database and job-queue state; 503 when either is unusable."""
    status: dict[str, Any] = {"status": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
        status["database"] = {"ok": True, "dialect": db.engine.dialect.name}
        status["outbox"] = jobs.pending_summary()
    except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health check
        db.session.rollback()
        status["database"] = {"ok": False, "error": exc.__class__.__name__}
        status["status"] = "unavailable"
    if current_app.config.get("REDIS_URL"):
        try:
            conn = jobs.redis_connection(current_app)
            conn.ping()
            queue = jobs.queue_for(current_app)
            status["queue"] = {
                "ok": True,
                "mode": "rq",
                "queued": queue.count,
                "failed": queue.failed_job_registry.count,
            }
        except Exception as exc:  # noqa: BLE001
            status["queue"] = {"ok": False, "mode": "rq", "error": exc.__class__.__name__}
            status["status"] = "unavailable"
    else:
        status["queue"] = {"ok": True, "mode": "inline"}
    return status, 200 if status["status"] == "ok" else 503
