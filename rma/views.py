"""RMA API: lookup by number, the label PDF, and batch label printing."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, SUPPORT, WAREHOUSE
from rma import service
from rma.numbers import format_rma_number
from rma.presenter import label_data_for
from rma.schemas import LabelBatchSchema, LabelQuerySchema, RmaSchema

api_bp = Blueprint("rmas", __name__, url_prefix="/api/v1/rmas", description="RMAs and labels")

PDF_RESPONSE = {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}}


def pdf_response(pdf: bytes, filename: str) -> Response:
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )


@api_bp.route("/<string:rma_number>")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
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


@api_bp.route("/<string:rma_number>/label.pdf")
@roles_required(ADMIN, SUPPORT, WAREHOUSE)
@api_bp.arguments(LabelQuerySchema, location="query")
@api_bp.doc(responses={"200": {"description": "The return label", **PDF_RESPONSE}})
def get_label(query: dict[str, Any], rma_number: str) -> Response:
    """The return label: 4x6 inch thermal (default), or A4/Letter with a packing slip."""
    rma = service.get_rma(rma_number)
    pdf = service.label_pdf(rma, label_data_for(rma), page=query["page"])
    return pdf_response(pdf, f"{rma.rma_number}-{query['page']}.pdf")


@api_bp.route("/labels", methods=["POST"])
@roles_required(ADMIN, SUPPORT, WAREHOUSE)
@api_bp.arguments(LabelBatchSchema)
@api_bp.doc(responses={"200": {"description": "All the labels in one PDF", **PDF_RESPONSE}})
def batch_labels(data: dict[str, Any]) -> Response:
    """Many labels in one PDF for printing (up to 1,000)."""
    rmas = [service.get_rma(number) for number in data["rma_numbers"]]
    return pdf_response(service.batch_labels(rmas, label_data_for, page=data["page"]), "labels.pdf")
