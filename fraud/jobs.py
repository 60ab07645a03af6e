"""The scoring job (scheduled by cron through the outbox, like the SLA check)."""

from __future__ import annotations

from common.actors import Actor
from common.jobs import job


@job("fraud.score", timeout=3600)
def score_job(*, outbox_id: int) -> None:
    """Score all claims and bring the flags up to date (idempotent: safe to re-run)."""
    from fraud.service import score_all

    score_all(actor=Actor.system("fraud-scoring"))
