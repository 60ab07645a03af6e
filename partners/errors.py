"""Partner domain errors."""

from common.errors import Conflict, NotFound


class PartnerNotFound(NotFound):
    type = "partner-not-found"
    title = "Partner not found"


class PartnerExists(Conflict):
    type = "partner-exists"
    title = "Partner already exists"
