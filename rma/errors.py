"""RMA domain errors."""

from common.errors import NotFound, ValidationFailed


class RmaNotFound(NotFound):
    type = "rma-not-found"
    title = "RMA not found"


class BadRmaNumber(ValidationFailed):
    type = "bad-rma-number"
    title = "Not a valid RMA number"
