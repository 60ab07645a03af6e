"""API schemas for users and tokens."""

import marshmallow as ma

from auth.roles import ALL_ROLES
from common.schemas import CredentialSchema


class UserCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ALL_ROLES))
    password = ma.fields.String(
        required=True, load_only=True, validate=ma.validate.Length(min=12, max=1024)
    )
    partner_code = ma.fields.String(load_default=None, validate=ma.validate.Length(max=32))


class UserSchema(ma.Schema):
    id = ma.fields.Integer()
    email = ma.fields.String()
    role = ma.fields.String()
    partner_code = ma.fields.String(allow_none=True)
    active = ma.fields.Boolean()
    created_at = ma.fields.DateTime()
    last_login_at = ma.fields.DateTime(allow_none=True)


class MeSchema(ma.Schema):
    role = ma.fields.String()
    email = ma.fields.String(allow_none=True)
    partner_code = ma.fields.String(allow_none=True)


class TokenCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    name = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))


class TokenSchema(CredentialSchema):
    pass


class IssuedTokenSchema(TokenSchema):
    token = ma.fields.String(metadata={"description": "The secret; shown only this once"})
