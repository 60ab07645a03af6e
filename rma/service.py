"""Issuing RMAs, finding them by number, and their labels."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from audit.service import record_event
from claims.models import Claim
from common.actors import Actor
from common.extensions import db
from common.fastsql import connection_of, insert_into
from common.jobs import enqueue_job
from common.models import utcnow
from rma.errors import BadRmaNumber, RmaNotFound
from rma.labels import LabelData, render_label, render_labels
from rma.models import LabelBatch, Rma, RmaLabel
from rma.numbers import new_rma_number, parse_rma_number

LABEL_PAGES = ("4x6", "a4", "letter")


@dataclass(frozen=True)
class IssuedRma:
    """The RMA ``issue_rma`` wrote: what the caller needs without loading the row back."""

    rma_number: str
    remedy: str


# An RMA is only appended when issued (later changes load it): one statement on the cursor
# instead of a unit-of-work flush. It names its claim by number, so it needs nothing back from
# the claim's INSERT and nothing is read back from it (children name it by its number too).
_INSERT_RMA = insert_into(Rma.__table__, references={"claim_id": Claim.__table__.c.claim_number})


def issue_rma(*, claim_number: str, remedy: str, actor: Actor) -> IssuedRma:
    """Add an RMA for an approved claim to the current transaction (number unique by DB)."""
    number = new_rma_number()
    # A number collision raises IntegrityError (at once, or when the batch runs); the
    # caller retries with a fresh number.
    _INSERT_RMA.execute(
        connection_of(), {"rma_number": number, "claim_number": claim_number, "remedy": remedy}
    )
    record_event(
        entity_type="rma",
        entity_id=number,
        action="rma.issued",
        actor=actor,
        data={"claim_number": claim_number, "remedy": remedy},
    )
    return IssuedRma(number, remedy)


def parse_or_refuse(text: str) -> str:
    """The canonical RMA number, or a 422 naming what is wrong with the input."""
    parsed = parse_rma_number(text)
    if parsed.outcome != "ok" or parsed.number is None:
        raise BadRmaNumber(
            parsed.message,
            errors={"rma_number": [parsed.message]},
            extra={"outcome": parsed.outcome},
        )
    return parsed.number


def get_rma(rma_number: str) -> Rma:
    """An RMA by (possibly formatted) number; 422 for a bad check character, 404 if unknown."""
    number = parse_or_refuse(rma_number)
    rma = db.session.scalar(select(Rma).where(Rma.rma_number == number))
    if rma is None:
        raise RmaNotFound(f"no RMA {number}")
    return rma


def rma_for_claim(claim_id: int) -> Rma | None:
    return db.session.scalar(select(Rma).where(Rma.claim_id == claim_id))


def label_pdf(rma: Rma, data: LabelData, *, page: str = "4x6", store: bool = True) -> bytes:
    """The label as first issued (stored copy), rendering and keeping it the first time."""
    stored = db.session.get(RmaLabel, (rma.id, page))
    if stored is not None:
        return stored.pdf
    pdf = render_label(data, page=page)
    if store:
        db.session.add(
            RmaLabel(
                rma_id=rma.id,
                page=page,
                language=rma.claim.language,
                pdf=pdf,
                sha256=hashlib.sha256(pdf).hexdigest(),
            )
        )
        try:
            db.session.commit()
        except IntegrityError:  # a concurrent request stored it first: the same label
            db.session.rollback()
    return pdf


def prepare_label(*, rma_number: str, data_for: Callable[[Rma], LabelData], actor: Actor,
                  on_ready: Callable[[Rma], None] | None = None) -> bool:
    """Render and keep the 4x6 label; True the first time (idempotent, also when concurrent).

    The label's readiness, its audit event and whatever ``on_ready`` adds (the customer's
    timeline step) commit together: a worker killed in between leaves none of them, so the
    retry does all of them once.
    """
    rma = db.session.scalar(select(Rma).where(Rma.rma_number == rma_number))
    if rma is None or rma.label_ready_at is not None:
        return False
    label_pdf(rma, data_for(rma), page="4x6")  # keeps the rendered copy (its own commit)
    # Conditional, so of two runs at once one marks it and the other (blocked on the row until
    # the first commits) finds it marked.
    marked = db.session.execute(
        update(Rma).where(Rma.id == rma.id, Rma.label_ready_at.is_(None))
        .values(label_ready_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    if marked != 1:
        db.session.rollback()
        return False
    record_event(entity_type="rma", entity_id=rma.rma_number, action="rma.label_ready", actor=actor)
    if on_ready is not None:
        on_ready(rma)
    db.session.commit()
    return True


def request_label_batch(*, rma_numbers: Sequence[str], page: str, actor: Actor) -> LabelBatch:
    """Check every number, then record the batch and its rendering job (one transaction)."""
    canonical = [get_rma(number).rma_number for number in rma_numbers]
    batch = LabelBatch(id=str(uuid.uuid4()), requested_by=str(actor), rma_numbers=canonical,
                       page=page)
    db.session.add(batch)
    enqueue_job("rma.render_label_batch", batch_id=batch.id)
    record_event(entity_type="label_batch", entity_id=batch.id, action="labels.batch_requested",
                 actor=actor, data={"count": len(canonical), "page": page})
    db.session.commit()
    return batch


def render_label_batch(*, batch_id: str, data_for: Callable[[Rma], LabelData]) -> None:
    """Render a batch's PDF once (idempotent)."""
    batch = db.session.get(LabelBatch, batch_id)
    if batch is None or batch.pdf is not None:
        return
    rmas = db.session.scalars(select(Rma).where(Rma.rma_number.in_(batch.rma_numbers))).all()
    by_number = {rma.rma_number: rma for rma in rmas}
    batch.pdf = render_labels([data_for(by_number[n]) for n in batch.rma_numbers],
                              page=batch.page)
    batch.completed_at = utcnow()
    db.session.commit()


def get_label_batch(batch_id: str) -> LabelBatch:
    batch = db.session.get(LabelBatch, batch_id)
    if batch is None:
        raise RmaNotFound(f"no label batch {batch_id}")
    return batch
