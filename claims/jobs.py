"""Claim follow-ups that run once the decision has committed."""

from __future__ import annotations

from typing import Any

from claims.errors import ClaimNotFound
from claims.models import Claim
from claims.service import announce
from common.actors import Actor, current_request_id
from common.extensions import db
from common.jobs import job


@job("claims.announce", timeout=120)
def announce_decision(*, outbox_id: int, kind: str, params: dict[str, Any],
                      events: list[list[Any]], actor: dict[str, str],
                      claim_number: str | None = None, claim_id: int | None = None,
                      request_id: str | None = None) -> None:
    """The customer's email and the webhook events of a filing or review decision, once.

    ``claim_id``: rows queued by releases before the claim was named by its number.
    """
    if claim_number is None:
        claim = db.session.get(Claim, claim_id)
        if claim is None:
            raise ClaimNotFound(f"no claim {claim_id}")
        claim_number = claim.claim_number
    # The audit events it records name the request that made the decision.
    token = current_request_id.set(request_id)
    try:
        announce(outbox_id=outbox_id, claim_number=claim_number, kind=kind, params=params,
                 events=events, actor=Actor.from_dict(actor))
    finally:
        current_request_id.reset(token)
