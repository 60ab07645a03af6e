"""The repair state machine: which status may follow which. Pure data and functions."""

from __future__ import annotations

IN_TRANSIT = "in_transit"
RECEIVED = "received_at_partner"
DIAGNOSING = "diagnosing"
AWAITING_PARTS = "awaiting_parts"
REPAIRING = "repairing"
REPAIRED = "repaired"
UNREPAIRABLE = "unrepairable"
REPLACED = "replaced"
SHIPPED_BACK = "shipped_back"

TRANSITIONS: dict[str, tuple[str, ...]] = {
    IN_TRANSIT: (RECEIVED,),
    RECEIVED: (DIAGNOSING,),
    DIAGNOSING: (AWAITING_PARTS, REPAIRING, UNREPAIRABLE, REPLACED),
    AWAITING_PARTS: (REPAIRING, UNREPAIRABLE, REPLACED),
    REPAIRING: (REPAIRED, AWAITING_PARTS, UNREPAIRABLE, REPLACED),
    REPAIRED: (SHIPPED_BACK,),
    UNREPAIRABLE: (SHIPPED_BACK,),
    REPLACED: (SHIPPED_BACK,),
    SHIPPED_BACK: (),
}
STATUSES = tuple(TRANSITIONS)

# What the customer's timeline says for each status (claims.texts.TIMELINE keys).
CUSTOMER_STEPS = {
    RECEIVED: "at_partner",
    REPAIRING: "repairing",
    REPAIRED: "repaired",
    REPLACED: "replaced",
    SHIPPED_BACK: "shipped_back",
}


def allowed_next(status: str) -> tuple[str, ...]:
    return TRANSITIONS.get(status, ())


def can_move(current: str, target: str) -> bool:
    return target in allowed_next(current)
