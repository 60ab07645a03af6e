"""Partner administration API (admin) and the partner's view of itself."""

from __future__ import annotations

from typing import Any

from flask_login import current_user
from flask_smorest import Blueprint

from auth.access import roles_required
from auth.roles import ADMIN, FINANCE, PARTNER, SUPPORT, WAREHOUSE
from common.extensions import db
from common.pagination import paginate
from partners import service
from partners.models import Partner
from partners.schemas import (
    IssuedPartnerKeySchema,
    PartnerCreateSchema,
    PartnerKeyCreateSchema,
    PartnerKeySchema,
    PartnerSchema,
)

api_bp = Blueprint("partners", __name__, url_prefix="/api/v1", description="Service partners")


@api_bp.route("/partners")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, PartnerSchema(many=True))
@api_bp.paginate()
def list_partners(pagination_parameters: Any) -> Any:
    """All service partners."""
    return paginate(db.select(Partner).order_by(Partner.code), pagination_parameters)


@api_bp.route("/partners", methods=["POST"])
@roles_required(ADMIN)
@api_bp.arguments(PartnerCreateSchema)
@api_bp.response(201, PartnerSchema)
def create_partner(data: dict[str, Any]) -> Any:
    """Register a service partner (admin)."""
    return service.create_partner(actor=current_user.actor, **data)


@api_bp.route("/partners/<string:code>")
@roles_required(ADMIN, SUPPORT, WAREHOUSE, FINANCE)
@api_bp.response(200, PartnerSchema)
def get_partner(code: str) -> Any:
    """One service partner."""
    return service.get_partner(code)


@api_bp.route("/partners/<string:code>/keys")
@roles_required(ADMIN)
@api_bp.response(200, PartnerKeySchema(many=True))
def list_partner_keys(code: str) -> Any:
    """A partner's API keys (never their secrets)."""
    return service.list_partner_keys(code)


@api_bp.route("/partners/<string:code>/keys", methods=["POST"])
@roles_required(ADMIN)
@api_bp.arguments(PartnerKeyCreateSchema)
@api_bp.response(201, IssuedPartnerKeySchema)
def issue_partner_key(data: dict[str, Any], code: str) -> Any:
    """Issue a new API key; the secret is in this response only."""
    issued = service.issue_partner_key(partner_code=code, actor=current_user.actor, **data)
    fields = PartnerKeySchema().fields
    return {**{name: getattr(issued.key, name) for name in fields}, "key": issued.secret}


@api_bp.route("/partners/<string:code>/keys/<int(max=2147483647):key_id>", methods=["DELETE"])
@roles_required(ADMIN)
@api_bp.response(204)
def revoke_partner_key(code: str, key_id: int) -> None:
    """Revoke a partner API key; requests with it are refused from now on."""
    service.revoke_partner_key(partner_code=code, key_id=key_id, actor=current_user.actor)


@api_bp.route("/partner/profile")
@roles_required(PARTNER)
@api_bp.response(200, PartnerSchema)
def my_partner() -> Any:
    """The calling partner's own record (partner keys and partner users)."""
    return db.session.get(Partner, current_user.partner_id)
