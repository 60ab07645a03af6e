"""Inline jobs (no Redis) run after the request has given its connection back to the pool.

Found by the races suite: dispatched from SQLAlchemy's ``after_commit`` hook, an inline job
checked out a second connection while the request still held its first, so N concurrent
requests on a pool of N all waited for the pool timeout and every job stayed pending.
"""

from __future__ import annotations

from sqlalchemy import select

from common.extensions import db
from rma.models import Rma
from tests.factories import claim_body, load_catalog, register_purchase


def test_an_inline_job_runs_on_a_pool_of_one_connection(make_app):
    app = make_app(SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 1, "max_overflow": 0,
                                              "pool_timeout": 2})
    with app.app_context():
        load_catalog()
        register_purchase("POOL1")
    filed = app.test_client().post("/api/v1/claims", json=claim_body("POOL1"))
    assert filed.status_code == 201
    with app.app_context():
        rma = db.session.scalar(select(Rma))
        assert rma.label_ready_at is not None, "the inline label job timed out on the pool"
