"""Periodic integrity check of the audit chain."""

from __future__ import annotations

from audit.service import record_chain_check
from common.jobs import job


@job("audit.verify_chain", timeout=1800)
def verify_audit_chain(*, outbox_id: int) -> None:
    """Verify the chain and store the result once per outbox row (safe to retry)."""
    record_chain_check(outbox_id=outbox_id)
