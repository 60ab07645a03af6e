"""Queueing messages in the caller's transaction; the job renders and sends them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.service import record_event
from common.actors import Actor
from common.extensions import db
from common.fastsql import connection_of, insert_into
from common.jobs import enqueue_job
from messaging.models import Message

# A queued message is only appended here (the send job changes it later, in its own session):
# one statement on the cursor that returns the id, instead of a unit-of-work flush.
_INSERT_MESSAGE = insert_into(Message.__table__, returning=("id",))


def queue_message(
    *,
    recipient: str,
    kind: str,
    language: str,
    params: Mapping[str, Any],
    actor: Actor,
    claim_id: int | None = None,
) -> int:
    """Record a message and its send job in the current transaction (sent after commit).

    Returns the message's id.
    """
    message_id = _INSERT_MESSAGE.scalar(connection_of(), {
        "recipient": recipient, "kind": kind, "language": language, "params": dict(params),
        "claim_id": claim_id,
    })
    enqueue_job("messaging.send", message_id=message_id)
    record_event(
        entity_type="claim" if claim_id else "message",
        entity_id=params.get("claim_number") or message_id,
        action="message.queued",
        actor=actor,
        data={"message_id": message_id, "kind": kind, "to": recipient, "language": language},
    )
    return message_id


def messages_for_claim(claim_id: int) -> list[Message]:
    return list(db.session.scalars(
        db.select(Message).where(Message.claim_id == claim_id).order_by(Message.id)
    ))
