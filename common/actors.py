"""Who did something: the ``actor`` every service call and audit event carries."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

# Set per request by common.security so that services stay Flask-free yet the audit trail
# can tie events to the request that caused them.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_request_id", default=None
)


@dataclass(frozen=True, slots=True)
class Actor:
    """An identity that can change state: a staff user, a partner, a customer or the system."""

    type: str  # "user" | "partner" | "customer" | "system"
    id: str
    label: str = ""

    @classmethod
    def system(cls, process: str) -> Actor:
        return cls("system", process, process)

    @classmethod
    def customer(cls, email: str) -> Actor:
        return cls("customer", email.lower(), email.lower())

    def as_dict(self) -> dict[str, str]:
        """For job arguments: ``Actor.from_dict`` gives the same actor back."""
        return {"type": self.type, "id": self.id, "label": self.label}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Actor:
        return cls(data["type"], data["id"], data.get("label", ""))

    def __str__(self) -> str:
        return f"{self.type}:{self.label or self.id}"
