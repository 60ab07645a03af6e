"""RMA API: lookup by number, the label PDF, and batch label printing."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask_login import current_user
from flask_smorest import Blueprint
from werkzeug.routing import BaseConverter

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, SUPPORT, WAREHOUSE
from common.errors import Conflict
from rma import service
from rma.numbers import format_rma_number
from rma.presenter import label_data_for
from rma.schemas import (
    LabelBatchSchema,
    LabelBatchStatusSchema,
    LabelQuerySchema,
    RmaSchema,
    rma_number_parameter,
)

api_bp = Blueprint("rmas", __name__, url_prefix="/api/v1/rmas", description="RMAs and labels")


class RmaPathConverter(BaseConverter):
    """Any path segment but ``label-batches``: that one names the batch collection, so that
    ``/rmas/label-batches`` allows POST only (and says so in ``Allow``)."""

    regex = r"(?!label-batches$)[^/]+"
    part_isolating = True  # one segment, though the regex mentions "/"


RMA_NUMBER = rma_number_parameter(
    "its last symbol is a check character: a mistyped number is answered 422 with `outcome` "
    "`bad_check_character`, an unknown one 404.")

# Before the routes below are added: the converter must be known when they are bound.
api_bp.record_once(lambda state: state.app.url_map.converters.setdefault("rma",
                                                                        RmaPathConverter))

PDF_RESPONSE = {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}


def pdf_response(pdf: bytes, filename: str) -> Response:
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )


@api_bp.route("/<rma:rma_number>")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.doc(parameters=[RMA_NUMBER])
@api_bp.response(200, RmaSchema)
def get_rma(rma_number: str) -> Any:
    """One RMA (422 for a mistyped check character, 404 when unknown)."""
    rma = service.get_rma(rma_number)
    return {
        "rma_number": rma.rma_number,
        "formatted": format_rma_number(rma.rma_number),
        "claim_number": rma.claim.claim_number,
        "serial_number": rma.claim.serial_number,
        "sku": rma.claim.sku,
        "remedy": rma.remedy,
        "status": rma.status,
        "issued_at": rma.issued_at,
        "label_ready_at": rma.label_ready_at,
    }


@api_bp.route("/<rma:rma_number>/label.pdf")
@roles_required(ADMIN, SUPPORT, WAREHOUSE)
@api_bp.arguments(LabelQuerySchema, location="query")
@api_bp.doc(parameters=[RMA_NUMBER],
            responses={"200": {"description": "The return label", **PDF_RESPONSE}})
def get_label(query: dict[str, Any], rma_number: str) -> Response:
    """The return label: 4x6 inch thermal (default), or A4/Letter with a packing slip."""
    rma = service.get_rma(rma_number)
    pdf = service.label_pdf(rma, label_data_for(rma), page=query["page"])
    return pdf_response(pdf, f"{rma.rma_number}-{query['page']}.pdf")


@api_bp.route("/label-batches", methods=["POST"])
@roles_required(ADMIN, SUPPORT, WAREHOUSE)
@api_bp.arguments(LabelBatchSchema)
@api_bp.response(202, LabelBatchStatusSchema)
def request_batch(data: dict[str, Any]) -> Any:
    """Print many labels (up to 1,000) as one PDF; rendered by a background job."""
    batch = service.request_label_batch(rma_numbers=data["rma_numbers"], page=data["page"],
                                        actor=current_user.actor)
    return _batch_status(batch)


@api_bp.route("/label-batches/<string:batch_id>")
@roles_required(ADMIN, SUPPORT, WAREHOUSE)
@api_bp.response(200, LabelBatchStatusSchema)
def batch_status(batch_id: str) -> Any:
    """Whether a batch is ready, and where to download it."""
    return _batch_status(service.get_label_batch(batch_id))


@api_bp.route("/label-batches/<string:batch_id>/labels.pdf")
@roles_required(ADMIN, SUPPORT, WAREHOUSE)
@api_bp.doc(responses={"200": {"description": "All the labels in one PDF", **PDF_RESPONSE}})
@api_bp.alt_response(409, description="Not rendered yet")
def batch_pdf(batch_id: str) -> Response:
    """The batch's PDF once rendered (409 while the job is still running)."""
    batch = service.get_label_batch(batch_id)
    if batch.pdf is None:
        raise Conflict("the batch is still being rendered; try again shortly")
    return pdf_response(batch.pdf, f"labels-{batch.id}.pdf")


def _batch_status(batch: Any) -> dict[str, Any]:
    ready = batch.pdf is not None
    return {
        "id": batch.id, "count": len(batch.rma_numbers), "page": batch.page, "ready": ready,
        "created_at": batch.created_at, "completed_at": batch.completed_at,
        "download_url": url_for("rmas.batch_pdf", batch_id=batch.id) if ready else None,
    }
