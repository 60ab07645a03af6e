"""Subscriptions, publishing events in the caller's transaction, and delivering them."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import select

from audit.service import record_event
from common.actors import Actor
from common.errors import NotFound, ValidationFailed
from common.extensions import db
from common.fastsql import connection_of
from common.jobs import enqueue_job
from common.models import utcnow
from webhooks.models import EVENT_TYPES, WebhookDelivery, WebhookSubscription
from webhooks.signing import signature


class DeliveryFailed(RuntimeError):
    """The endpoint did not accept the delivery; the job raises it so rq retries."""


def subscribe(*, url: str, events: Sequence[str], actor: Actor, partner_id: int | None,
              allow_http: bool) -> WebhookSubscription:
    """Register an endpoint; the signing secret is returned on the object this once."""
    parsed = urlparse(url)
    if parsed.scheme not in (("https", "http") if allow_http else ("https",)) or \
            not parsed.netloc:
        raise ValidationFailed("bad URL", errors={"url": [
            "an absolute https:// URL" + (" (or http://)" if allow_http else "")]})
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise ValidationFailed("bad events", errors={"events": [
            "choose from " + ", ".join(EVENT_TYPES)]})
    subscription = WebhookSubscription(url=url, events=sorted(set(events)), partner_id=partner_id,
                                       secret="whsec_" + secrets.token_urlsafe(32),
                                       created_by=str(actor))
    db.session.add(subscription)
    db.session.flush()
    record_event(entity_type="webhook", entity_id=subscription.id, action="webhook.subscribed",
                 actor=actor, data={"url": url, "events": subscription.events,
                                    "partner_id": partner_id})
    db.session.commit()
    return subscription


def get_subscription(subscription_id: int, *, partner_id: int | None) -> WebhookSubscription:
    """A subscription, scoped: a partner only ever finds its own."""
    query = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
    if partner_id is not None:
        query = query.where(WebhookSubscription.partner_id == partner_id)
    subscription = db.session.scalar(query)
    if subscription is None:
        raise NotFound(f"no webhook {subscription_id}")
    return subscription


def unsubscribe(*, subscription_id: int, partner_id: int | None, actor: Actor) -> None:
    subscription = get_subscription(subscription_id, partner_id=partner_id)
    subscription.active = False
    record_event(entity_type="webhook", entity_id=subscription.id, action="webhook.removed",
                 actor=actor)
    db.session.commit()


def publish(event_type: str, data: Mapping[str, Any], *, partner_id: int | None = None) -> int:
    """Queue the event for every matching subscription, in the caller's transaction."""
    return publish_many([(event_type, data)], partner_id=partner_id)


# Read on every published event (claim filing is a hot path): the three columns matching needs,
# through a statement built once, without loading mapped objects.
_ACTIVE_SUBSCRIPTIONS = select(
    WebhookSubscription.id, WebhookSubscription.partner_id, WebhookSubscription.events
).where(WebhookSubscription.active.is_(True))


def publish_many(events: Sequence[tuple[str, Mapping[str, Any]]], *,
                 partner_id: int | None = None) -> int:
    """Queue several events, reading the subscriptions once (claim filing is a hot path).

    Integrator subscriptions (no partner) get every event they asked for; a partner's get
    only events about that partner.
    """
    subscriptions = connection_of().execute(_ACTIVE_SUBSCRIPTIONS).all()
    queued = 0
    for event_type, data in events:
        event_id = str(uuid.uuid4())
        for subscription in subscriptions:
            if event_type not in subscription.events:
                continue
            if subscription.partner_id is not None and subscription.partner_id != partner_id:
                continue
            delivery = WebhookDelivery(
                subscription_id=subscription.id, event_id=event_id, event_type=event_type,
                payload={"id": event_id, "type": event_type,
                         "created_at": utcnow().isoformat(), "data": dict(data)})
            db.session.add(delivery)
            db.session.flush()
            enqueue_job("webhooks.deliver", delivery_id=delivery.id)
            queued += 1
    return queued


def deliver(delivery_id: int, *, timeout: float = 10.0) -> str:
    """POST one delivery, signed; raise on failure so the job retries with backoff."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status == "delivered":
        return "skipped"
    subscription = db.session.get(WebhookSubscription, delivery.subscription_id)
    if not subscription.active:
        delivery.status = "cancelled"
        db.session.commit()
        return "cancelled"
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
    timestamp = str(int(utcnow().timestamp()))
    request = urllib.request.Request(subscription.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Aftercare-Webhooks/1",
        "X-Aftercare-Event": delivery.event_type, "X-Aftercare-Delivery": delivery.event_id,
        "X-Aftercare-Timestamp": timestamp,
        "X-Aftercare-Signature": signature(subscription.secret, timestamp, body),
    })
    delivery.attempts += 1
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            delivery.last_status_code = response.status
    except urllib.error.HTTPError as exc:
        delivery.last_status_code, delivery.last_error = exc.code, f"HTTP {exc.code}"
        exc.close()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        delivery.last_error = str(exc)[:500]
    if delivery.last_status_code and 200 <= delivery.last_status_code < 300:
        delivery.status, delivery.delivered_at, delivery.last_error = "delivered", utcnow(), None
        db.session.commit()
        return "delivered"
    delivery.status = "failed"
    db.session.commit()
    raise DeliveryFailed(f"delivery {delivery_id}: {delivery.last_error}")


def deliveries(subscription: WebhookSubscription) -> list[WebhookDelivery]:
    return list(db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
        .order_by(WebhookDelivery.id.desc()).limit(200)))
