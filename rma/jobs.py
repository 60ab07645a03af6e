"""Label rendering in the background, right after an RMA is issued."""

from __future__ import annotations

from common.actors import Actor
from common.jobs import job
from rma.presenter import label_data_for
from rma.service import prepare_label, render_label_batch

LABELLER = Actor.system("labels")


@job("rma.prepare_label", timeout=120)
def prepare_rma_label(*, outbox_id: int, rma_number: str | None = None,
                      rma_id: int | None = None) -> None:
    """Render and keep the RMA's label once; safe to retry.

    ``rma_id``: rows queued by releases before the RMA was named by its number.
    """
    from claims.service import add_timeline_entry
    from common.extensions import db
    from rma.models import Rma

    if rma_number is None:
        rma = db.session.get(Rma, rma_id)
        if rma is None:
            return
        rma_number = rma.rma_number
    prepare_label(rma_number=rma_number, data_for=label_data_for, actor=LABELLER,
                  on_ready=lambda rma: add_timeline_entry(rma.claim, "label_ready"))


@job("rma.render_label_batch", timeout=600)
def render_batch(*, outbox_id: int, batch_id: str) -> None:
    """Render a staff batch of labels into one PDF."""
    render_label_batch(batch_id=batch_id, data_for=label_data_for)
