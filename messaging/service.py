"""Queueing messages in the caller's transaction; the job renders and sends them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.service import record_event
from common.actors import Actor
from common.extensions import db
from common.jobs import enqueue_job
from messaging.models import Message


def queue_message(
    *,
    recipient: str,
    kind: str,
    language: str,
    params: Mapping[str, Any],
    actor: Actor,
    claim_id: int | None = None,
) -> Message:
    """Record a message and its send job in the current transaction (sent after commit)."""
    message = Message(recipient=recipient, kind=kind, language=language, params=dict(params),
                      claim_id=claim_id)
    db.session.add(message)
    db.session.flush()
    enqueue_job("messaging.send", message_id=message.id)
    record_event(
        entity_type="claim" if claim_id else "message",
        entity_id=params.get("claim_number") or message.id,
        action="message.queued",
        actor=actor,
        data={"message_id": message.id, "kind": kind, "to": recipient, "language": language},
    )
    return message


def messages_for_claim(claim_id: int) -> list[Message]:
    return list(db.session.scalars(
        db.select(Message).where(Message.claim_id == claim_id).order_by(Message.id)
    ))
