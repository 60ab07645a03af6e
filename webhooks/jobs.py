"""Webhook delivery job: retried with growing backoff by rq."""

from __future__ import annotations

from common.jobs import job
from webhooks.service import deliver


@job("webhooks.deliver", timeout=60, retry_intervals=(10, 60, 300, 1800, 7200))
def deliver_webhook(*, outbox_id: int, delivery_id: int) -> None:
    """Send one signed delivery; failing raises, so rq retries it later."""
    deliver(delivery_id)
