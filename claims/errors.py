"""Claim domain errors."""

from common.errors import Conflict, NotFound, ValidationFailed


class ClaimNotFound(NotFound):
    type = "claim-not-found"
    title = "Claim not found"


class IdempotencyKeyReused(ValidationFailed):
    type = "idempotency-key-reused"
    title = "Idempotency-Key reused with a different request"


class ClaimNotReviewable(Conflict):
    type = "claim-not-reviewable"
    title = "Claim is not waiting for review"
