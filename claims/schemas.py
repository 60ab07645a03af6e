"""API schemas for claims."""

import marshmallow as ma

from catalog.faults import FAULT_CATEGORIES
from claims.rules import REMEDIES
from common.i18n import LANGUAGES
from common.schemas import Pattern, StrictBoolean

# What a paste brings along; the serial number's documented pattern allows exactly these.
PASTED_WHITESPACE = " \t\r\n"


class ReturnAddressSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    name = ma.fields.String(validate=ma.validate.Length(max=200))
    line1 = ma.fields.String(validate=ma.validate.Length(max=200))
    line2 = ma.fields.String(validate=ma.validate.Length(max=200))
    postal_code = ma.fields.String(validate=ma.validate.Length(max=20))
    city = ma.fields.String(validate=ma.validate.Length(max=100))
    country = ma.fields.String(validate=Pattern(r"^[A-Za-z]{2}$"))
    phone = ma.fields.String(validate=ma.validate.Length(max=40))


class ClaimCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    serial_number = ma.fields.String(
        required=True,
        validate=Pattern(r"^[ \t\r\n]*[A-Za-z0-9][A-Za-z0-9._/-]{0,63}[ \t\r\n]*$"))
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    fault_category = ma.fields.String(required=True, validate=ma.validate.OneOf(FAULT_CATEGORIES))
    description = ma.fields.String(required=True, validate=ma.validate.Length(min=5, max=5000))
    remedy = ma.fields.String(load_default=None, validate=ma.validate.OneOf(REMEDIES))
    dead_on_arrival = StrictBoolean(load_default=False)
    language = ma.fields.String(load_default="en", validate=ma.validate.OneOf(LANGUAGES))
    customer_name = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200))
    return_address = ma.fields.Nested(ReturnAddressSchema, load_default=dict)

    @ma.pre_load
    def strip_pasted_whitespace(self, data, **kwargs):  # noqa: ANN001, ANN201
        # Customers paste serials and emails with stray spaces; that is not an error.
        if isinstance(data, dict):
            for name in ("serial_number", "email"):
                if isinstance(data.get(name), str):
                    data = {**data, name: data[name].strip(PASTED_WHITESPACE)}
        return data


class ReasonSchema(ma.Schema):
    code = ma.fields.String()
    message = ma.fields.String()


class ClaimFiledSchema(ma.Schema):
    """What a submitter learns: never whether the serial exists under another email."""

    claim_number = ma.fields.String()
    status = ma.fields.String(
        metadata={"enum": ["approved", "needs_review", "rejected", "closed"]})
    reasons = ma.fields.List(ma.fields.Nested(ReasonSchema))
    rma_number = ma.fields.String(allow_none=True)
    remedy = ma.fields.String(allow_none=True)
    tracking_url = ma.fields.String()
    label_url = ma.fields.String(allow_none=True)
    duplicate = ma.fields.Boolean(
        metadata={"description": "true when an open claim for this serial was returned"})


class TimelineEntrySchema(ma.Schema):
    kind = ma.fields.String()
    text = ma.fields.String()
    occurred_at = ma.fields.DateTime()


class NoteSchema(ma.Schema):
    author = ma.fields.String()
    body = ma.fields.String()
    created_at = ma.fields.DateTime()


class MessageSchema(ma.Schema):
    id = ma.fields.Integer()
    kind = ma.fields.String()
    recipient = ma.fields.String()
    subject = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    created_at = ma.fields.DateTime()
    sent_at = ma.fields.DateTime(allow_none=True)


class ClaimSchema(ma.Schema):
    """The staff view of a claim."""

    claim_number = ma.fields.String()
    status = ma.fields.String()
    serial_number = ma.fields.String()
    sku = ma.fields.String(allow_none=True)
    email = ma.fields.String()
    customer_name = ma.fields.String(allow_none=True)
    fault_category = ma.fields.String()
    description = ma.fields.String()
    dead_on_arrival = ma.fields.Boolean()
    requested_remedy = ma.fields.String(allow_none=True)
    remedy = ma.fields.String(allow_none=True)
    language = ma.fields.String()
    reasons = ma.fields.List(ma.fields.Dict())
    rma_number = ma.fields.String(allow_none=True)
    source = ma.fields.String()
    filed_at = ma.fields.DateTime()
    decided_at = ma.fields.DateTime(allow_none=True)
    decided_by = ma.fields.String(allow_none=True)
    warranty_ends_on = ma.fields.Date(allow_none=True)
    photos = ma.fields.Integer()


class ClaimDetailSchema(ClaimSchema):
    timeline = ma.fields.List(ma.fields.Nested(TimelineEntrySchema))
    notes = ma.fields.List(ma.fields.Nested(NoteSchema))
    messages = ma.fields.List(ma.fields.Nested(MessageSchema))


class ClaimQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    q = ma.fields.String(validate=ma.validate.Length(max=254))
    status = ma.fields.String(
        validate=ma.validate.OneOf(["approved", "needs_review", "rejected", "closed"]))


class ReviewSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    decision = ma.fields.String(required=True, validate=ma.validate.OneOf(["approve", "reject"]))
    note = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=5000))
    remedy = ma.fields.String(load_default=None, validate=ma.validate.OneOf(REMEDIES))


class NoteCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    body = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=5000))
