"""Audit trail API: an entity's history and a chain verification."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from audit import service
from audit.schemas import AuditEventSchema, ChainVerificationSchema
from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, SUPPORT
from common.pagination import paginate

api_bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="Audit trail")


@api_bp.route("/<string:entity_type>/<string:entity_id>")
@roles_required(ADMIN, SUPPORT, FINANCE)
@api_bp.response(200, AuditEventSchema(many=True))
@api_bp.paginate()
def entity_history(entity_type: str, entity_id: str, pagination_parameters: Any) -> Any:
    """Who did what to one entity, when and why, oldest first."""
    return paginate(service.entity_history_query(entity_type, entity_id), pagination_parameters)


@api_bp.route("/verification")
@roles_required(ADMIN)
@api_bp.response(200, ChainVerificationSchema)
def verify() -> Any:
    """Verify the whole hash chain now and name the first broken event, if any."""
    return service.verify_chain()
