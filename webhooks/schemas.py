"""API schemas for webhooks."""

import marshmallow as ma

from common.schemas import Pattern
from webhooks.models import EVENT_TYPES


class SubscriptionCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    url = ma.fields.String(required=True, validate=[
        ma.validate.Length(min=8, max=500),
        # An absolute http(s) URL in printable ASCII, with a host and no user info.
        Pattern(r"^https?://[A-Za-z0-9._~%!$&'()*+,;=-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?$"),
    ], metadata={"description": "https:// (http:// too where the deployment allows it)"})
    events = ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(EVENT_TYPES)),
                            required=True, validate=ma.validate.Length(min=1, max=20))
    partner_code = ma.fields.String(load_default=None, validate=ma.validate.Length(max=32))


class SubscriptionSchema(ma.Schema):
    id = ma.fields.Integer()
    url = ma.fields.String()
    events = ma.fields.List(ma.fields.String())
    active = ma.fields.Boolean()
    created_at = ma.fields.DateTime()


class NewSubscriptionSchema(SubscriptionSchema):
    secret = ma.fields.String(metadata={"description": "HMAC signing secret; shown only once"})


class DeliverySchema(ma.Schema):
    id = ma.fields.Integer()
    event_id = ma.fields.String()
    event_type = ma.fields.String()
    status = ma.fields.String()
    attempts = ma.fields.Integer()
    last_status_code = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()
    delivered_at = ma.fields.DateTime(allow_none=True)
