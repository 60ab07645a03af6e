"""Rendering and sending queued messages."""

from __future__ import annotations

from flask import current_app, render_template
from flask_babel import force_locale

from audit.service import record_event
from claims.texts import EMAIL_SUBJECTS, REASONS, STATUSES, TIMELINE, reason_text, timeline_text
from common.actors import Actor
from common.extensions import db
from common.jobs import job
from common.models import utcnow
from messaging.backends import build_email, deliver
from messaging.models import Message

SENDER = Actor.system("mailer")


@job("messaging.send", timeout=120)
def send_message(*, outbox_id: int, message_id: int) -> None:
    """Render the message in its language, send it and keep exactly what was sent."""
    message = db.session.get(Message, message_id)
    if message is None or message.status == "sent":
        return
    message.attempts += 1
    if message.body is None:
        message.subject, message.body = render_message(message)
    db.session.commit()
    email = build_email(sender=current_app.config["MAIL_FROM"], recipient=message.recipient,
                        subject=message.subject, body=message.body,
                        message_id=message.message_id_header)
    deliver(email, current_app.config, file_stem=f"message-{message.id}")
    message.status = "sent"
    message.sent_at = utcnow()
    record_event(
        entity_type="claim" if message.claim_id else "message",
        entity_id=message.params.get("claim_number") or message.id,
        action="message.sent", actor=SENDER,
        data={"message_id": message.id, "kind": message.kind, "to": message.recipient,
              "subject": message.subject},
    )
    db.session.commit()


# Messages to partners and the support team (English only, like the staff pages).
STAFF_SUBJECTS = {
    "sla_at_risk": "SLA at risk: unit %(rma_number)s at %(partner_code)s",
    "sla_breached": "SLA breached: unit %(rma_number)s at %(partner_code)s",
    "sla_escalated": "SLA escalation: unit %(rma_number)s at %(partner_code)s",
    "sla_stage_overdue": "Stage overdue: unit %(rma_number)s %(stage)s at %(partner_code)s",
    "fraud_evidence_request": "Evidence requested on repair claims (case %(flag_id)s)",
}


def render_message(message: Message) -> tuple[str, str]:
    """Subject and plain-text body, rendered once in the recipient's language."""
    if message.kind in STAFF_SUBJECTS:
        params = dict(message.params)
        subject = STAFF_SUBJECTS[message.kind] % params
        return subject, render_template(f"emails/{message.kind}.txt", params=params)
    with force_locale(message.language):
        params = dict(message.params)
        subject = str(EMAIL_SUBJECTS[message.kind]) % {
            "claim_number": params.get("claim_number", ""),
            "rma_number": params.get("rma_number", ""),
        }
        reasons = []
        if message.claim_id is not None:
            from claims.models import Claim
            from claims.rules import public_code

            claim = db.session.get(Claim, message.claim_id)
            reasons = [reason_text(public_code(r["code"]), r.get("params", {}))
                       for r in claim.reasons if public_code(r["code"]) in REASONS]
            params.setdefault("status_text", str(STATUSES.get(claim.status, claim.status)))
        step = params.get("step")
        body = render_template(
            f"emails/{message.kind}.txt", params=params, reasons=reasons,
            step_text=timeline_text(step, params) if step in TIMELINE else None,
        )
    return subject, body
