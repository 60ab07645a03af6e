"""Webhook subscriptions for admins (any scope) and partners (their own), with delivery logs."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_login import current_user
from flask_smorest import Blueprint

from auth.access import current_partner_id, roles_required
from auth.roles import ADMIN, PARTNER
from common.extensions import db
from webhooks import service
from webhooks.models import WebhookSubscription
from webhooks.schemas import (
    DeliverySchema,
    NewSubscriptionSchema,
    SubscriptionCreateSchema,
    SubscriptionSchema,
)

api_bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
                   description="Signed event notifications")


def _scope() -> int | None:
    return current_partner_id()


@api_bp.route("", methods=["POST"])
@roles_required(ADMIN, PARTNER)
@api_bp.arguments(SubscriptionCreateSchema)
@api_bp.response(201, NewSubscriptionSchema)
def subscribe(data: dict[str, Any]) -> Any:
    """Subscribe an endpoint to events; a partner's subscription covers its own units only."""
    partner_id = _scope()
    if partner_id is None and data.get("partner_code"):
        from partners.service import get_partner

        partner_id = get_partner(data["partner_code"]).id
    return service.subscribe(url=data["url"], events=data["events"], actor=current_user.actor,
                             partner_id=partner_id,
                             allow_http=current_app.config["WEBHOOK_ALLOW_HTTP"])


@api_bp.route("")
@roles_required(ADMIN, PARTNER)
@api_bp.response(200, SubscriptionSchema(many=True))
def list_subscriptions() -> Any:
    """Active subscriptions (a partner sees only its own)."""
    query = db.select(WebhookSubscription).where(WebhookSubscription.active.is_(True))
    if _scope() is not None:
        query = query.where(WebhookSubscription.partner_id == _scope())
    return db.session.scalars(query.order_by(WebhookSubscription.id)).all()


@api_bp.route("/<int(max=2147483647):subscription_id>", methods=["DELETE"])
@roles_required(ADMIN, PARTNER)
@api_bp.response(204)
def unsubscribe(subscription_id: int) -> None:
    """Stop a subscription (pending deliveries are cancelled)."""
    service.unsubscribe(subscription_id=subscription_id, partner_id=_scope(),
                        actor=current_user.actor)


@api_bp.route("/<int(max=2147483647):subscription_id>/deliveries")
@roles_required(ADMIN, PARTNER)
@api_bp.response(200, DeliverySchema(many=True))
def delivery_log(subscription_id: int) -> Any:
    """The latest deliveries and their outcome."""
    return service.deliveries(service.get_subscription(subscription_id, partner_id=_scope()))
