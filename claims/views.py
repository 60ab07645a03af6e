"""Claims API: public filing (rate limited, idempotent), staff lookup, review and notes."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, jsonify, request
from flask_login import current_user
from flask_smorest import Blueprint

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, SUPPORT, WAREHOUSE
from claims import service
from claims.presenter import filed_response, staff_view
from claims.schemas import (
    ClaimCreateSchema,
    ClaimDetailSchema,
    ClaimFiledSchema,
    ClaimQuerySchema,
    ClaimSchema,
    NoteCreateSchema,
    NoteSchema,
    ReviewSchema,
)
from claims.settings import claim_settings
from common.actors import Actor
from common.errors import ValidationFailed
from common.extensions import limiter
from common.pagination import paginate

api_bp = Blueprint("claims", __name__, url_prefix="/api/v1/claims",
                   description="Warranty claims")

# Instances, not classes: webargs would build a new schema for every request from a class.
CREATE_SCHEMA = ClaimCreateSchema()
IDEMPOTENCY_HEADER = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "maxLength": 200},
    "description": "Same key and body: the same answer and one claim. Same key, other body: 422.",
}


def _public_limit() -> str:
    return current_app.config["RATELIMIT_PUBLIC"]


def _is_staff() -> bool:
    return bool(current_user.is_authenticated and current_user.role in (ADMIN, SUPPORT))


def _submitter() -> Actor:
    if current_user.is_authenticated:
        return current_user.actor
    return Actor("customer", "anonymous", f"customer via API from {request.remote_addr}")


@api_bp.route("", methods=["POST"])
@limiter.limit(_public_limit, exempt_when=_is_staff)
@api_bp.arguments(CREATE_SCHEMA)
@api_bp.doc(parameters=[IDEMPOTENCY_HEADER], security=[{}, {"bearer": []}])
@api_bp.response(201, ClaimFiledSchema)
@api_bp.alt_response(200, schema=ClaimFiledSchema,
                     description="An open claim for this serial already existed (or a replay)")
@api_bp.alt_response(429, description="Too many requests")
def file_claim(data: dict[str, Any]) -> Any:
    """File a warranty claim: decided at once against the registered purchase."""
    idempotency = None
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        if not 1 <= len(key) <= 200:
            raise ValidationFailed("bad Idempotency-Key",
                                   errors={"Idempotency-Key": ["1 to 200 characters"]})
        scope = f"api:{current_user.get_id()}" if current_user.is_authenticated else "api:public"
        body = json.dumps(data, sort_keys=True, default=str)
        idempotency = service.IdempotencyRequest(scope, key, service.fingerprint(body))
    filed = service.file_claim(
        service.ClaimInput(
            serial_number=data["serial_number"], email=data["email"],
            fault_category=data["fault_category"], description=data["description"],
            requested_remedy=data["remedy"], dead_on_arrival=data["dead_on_arrival"],
            language=data["language"], customer_name=data["customer_name"],
            return_address=data["return_address"],
        ),
        actor=_submitter(), settings=claim_settings(current_app.config), source="api",
        idempotency=idempotency,
    )
    if filed.replayed is not None and filed.replayed.response_body is not None:
        return filed.replayed.response_body, filed.replayed.response_status
    status = 201 if filed.created else 200
    # Already the schema's plain JSON form (tests/test_claims.py checks it against the schema),
    # so the busiest public endpoint answers it as it is instead of dumping it again.
    body = filed_response(filed)
    if idempotency is not None and filed.created:
        service.remember_response(idempotency.scope, idempotency.key, status, body)
    return jsonify(body), status


@api_bp.route("")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.arguments(ClaimQuerySchema, location="query")
@api_bp.response(200, ClaimSchema(many=True))
@api_bp.paginate()
def list_claims(filters: dict[str, Any], pagination_parameters: Any) -> Any:
    """Search claims by serial, email, claim or RMA number; filter by status."""
    claims = paginate(service.search_claims(filters.get("q"), filters.get("status")),
                      pagination_parameters)
    return [staff_view(claim) for claim in claims]


@api_bp.route("/<string:claim_number>")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, ClaimDetailSchema)
def get_claim(claim_number: str) -> Any:
    """One claim with its timeline, notes and messages."""
    return staff_view(service.get_claim(claim_number), detail=True)


@api_bp.route("/<string:claim_number>/review", methods=["POST"])
@roles_required(ADMIN, SUPPORT)
@api_bp.arguments(ReviewSchema)
@api_bp.response(200, ClaimDetailSchema)
@api_bp.alt_response(409, description="The claim is not waiting for review")
def review_claim(data: dict[str, Any], claim_number: str) -> Any:
    """Approve (issues the RMA) or reject a claim waiting for review, with a note."""
    claim = service.review_claim(
        claim_number=claim_number, approve=data["decision"] == "approve", note=data["note"],
        remedy=data["remedy"], actor=current_user.actor,
        settings=claim_settings(current_app.config),
    )
    return staff_view(claim, detail=True)


@api_bp.route("/<string:claim_number>/notes", methods=["POST"])
@roles_required(ADMIN, SUPPORT)
@api_bp.arguments(NoteCreateSchema)
@api_bp.response(201, NoteSchema)
def add_note(data: dict[str, Any], claim_number: str) -> Any:
    """Add an internal note to a claim."""
    return service.add_note(claim_number=claim_number, body=data["body"],
                            actor=current_user.actor)
