"""API schemas for partners and their keys."""

import marshmallow as ma

from common.schemas import CredentialSchema


class PartnerCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    code = ma.fields.String(
        required=True, validate=ma.validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")
    )
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    country = ma.fields.String(load_default=None, validate=ma.validate.Regexp(r"^[A-Za-z]{2}$"))
    contact_email = ma.fields.Email(load_default=None, validate=ma.validate.Length(max=254))
    contact_phone = ma.fields.String(load_default=None, validate=ma.validate.Length(max=40))
    sla_days = ma.fields.Integer(load_default=10, validate=ma.validate.Range(min=1, max=365))


class PartnerSchema(ma.Schema):
    code = ma.fields.String()
    name = ma.fields.String()
    country = ma.fields.String(allow_none=True)
    contact_email = ma.fields.String(allow_none=True)
    contact_phone = ma.fields.String(allow_none=True)
    sla_days = ma.fields.Integer()
    active = ma.fields.Boolean()


class PartnerKeyCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    name = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))


class PartnerKeySchema(CredentialSchema):
    pass


class IssuedPartnerKeySchema(PartnerKeySchema):
    key = ma.fields.String(metadata={"description": "The secret; shown only this once"})


class PartnerUnitSchema(ma.Schema):
    rma_number = ma.fields.String()
    sku = ma.fields.String(allow_none=True)
    serial_number = ma.fields.String()
    status = ma.fields.String()
    version = ma.fields.Integer()
    allowed_next = ma.fields.List(ma.fields.String())
    shipment_number = ma.fields.String(allow_none=True)
    updated_at = ma.fields.DateTime()


class PartnerUnitQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    status = ma.fields.String(validate=ma.validate.Length(max=24))


class PartnerUnitUpdateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    status = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=24))
    note = ma.fields.String(load_default=None, validate=ma.validate.Length(max=2000))
